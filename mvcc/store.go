package mvcc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/errs"
	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// Defined once in internal/errs, which api maps to etcd's gRPC errors by value.
var (
	ErrCompacted = errs.ErrCompacted
	ErrFutureRev = errs.ErrFutureRev
	ErrDiskFull  = errs.ErrDiskFull
)

// Config tunes the backend's batched commits.
type Config struct {
	// BatchInterval is the longest time a change waits in an uncommitted batch (default 100ms).
	BatchInterval time.Duration
	// BatchLimit is how many changes a batch holds before it is committed (default 10000).
	BatchLimit int
	// InitialMmapSize is the initial size in bytes of bbolt's memory map (0: bbolt's
	// default, remapped as the file grows). While the file fits in it, a commit never
	// waits for open read transactions to remap.
	InitialMmapSize int
}

const (
	defaultBatchInterval = 100 * time.Millisecond
	defaultBatchLimit    = 10000
	compactBatchLimit    = 1000
)

// Store is the multi-version key-value store.
//
// Locking: wmu serializes everything that writes (write transactions, compaction batches,
// commits, member and meta updates) and guards the backend's batch transaction. mu guards the
// index and compactRev: readers hold it shared for one Range's index walk (not while
// decoding values), writers exclusively for each index change. A write transaction adds
// its revisions to the index as it goes, at currentRev+1, which no reader looks at until
// the txn's end publishes the new currentRev.
type Store struct {
	lg   *zap.Logger
	cfg  Config
	path string
	// b is the backend; Restore replaces it holding wmu and mu, so a reader that holds
	// neither takes it under mu (see backend()).
	b *backend

	wmu sync.Mutex

	mu         sync.RWMutex
	idx        *treeIndex
	compactRev int64

	currentRev atomic.Int64
	// committedRev is the revision up to which bbolt has committed every change.
	committedRev atomic.Int64

	hub *watchHub

	// consistent index and term; written under wmu, persisted with every commit.
	ciMu    sync.Mutex
	ci      uint64
	term    uint64
	ciDirty bool

	stopc          chan struct{}
	donec          chan struct{} // the commit loop has exited
	compact        sync.WaitGroup
	lastCompaction chan struct{} // done channel of the latest compaction; guarded by wmu
	generation     uint64        // counts Restores; guarded by wmu
	closed         bool
	// failed is the storage failure (wrapping ErrBackendFailed) after which the store
	// takes no more writes and never commits again; guarded by wmu.
	failed error
	// noSpace is the last commit failure, for lack of disk space, of the batch that waits
	// (rebuilt) to be retried; nil while commits succeed. Set under wmu,
	// read by CommitBlocked without it. retryAt and backoff pace the retries (wmu).
	noSpace atomic.Pointer[error]
	retryAt time.Time
	backoff time.Duration

	hooks testHooks

	defragMu sync.Mutex     // one Defragment at a time
	bg       sync.WaitGroup // closes of db files replaced by Defragment
}

// Open opens (or creates) the bbolt file at path and rebuilds the index from it. A
// compaction that was scheduled but not finished is resumed in the background.
func Open(lg *zap.Logger, path string, cfg Config) (*Store, error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	if cfg.BatchInterval <= 0 {
		cfg.BatchInterval = defaultBatchInterval
	}
	if cfg.BatchLimit <= 0 {
		cfg.BatchLimit = defaultBatchLimit
	}
	// A defragmentation's copy left by a crash: the db file itself is whole.
	if err := os.Remove(path + defragSuffix); err == nil {
		lg.Warn("removed an unfinished defragmentation copy", zap.String("path", path+defragSuffix))
	}
	b, err := openBackend(path, cfg.InitialMmapSize)
	if err != nil {
		return nil, err
	}
	s := &Store{
		lg:    lg,
		cfg:   cfg,
		path:  path,
		b:     b,
		stopc: make(chan struct{}),
		donec: make(chan struct{}),
	}
	scheduled, finished, err := s.load()
	if err != nil {
		b.close()
		return nil, fmt.Errorf("mvcc: restore %s: %w", path, err)
	}
	s.hub = newWatchHub(s)
	go s.commitLoop()
	go s.hub.syncLoop()
	s.wmu.Lock()
	s.resumeCompaction(scheduled, finished)
	s.wmu.Unlock()
	return s, nil
}

// resumeCompaction restarts a compaction the backend has scheduled but not finished.
// Caller holds wmu.
func (s *Store) resumeCompaction(scheduled, finished int64) {
	if scheduled <= finished {
		return
	}
	s.lg.Info("resuming unfinished compaction",
		zap.Int64("scheduled-compact-revision", scheduled),
		zap.Int64("finished-compact-revision", finished))
	s.mu.Lock()
	keep := s.idx.compact(scheduled)
	s.mu.Unlock()
	s.startCompaction(scheduled, keep)
}

