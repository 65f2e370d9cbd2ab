// Package mvcc is the multi-version key-value store: revisions, an in-memory ordered key
// index, the bbolt backend in etcd's bucket layout, batched commits and compaction.
//
// It must never be written to except from the server's apply loop, and never let a reader
// see a half-applied revision.
//
// Layout (etcd-compatible): the "key" bucket maps 17-byte revision keys (8-byte big-endian
// main revision, '_', 8-byte big-endian sub revision; a tombstone adds a trailing 't') to
// marshalled mvccpb.KeyValue values (a tombstone's value has only Key set). The "meta"
// bucket holds consistent_index and term (8-byte big-endian) and scheduledCompactRev /
// finishedCompactRev (revision keys with sub 0). The other etcd buckets (lease, members,
// members_removed, cluster, alarm, auth, authUsers, authRoles) are created on open.
//
// Design:
//   - index.go: a btree of keyIndex (key → generations of revisions; 64 bytes, the key a
//     string, the current generation and its newest revision inline, older ones behind
//     pointers, since a key usually has one of each: ~100 bytes a key; compaction copies
//     the revisions it keeps), rebuilt from the
//     "key" bucket on Open (rebuild.go): one goroutine walks the bucket and decodes only
//     each value's key, create revision and version (protowire, nothing copied), while
//     Open inserts the decoded batches in revision order.
//   - backend.go: one long-lived bbolt write transaction (the batch), committed every
//     BatchInterval, after BatchLimit changes, or on Commit/Close, and never in the middle
//     of a write transaction; the raft consistent index goes into the same commit. Values
//     written since the last commit are buffered in memory so readers (which use their own
//     bbolt read transactions) see every ended write transaction at once.
//   - txn.go: ReadTxn is a snapshot at the revision current when it began; its Range
//     holds the index lock only to walk the index (stopping to collect at the limit, still
//     counting every key) and to take a view of the values (the buffered ones, and a bbolt
//     read transaction that no later compaction changes), then decodes without locks.
//     ReadTxn.ForEach
//     (iterate.go) visits a range key by key, decoding one value at a time, for scans
//     of the whole store that must not hold every value at once.
//   - stream.go: RangeIter reads a range at one pinned revision chunk by chunk (bounded
//     in bytes and KVs), each chunk an index walk under the lock then a value view
//     decoded without it, so a chunked read (KV.RangeStream) costs a chunk's memory and
//     lets writes and compaction run between chunks; a compaction past the pinned
//     revision fails the next chunk with ErrCompacted.
//   - resident_linux.go: bbolt maps the db file shared and read-only, so every value a
//     read touches stays in the process's resident set until unmapped. A range view
//     that read 256 KiB or more, and the index rebuild at Open (every 64 MiB), drop the
//     pages they read (madvise MADV_DONTNEED, only on addresses inside the map, under an
//     open bbolt transaction), and a commit drops the whole map at most once a second
//     (writes read the pages on their way to the end of the "key" bucket, which bbolt
//     moves at every commit): they stay in the page cache, and the member's resident
//     set stays its own memory rather than the size of the db.
//   - write.go: Update(index, term, fn) is the only way to write: fn gets the one
//     WriteTxn, which holds the store's write lock and writes at Rev()+1 with sub
//     revisions 0, 1, ...; if fn fails, every change it made is undone (an undo log over
//     the index, the buffer and every bucket); either way the raft entry is recorded as
//     applied in the same batch, and the new revision is published when Update returns.
//     UpdateEach is Update for an entry holding several requests (proposal batching):
//     each gets its own write transaction and revision, in order, and fails alone; the
//     entry is recorded once, after the last, with no commit in between.
//     A storage failure (a failed bbolt write or commit) marks the store failed
//     (ErrBackendFailed): it takes no more writes and never commits again, so the file
//     keeps its last commit and a restart replays the raft log from there.
//   - A commit that fails for lack of space (ENOSPC or EDQUOT) is not such a failure:
//     bbolt leaves the file at its last commit, and the batch is rebuilt in a new
//     transaction from the list of its changes (backend.pending), so the in-memory
//     index, the buffer and the batch agree again. The store keeps serving and taking
//     writes (the raft log holds them durably), retries the commit with backoff (100ms
//     doubling to 5s, each failure logged) and reports it through CommitBlocked
//     (commits meanwhile answer an error wrapping ErrDiskFull) until a commit succeeds; the server refuses client
//     writes meanwhile. Nothing depending on a commit (a raft snapshot, which would
//     release WAL segments, a hash, a db snapshot, a defragmentation) happens before.
//   - compact.go: Compact updates the index at once and deletes the dropped revisions from
//     bbolt in background batches of at most 1000 keys per commit; an unfinished compaction
//     (scheduled > finished) is resumed on Open.
//   - hash.go: HashByRev, compatible with etcd's HashKV; it scans a bbolt read
//     transaction (committing the batch first if needed) without the write lock. Hash,
//     etcd's Maintenance.Hash of the whole db (every bucket but meta's consistent_index,
//     term and storageVersion).
//   - watch*.go: the watch hub. Update hands each revision's events to synced
//     watchers without ever blocking on a stream (a full stream makes its watcher
//     unsynced): they go into the stream's queue, which its consumer empties with Take
//     in its own goroutine when Ready signals, so there is no goroutine between the
//     apply loop and the stream's sender; while a watcher's last live response is still
//     queued, its next revisions are appended to it (up to 256 events) rather than
//     queued apart, so a busy consumer sends fewer, larger responses and none waits. A catch-up loop replays unsynced watchers from
//     bbolt in bounded batches until they rejoin the live set; it is woken (not
//     polling) when a watcher starts in the past and when a stream whose watchers fell
//     behind is emptied. Single-key watchers are matched through a map, range
//     watchers through an interval tree. A put reads the value it replaces only while
//     some watcher wants previous values (prevKV); one that starts between a put and
//     the end of its transaction has that value read when the event reaches it.
//   - leases.go, members.go, auth.go: the lease, members and auth buckets, written by the
//     apply loop (auth.go stores package auth's encoded users and roles as they are).
package mvcc
