package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/fsutil"
)

// defragSuffix names the compact copy being written next to the db file; a copy left by
// a crash is removed when the store opens (the db file itself was never touched).
const defragSuffix = ".defrag"

// defragCopyBatch is how many keys one write transaction of the copy takes.
const defragCopyBatch = 10000

// redoOp is one change of the batch: kept to rebuild a batch a full disk dropped
// (backend.pending), and to replay on the copy a defragmentation is making.
type redoOp struct {
	bucket, key, value []byte
	delete             bool
}

// record appends a change to the redo log of a running defragmentation. Caller holds the
// store's write lock.
func (b *backend) record(bucket, key, value []byte, del bool) {
	if b.redo == nil {
		return
	}
	*b.redo = append(*b.redo, redoOp{bucket: bytes.Clone(bucket), key: bytes.Clone(key), value: bytes.Clone(value), delete: del})
}

// Defragment rewrites the db file without its free pages while reads and writes go on,
// then swaps the copy in: etcd stops every read and write for the whole rewrite, this
// holds the write lock only to begin (one commit) and to finish (replaying the changes
// made meanwhile onto the copy, and a rename). The index and revisions do not change.
//
// The copy is written to a file of its own and renamed over the db file only once it is
// complete and synced, so a crash at any point leaves a whole db file: the old one or
// the compact one. One defragmentation runs at a time.
func (s *Store) Defragment() error {
	s.defragMu.Lock()
	defer s.defragMu.Unlock()
	start := time.Now()
	tmp := s.path + defragSuffix

	// Begin: everything so far committed, the copy's view opened at that commit, and
	// every change from then on recorded.
	s.wmu.Lock()
	if err := s.commitLocked(); err != nil {
		s.wmu.Unlock()
		return err
	}
	src, gen, oldSize := s.b, s.generation, s.b.size.Load()
	view, err := src.db.Begin(false)
	if err != nil {
		s.wmu.Unlock()
		return fmt.Errorf("mvcc: defragment: begin read: %w", err)
	}
	redo := []redoOp{}
	src.redo = &redo
	s.wmu.Unlock()
	stopRecording := func() {
		s.wmu.Lock()
		src.redo = nil
		s.wmu.Unlock()
	}

	err = copyDB(view, tmp, s.hooks.defragCopy)
	_ = view.Rollback()
	if err != nil {
		stopRecording()
		os.Remove(tmp)
		return fmt.Errorf("mvcc: defragment: %w", err)
	}

	// Finish: replay what changed meanwhile onto the copy and swap it in.
	s.wmu.Lock()
	defer s.wmu.Unlock()
	src.redo = nil
	switch {
	case s.generation != gen:
		os.Remove(tmp)
		return errors.New("mvcc: defragment: the store's contents were replaced meanwhile")
	case s.usable() != nil:
		os.Remove(tmp)
		return s.usable()
	}
	if err := s.commitLocked(); err != nil { // the batch's changes are in redo too
		os.Remove(tmp)
		return err
	}
	if err := replay(tmp, redo); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mvcc: defragment: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mvcc: defragment: rename into %s: %w", s.path, err)
	}
	if err := fsutil.SyncDir(filepath.Dir(s.path)); err != nil {
		s.fail(err)
		return s.failed
	}
	nb, err := openBackend(s.path, s.cfg.InitialMmapSize)
	if err != nil {
		// The file at s.path is complete, but this process can no longer write it.
		s.fail(err)
		return s.failed
	}
	s.mu.Lock()
	s.b = nb
	s.mu.Unlock()
	// Readers still in the old file (a snapshot being sent, a range) finish there; it is
	// closed once they are done.
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		if err := src.close(); err != nil {
			s.lg.Warn("failed to close the db file replaced by defragmentation", zap.Error(err))
		}
	}()
	took := time.Since(start)
	defragDuration.Observe(took.Seconds())
	s.lg.Info("finished defragmenting the backend",
		zap.Int64("size-before-bytes", oldSize), zap.Int64("size-after-bytes", nb.size.Load()),
		zap.Int("changes-replayed", len(redo)), zap.Duration("took", took))
	return nil
}

// copyDB writes every bucket of view into a new db file at path, packed (keys arrive in
// order, so pages are filled), in transactions of defragCopyBatch keys; hook, if set,
// runs between them (tests pause the copy there).
func copyDB(view *bolt.Tx, path string, hook func()) (err error) {
	_ = os.Remove(path)
	dst, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer func() {
		if cerr := dst.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("copy into %s: %w", path, cerr)
		}
	}()
	err = view.ForEach(func(name []byte, src *bolt.Bucket) error {
		c := src.Cursor()
		k, v := c.First()
		for batch := 0; batch == 0 || k != nil; batch++ {
			if batch > 0 && hook != nil {
				hook()
			}
			err := dst.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucketIfNotExists(name)
				if err != nil {
					return err
				}
				b.FillPercent = 1.0
				for n := 0; k != nil && n < defragCopyBatch; n++ {
					if err := b.Put(k, v); err != nil {
						return err
					}
					k, v = c.Next()
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("copy into %s: %w", path, err)
	}
	return nil
}

// replay applies the changes made during the copy to it, in order, in one synced commit.
func replay(path string, redo []redoOp) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		return fmt.Errorf("reopen %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, op := range redo {
			b, err := tx.CreateBucketIfNotExists(op.bucket)
			if err != nil {
				return err
			}
			if op.delete {
				err = b.Delete(op.key)
			} else {
				err = b.Put(op.key, op.value)
			}
			if err != nil {
				return fmt.Errorf("replay %q in %q: %w", op.key, op.bucket, err)
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}