// load resets the in-memory state (index, revisions, consistent index) to the backend's.
// Caller holds wmu and mu, or is Open.
func (s *Store) load() (scheduled, finished int64, err error) {
	s.idx = newTreeIndex()
	s.compactRev = -1
	s.currentRev.Store(1)
	s.ciMu.Lock()
	s.ci, s.term, s.ciDirty = 0, 0, false
	s.ciMu.Unlock()
	scheduled, finished, err = s.restore()
	s.committedRev.Store(s.currentRev.Load())
	return scheduled, finished, err
}

// backend is the current backend, for readers that hold neither wmu nor mu.
func (s *Store) backend() *backend {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.b
}

// restore loads the meta values and rebuilds the index from the "key" bucket.
func (s *Store) restore() (scheduled, finished int64, err error) {
	tx := s.b.tx
	meta := tx.Bucket(bucketMeta)
	s.ciMu.Lock()
	if v := meta.Get(metaConsistentIndex); len(v) == 8 {
		s.ci = binary.BigEndian.Uint64(v)
	}
	if v := meta.Get(metaTerm); len(v) == 8 {
		s.term = binary.BigEndian.Uint64(v)
	}
	s.ciMu.Unlock()
	scheduled, finished = -1, -1
	if v := meta.Get(metaScheduledCompact); len(v) >= revBytesLen {
		scheduled = bytesToRev(v).main
	}
	if v := meta.Get(metaFinishedCompact); len(v) >= revBytesLen {
		finished = bytesToRev(v).main
	}
	if finished > 0 {
		s.compactRev = finished
	}
	if scheduled > finished {
		s.compactRev = scheduled
	}

	cur := int64(1)
	drop := s.b.newScanDropper(tx)
	defer drop.flush()
	c := tx.Bucket(bucketKey).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		drop.note(v)
		if len(k) != revBytesLen && len(k) != markedRevBytesLen {
			return 0, 0, fmt.Errorf("malformed key bucket key %x", k)
		}
		rev := bytesToRev(k)
		cur = max(cur, rev.main)
		if len(v) == 0 {
			continue // a restore's revision marker (etcdutl --bump-revision): no key
		}
		var kv mvccpb.KeyValue
		if err := kv.UnmarshalVT(v); err != nil {
			return 0, 0, fmt.Errorf("decode revision {%d %d}: %w", rev.main, rev.sub, err)
		}
		if isTombstone(k) {
			// A tombstone for a key whose live revisions were compacted away has
			// nothing left to end.
			s.idx.tombstone(kv.Key, rev)
		} else {
			s.idx.restore(kv.Key, revision{main: kv.CreateRevision}, rev, kv.Version)
		}
	}
	// Drop index entries a finished compaction already removed from the backend (e.g. a
	// tombstone left at the compact revision).
	if finished > 0 {
		s.idx.compact(finished)
	}
	cur = max(cur, s.compactRev)
	s.currentRev.Store(cur)
	return scheduled, finished, nil
}

// commitLoop commits the batch every BatchInterval.
func (s *Store) commitLoop() {
	defer close(s.donec)
	t := time.NewTicker(s.cfg.BatchInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopc:
			return
		case <-t.C:
			s.wmu.Lock()
			// A failure is logged once, by fail, and stops later commits.
			_ = s.commitIfDirty()
			s.wmu.Unlock()
		}
	}
}

// commitIfDirty commits the batch if it holds anything. Caller holds wmu.
func (s *Store) commitIfDirty() error {
	s.ciMu.Lock()
	dirty := s.ciDirty
	s.ciMu.Unlock()
	if s.b.changes == 0 && !dirty {
		return nil
	}
	return s.commitLocked()
}

// commitLocked writes the consistent index into the batch and commits it. Caller holds wmu.
// While a commit failed for lack of space it retries only once its backoff has passed,
// answering the failure (wrapping ErrDiskFull) until then.
func (s *Store) commitLocked() error {
	if err := s.usable(); err != nil {
		return err
	}
	if p := s.noSpace.Load(); p != nil && time.Now().Before(s.retryAt) {
		return fmt.Errorf("%w: %w", ErrDiskFull, *p)
	}
	s.ciMu.Lock()
	ci, term := s.ci, s.term
	s.ciDirty = false
	s.ciMu.Unlock()
	err := s.b.put(bucketMeta, metaConsistentIndex, uint64Bytes(ci))
	if err == nil {
		err = s.b.put(bucketMeta, metaTerm, uint64Bytes(term))
	}
	var rebuilt bool
	if err == nil {
		rebuilt, err = s.b.commit()
	}
	if rebuilt {
		return s.commitBlocked(err)
	}
	if err != nil {
		s.fail(err)
		return s.failed
	}
	s.committedRev.Store(s.currentRev.Load())
	if p := s.noSpace.Swap(nil); p != nil {
		s.lg.Info("backend commit succeeded again; the batch kept in memory is on disk", zap.Error(*p))
	}
	return nil
}

