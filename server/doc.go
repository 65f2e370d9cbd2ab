// Package server is one Cairn member: it wires raftnode, mvcc, lease and auth together,
// proposes writes through raft and waits for their results, runs the single apply loop that
// applies committed entries (and leader snapshots) in order, serves linearizable reads
// behind ReadIndex, forwards to the leader what only it can answer (lease keep-alives and
// time-to-live, learner promotion), and keeps membership, alarms, corruption checks,
// quotas and status.
//
// Auth (auth.go): every proposal carries its sender's user and auth revision (from the
// token in the gRPC metadata, or the client certificate's CN with --client-cert-auth);
// the apply loop checks KV writes, lease revokes and auth changes against them, local
// reads are checked after the linearizable read and answer ErrAuthOldRevision if the
// auth revision moved meanwhile, and auth.Store follows the auth buckets only once the
// entry's store txn ended without error.
//
// RangeStream (rangestream.go) is Range read in chunks from one pinned revision
// (mvcc.RangeIter): the member holds at most two chunks of about a MiB, whatever the
// size of the range, and no lock while a chunk is sent.
//
// Proposal batching (batch.go): client KV writes (Put, DeleteRange, writing Txn) go
// through one goroutine that proposes what is queued when it gets to it: a lone request
// as its own entry at once (no timer, never a wait for more), several that queued up
// meanwhile as one entry (InternalRaftRequest.batch: at most maxBatchRequests, 128, and
// min(--max-request-bytes, raftnode.MaxSizePerMsg) bytes, a lone larger request
// excepted). Every other kind (compaction, leases, alarms, auth, member attributes,
// conf changes) is proposed alone, as before. A batched entry is applied by
// mvcc.Store.UpdateEach: each request in order, in a write transaction of its own, so it
// gets the revision, the answer and the failure it would get in an entry of its own; the
// entry is recorded as applied once, after the last. Plain single-request entries (and
// old logs) stay valid.
//
// It must never apply a write that did not come out of the raft log, and never acknowledge
// one before the log entry holding it is durable. The leader renews a lease only after a
// quorum confirmed, through a ReadIndex round that began at most an election timeout
// before the renewal, that it leads (a stalled leader must not keep a lease alive that
// its successor expires); one round serves the keep-alives of half an election timeout.
//
// Full disk (diskguard.go): the member refuses client writes that make the store grow
// (ErrDiskFull, naming the member, the directory and its free bytes) while the free space
// of the data dir's or the WAL dir's file system is below Config.DiskReserveBytes (read
// every DiskCheckInterval, never per request), or while a write that failed for lack of
// space is being retried (mvcc.Store.CommitBlocked, raftnode.Node.DiskFull); it lifts
// the refusal by itself. It is member-local, not the NOSPACE alarm. A raft snapshot is
// taken only after a successful backend commit, so no WAL segment the store still needs
// is released while commits fail.
//
// Versions (version.go, downgrade.go): the cluster version and the downgrade job are
// state, changed only by applied raft entries (DowngradeInfoSet from Downgrade enable and
// cancel, ClusterVersionSet from the leader's version check) and kept in etcd's "cluster"
// bucket; the in-memory copy is reloaded from the store at start and after a leader
// snapshot. A member's storage version follows its cluster version in the same store txn
// (3.5.x: etcd 3.5's schema, no "storageVersion" in "meta"), so members agree on it at
// every applied index. The leader moves the cluster version only while every member is
// reachable, as etcd's does.
//
// FaultHandler (fault.go) is a test-only fault hook: it freezes the raft Ready loop while
// everything else keeps serving. cmd/cairn serves it only when the environment has
// CAIRN_FAULT_INJECTION=1; it is never on by default.
package server
