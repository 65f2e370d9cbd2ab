package mvcc

import (
	"bytes"
	"fmt"
	"hash/crc32"

	bolt "go.etcd.io/bbolt"
)

// HashByRev returns a crc32 (Castagnoli) of the "key" bucket entries with main revision in
// (compactRev, rev], plus the entries at or below compactRev that a compaction at rev
// would keep (except a tombstone at compactRev), like etcd's HashKV; when that is nothing
// (no key is live at rev), the entries the compaction at compactRev keeps, which is what
// etcd hashes once its compaction is done. Members with the same history agree whether or
// not their compactions have physically finished. rev 0 is the current revision.
//
// The scan reads a bbolt read transaction, without the store's write lock: writes and
// compaction batches go on meanwhile.
func (s *Store) HashByRev(rev int64) (hash uint32, hashRev, compactRev int64, err error) {
	tx, rev, compactRev, keep, err := s.hashView(rev)
	if err != nil {
		return 0, 0, compactRev, err
	}
	defer func() { _ = tx.Rollback() }()

	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	h.Write(bucketKey)
	n := 0
	err = tx.Bucket(bucketKey).ForEach(func(k, v []byte) error {
		if hook := s.hooks.hashScan; hook != nil {
			hook(n)
		}
		n++
		kr := bytesToRev(k)
		if kr.main > rev {
			return nil
		}
		if kr.main <= compactRev {
			// What bbolt still holds at or below compactRev depends on how far the
			// physical compaction has got; what it keeps does not. (etcd hashes all
			// of it when keep is empty: a false mismatch while a member compacts.)
			if _, ok := keep[kr]; !ok {
				return nil
			}
		}
		if kr.main == compactRev && isTombstone(k) {
			return nil
		}
		h.Write(k)
		h.Write(v)
		return nil
	})
	if err != nil {
		return 0, 0, compactRev, fmt.Errorf("mvcc: hash: %w", err)
	}
	return h.Sum32(), rev, compactRev, nil
}

// Hash is etcd's Maintenance.Hash: a crc32 (Castagnoli) over the whole db, bucket by
// bucket in name order (each bucket's name, then each of its keys and values in order),
// leaving out the meta keys that differ between members holding the same data (the
// consistent index, the term and the storage version), plus the revision it covers. Like
// etcd it commits the batch first, so every applied write is covered; the hashing itself
// reads a bbolt view and does not hold up writes.
func (s *Store) Hash() (hash uint32, rev int64, err error) {
	s.wmu.Lock()
	if err := s.commitLocked(); err != nil {
		s.wmu.Unlock()
		return 0, 0, fmt.Errorf("mvcc: hash: %w", err)
	}
	tx, err := s.b.db.Begin(false)
	rev = s.currentRev.Load()
	s.wmu.Unlock()
	if err != nil {
		return 0, 0, fmt.Errorf("mvcc: hash: begin read: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	c := tx.Cursor()
	for name, _ := c.First(); name != nil; name, _ = c.Next() {
		b := tx.Bucket(name)
		if b == nil {
			return 0, 0, fmt.Errorf("mvcc: hash: %q is not a bucket", name)
		}
		h.Write(name)
		meta := bytes.Equal(name, bucketMeta)
		err := b.ForEach(func(k, v []byte) error {
			if meta && (bytes.Equal(k, metaConsistentIndex) || bytes.Equal(k, metaTerm) || bytes.Equal(k, metaStorageVersion)) {
				return nil
			}
			h.Write(k)
			h.Write(v)
			return nil
		})
		if err != nil {
			return 0, 0, fmt.Errorf("mvcc: hash bucket %q: %w", name, err)
		}
	}
	return h.Sum32(), rev, nil
}

// hashView checks rev (0: the current revision) and returns a bbolt read transaction that
// holds every "key" bucket entry up to rev, with the compact revision and the revisions
// at or below it to hash (see HashByRev). It holds the write lock only to commit the batch if the batch holds
// revisions up to rev (a read transaction sees only committed data) and to open the read
// transaction between compaction batches.
func (s *Store) hashView(rev int64) (tx *bolt.Tx, hashRev, compactRev int64, keep map[revision]struct{}, err error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return nil, 0, 0, nil, fmt.Errorf("mvcc: hash: store is closed")
	}
	s.mu.RLock()
	compactRev = s.compactRev
	cur := s.currentRev.Load()
	if rev > 0 && rev < compactRev {
		s.mu.RUnlock()
		return nil, 0, compactRev, nil, fmt.Errorf("hash at %d (compacted %d): %w", rev, compactRev, ErrCompacted)
	}
	if rev > cur {
		s.mu.RUnlock()
		return nil, 0, compactRev, nil, fmt.Errorf("hash at %d (current %d): %w", rev, cur, ErrFutureRev)
	}
	if rev <= 0 {
		rev = cur
	}
	// At or below compactRev, a subset of what the compaction at compactRev keeps: the
	// same on every member.
	keep = s.idx.keep(rev)
	if len(keep) == 0 {
		keep = s.idx.keep(compactRev)
	}
	s.mu.RUnlock()

	// Holding wmu, no write transaction is open: the batch holds nothing above cur, and
	// what it holds up to committedRev bbolt has committed.
	if rev > s.committedRev.Load() {
		if err := s.commitLocked(); err != nil {
			return nil, 0, compactRev, nil, fmt.Errorf("mvcc: hash: %w", err)
		}
	}
	tx, err = s.b.db.Begin(false)
	if err != nil {
		return nil, 0, compactRev, nil, fmt.Errorf("mvcc: hash: begin read: %w", err)
	}
	return tx, rev, compactRev, keep, nil
}
