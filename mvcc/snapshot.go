package mvcc

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cairn-kv/cairn/internal/fsutil"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// Snapshot is a consistent read-only view of the committed db file, to send it whole. It
// holds a bbolt read transaction until Close: pages it uses are not reused meanwhile.
type Snapshot struct {
	tx *bolt.Tx
}

// Snapshot commits the pending batch and opens a view of the db as of now: its consistent
// index is the last one set.
func (s *Store) Snapshot() (*Snapshot, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.commitLocked(); err != nil {
		return nil, err
	}
	tx, err := s.b.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("mvcc: begin snapshot read: %w", err)
	}
	return &Snapshot{tx: tx}, nil
}

// Size is the db file's size in bytes.
func (sn *Snapshot) Size() int64 { return sn.tx.Size() }

// WriteTo writes the db file to w.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	n, err := sn.tx.WriteTo(w)
	if err != nil {
		return n, fmt.Errorf("mvcc: write snapshot: %w", err)
	}
	return n, nil
}

// Close ends the view.
func (sn *Snapshot) Close() error { return sn.tx.Rollback() }

// Restore replaces the store's contents with the bbolt file at path (a db received with a
// raft snapshot), which is renamed over the store's own file: the uncommitted batch is
// dropped, the index rebuilt, a background compaction of the old contents abandoned.
// Watchers stay: each catches up from its next revision in the new contents, or is told
// of the compaction if that revision is gone. The caller is the apply loop, so no write
// transaction or compaction starts meanwhile. After an error the store is unusable (the
// member must stop); path or the store's file holds the new contents.
func (s *Store) Restore(path string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return fmt.Errorf("mvcc: restore from %s: store is closed", path)
	}
	s.generation++
	s.mu.Lock()
	scheduled, finished, err := s.replaceBackend(path)
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("mvcc: restore from %s: %w", path, err)
	}
	rev := s.currentRev.Load()
	s.hub.resync(rev)
	s.resumeCompaction(scheduled, finished)
	ci, _ := s.ConsistentIndex()
	s.lg.Info("restored backend from snapshot", zap.String("path", path),
		zap.Int64("current-revision", rev), zap.Uint64("consistent-index", ci))
	return nil
}

// replaceBackend closes the backend, moves path into its place and loads it. Caller holds
// wmu and mu.
func (s *Store) replaceBackend(path string) (scheduled, finished int64, err error) {
	// Closing waits for bbolt read transactions still open (history reads, snapshots).
	if err := s.b.close(); err != nil {
		s.lg.Warn("failed to close the replaced backend", zap.Error(err))
	}
	if err := os.Rename(path, s.path); err != nil {
		return 0, 0, fmt.Errorf("rename into %s: %w", s.path, err)
	}
	if err := fsutil.SyncDir(filepath.Dir(s.path)); err != nil {
		return 0, 0, err
	}
	b, err := openBackend(s.path, s.cfg.InitialMmapSize)
	if err != nil {
		return 0, 0, err
	}
	s.b = b
	s.noSpace.Store(nil) // the failed batch went with the old contents
	return s.load()
}
