package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Compact discards the history before rev, as the txn's one change (an index compaction
// is not undone: nothing may fail after it in the same txn). Reads below rev fail with
// ErrCompacted at once, and the revisions no read at rev or later needs are deleted from
// the backend in bounded batches in the background. done closes when that is finished
// (or the store closes).
func (t *WriteTxn) Compact(rev int64) (done <-chan struct{}, err error) {
	if t.err != nil {
		return nil, t.err
	}
	s := t.s
	s.mu.Lock()
	if rev <= s.compactRev {
		cr := s.compactRev
		s.mu.Unlock()
		return nil, fmt.Errorf("compact at %d (compacted %d): %w", rev, cr, ErrCompacted)
	}
	if cur := t.viewRev(); rev > cur {
		s.mu.Unlock()
		return nil, fmt.Errorf("compact at %d (current %d): %w", rev, cur, ErrFutureRev)
	}
	start := time.Now()
	keep := s.idx.compact(rev)
	s.compactRev = rev
	s.mu.Unlock()
	s.hub.kick() // unsynced watchers below rev are told at once
	indexCompactionPause.Observe(float64(time.Since(start)) / float64(time.Millisecond))

	t.putBucket(bucketMeta, metaScheduledCompact, revision{main: rev}.bytes(false))
	return s.startCompaction(rev, keep), nil
}

// startCompaction runs the physical part of a compaction after any earlier one. Caller
// holds wmu.
func (s *Store) startCompaction(rev int64, keep map[revision]struct{}) <-chan struct{} {
	done := make(chan struct{})
	gen := s.generation
	prev := s.lastCompaction
	s.lastCompaction = done
	s.compact.Add(1)
	go func() {
		defer s.compact.Done()
		defer close(done)
		if prev != nil {
			select {
			case <-prev:
			case <-s.stopc:
				return
			}
		}
		if err := s.runCompaction(rev, keep, gen); err != nil {
			s.lg.Warn("compaction stopped", zap.Int64("compact-revision", rev), zap.Error(err))
		}
	}()
	return done
}

// runCompaction deletes the revisions at or below rev that are not in keep, at most
// compactBatchLimit keys per committed bbolt transaction, then marks the compaction
// finished. It stops once the store's contents are replaced (generation changes).
func (s *Store) runCompaction(rev int64, keep map[revision]struct{}, gen uint64) error {
	start := time.Now()
	from := revision{}.bytes(false)
	end := revision{main: rev + 1}.bytes(false)
	total := 0
	for {
		select {
		case <-s.stopc:
			return fmt.Errorf("store closing after %d keys", total)
		default:
		}
		if hook := s.hooks.compactBatch; hook != nil {
			hook()
		}
		s.wmu.Lock()
		if s.closed {
			s.wmu.Unlock()
			return fmt.Errorf("store closed after %d keys", total)
		}
		if s.generation != gen {
			s.wmu.Unlock()
			return fmt.Errorf("store contents replaced by a snapshot after %d keys", total)
		}
		if err := s.usable(); err != nil {
			s.wmu.Unlock()
			return err
		}
		var (
			del  [][]byte
			last []byte
			n    int
		)
		c := s.b.tx.Bucket(bucketKey).Cursor()
		for k, _ := c.Seek(from); k != nil && bytes.Compare(k, end) < 0 && n < compactBatchLimit; k, _ = c.Next() {
			n++
			last = k
			if _, ok := keep[bytesToRev(k)]; !ok {
				del = append(del, bytes.Clone(k))
			}
		}
		if last != nil {
			r := bytesToRev(last)
			from = revision{main: r.main, sub: r.sub + 1}.bytes(false)
		}
		var err error
		for _, k := range del {
			if err == nil {
				err = s.b.delete(bucketKey, k)
			}
		}
		total += len(del)
		compactionKeys.Add(float64(len(del)))
		finished := n < compactBatchLimit
		if finished && err == nil {
			err = s.b.put(bucketMeta, metaFinishedCompact, revision{main: rev}.bytes(false))
		}
		if err == nil {
			// A commit failing for lack of space keeps the deletes in the batch, retried
			// with it: the compaction goes on (a restart resumes it from the file).
			if err = s.commitLocked(); errors.Is(err, ErrDiskFull) {
				err = nil
			}
		} else {
			s.fail(err)
		}
		s.wmu.Unlock()
		if err != nil {
			return fmt.Errorf("mvcc: compaction at %d: %w", rev, err)
		}
		if finished {
			s.lg.Info("finished compaction", zap.Int64("compact-revision", rev),
				zap.Int("deleted-keys", total), zap.Duration("took", time.Since(start)))
			return nil
		}
	}
}