// Pacing of the retries of a commit that failed for lack of space.
const (
	noSpaceFirstRetry = 100 * time.Millisecond
	noSpaceMaxRetry   = 5 * time.Second
)

// commitBlocked records a commit that failed for lack of space, its batch rebuilt: the
// store goes on taking writes into the batch (the raft log holds them durably) and the
// commit is retried with backoff. Caller holds wmu.
func (s *Store) commitBlocked(err error) error {
	if s.noSpace.Swap(&err) == nil {
		s.backoff = noSpaceFirstRetry
		s.lg.Error("backend commit failed for lack of disk space; keeping the batch in memory, refusing client writes and retrying",
			zap.String("path", s.path), zap.Int("batch-changes", s.b.changes), zap.Duration("retry-in", s.backoff), zap.Error(err))
	} else {
		s.backoff = min(2*s.backoff, noSpaceMaxRetry)
		s.lg.Warn("backend commit still failing for lack of disk space",
			zap.String("path", s.path), zap.Int("batch-changes", s.b.changes), zap.Duration("retry-in", s.backoff), zap.Error(err))
	}
	s.retryAt = time.Now().Add(s.backoff)
	return fmt.Errorf("%w: %w", ErrDiskFull, err)
}

// CommitBlocked is the last commit failure, for lack of disk space, of the batch the
// store is retrying to commit, or nil while commits succeed. Meanwhile it keeps
// serving reads and taking writes into its batch, all in memory.
func (s *Store) CommitBlocked() error {
	if p := s.noSpace.Load(); p != nil {
		return *p
	}
	return nil
}

// usable is nil while the store takes writes. Caller holds wmu.
func (s *Store) usable() error {
	switch {
	case s.failed != nil:
		return s.failed
	case s.closed:
		return errors.New("mvcc: store is closed")
	}
	return nil
}

// fail records the first storage failure: from then on nothing is written or committed,
// so bbolt keeps its last commit, from which a restart replays the raft log. Caller
// holds wmu.
func (s *Store) fail(err error) {
	if s.failed != nil {
		return
	}
	if !errors.Is(err, ErrBackendFailed) {
		err = fmt.Errorf("%w: %w", ErrBackendFailed, err)
	}
	s.failed = err
	s.lg.Error("storage failed; the store takes no more writes", zap.Error(err))
}

// maybeCommit commits once the batch reaches BatchLimit changes (a failure is recorded
// by commitLocked). Caller holds wmu.
func (s *Store) maybeCommit() {
	if s.b.changes >= s.cfg.BatchLimit {
		_ = s.commitLocked()
	}
}

// Close stops background work, commits the pending batch and closes the file.
func (s *Store) Close() error {
	s.wmu.Lock()
	if s.closed {
		s.wmu.Unlock()
		return nil
	}
	close(s.stopc)
	s.wmu.Unlock()
	s.hub.stop()
	<-s.donec
	s.compact.Wait()
	s.bg.Wait()

	s.wmu.Lock()
	defer s.wmu.Unlock()
	var err error
	if s.failed == nil {
		s.retryAt = time.Time{} // a last try, whatever the backoff
		err = s.commitLocked()
	}
	s.closed = true
	if cerr := s.b.close(); cerr != nil && err == nil {
		err = fmt.Errorf("mvcc: close backend: %w", cerr)
	}
	return err
}

// Rev returns the current revision (1 for a fresh store).
func (s *Store) Rev() int64 { return s.currentRev.Load() }

// CompactedRev returns the revision of the last compaction, or -1 if there was none.
func (s *Store) CompactedRev() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.compactRev
}

// ConsistentIndex returns the last applied raft index and its term.
func (s *Store) ConsistentIndex() (index, term uint64) {
	s.ciMu.Lock()
	defer s.ciMu.Unlock()
	return s.ci, s.term
}

func (s *Store) setCI(index, term uint64) {
	s.ciMu.Lock()
	s.ci, s.term, s.ciDirty = index, term, true
	s.ciMu.Unlock()
}

// Commit commits the pending batch now.
func (s *Store) Commit() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.commitLocked()
}

// Size returns the database file size and the part of it in use, as of the last commit.
func (s *Store) Size() (total, inUse int64) {
	b := s.backend()
	return b.size.Load(), b.sizeInUse.Load()
}
