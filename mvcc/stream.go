package mvcc

import (
	"fmt"

	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// ChunkOptions shapes one chunk of a RangeIter.
type ChunkOptions struct {
	// MaxBytes ends the chunk once the encoded size of its KVs reaches it; a chunk has
	// at least one KV whatever its size (unless the range is exhausted).
	MaxBytes int
	// MaxKVs caps the KVs of the chunk (0: no cap).
	MaxKVs int
	// KeysOnly drops the values (they then count for nothing in MaxBytes).
	KeysOnly bool
	// Keep, if set, drops the KVs it returns false for: they are read (and counted by
	// Count) but not returned.
	Keep func(kv *mvccpb.KeyValue) bool
}

// Initial and largest number of index entries one walk of a RangeIter collects; each
// walk holds the index lock only for itself, never while values are decoded.
const (
	iterFirstBatch = 64
	iterMaxBatch   = 4096
)

// RangeIter reads the keys of a range live at one revision (pinned when it is made)
// chunk by chunk, in key order, each chunk disjoint from the others: its memory is that
// of a chunk, not of the range. Every chunk walks the index under the index lock for
// at most iterMaxBatch keys, takes a view of their values (rangeView, as Range does),
// releases the lock and decodes, so writers and compaction go on between chunks and
// while the caller handles one. A compaction past the pinned revision makes the next
// Next or Count fail with ErrCompacted. A RangeIter is used by one goroutine.
type RangeIter struct {
	s       *Store
	rev     int64 // the revision read
	cursor  []byte
	end     []byte
	single  bool // end is empty: the range is the one key
	done    bool
	visited int // live keys consumed so far (kept or not)
	batch   int
}

// RangeIter starts a chunked read of [key, end) (Range's end encodings) at rev (<= 0:
// the view's revision), failing as Range does for a future or compacted revision.
func (t *ReadTxn) RangeIter(key, end []byte, rev int64) (*RangeIter, error) {
	rangeCounter.Inc()
	s := t.s
	s.mu.RLock()
	rev, err := s.readRev(rev, t.rev)
	s.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	return &RangeIter{
		s: s, rev: rev, end: end, single: len(end) == 0,
		cursor: append([]byte(nil), key...), batch: iterFirstBatch,
	}, nil
}

// Rev is the revision the iterator reads.
func (it *RangeIter) Rev() int64 { return it.rev }

// Next returns the next chunk, or no KVs once the range is exhausted.
func (it *RangeIter) Next(o ChunkOptions) ([]*mvccpb.KeyValue, error) {
	var kvs []*mvccpb.KeyValue
	size := 0
	full := func() bool { return size >= o.MaxBytes || (o.MaxKVs > 0 && len(kvs) >= o.MaxKVs) }
	for !it.done && (len(kvs) == 0 || !full()) {
		n := it.batch
		if o.MaxKVs > 0 && o.Keep == nil {
			n = min(n, o.MaxKVs-len(kvs))
		}
		hits, v, err := it.walk(n)
		if err != nil {
			return nil, err
		}
		consumed := 0
		for i, h := range hits {
			kv, err := v.kv(i, h.rev)
			if err != nil {
				v.close()
				return nil, err
			}
			consumed++
			it.visited++
			it.cursor = append(append(it.cursor[:0], h.key...), 0)
			if o.KeysOnly {
				kv.Value = nil
			}
			if o.Keep != nil && !o.Keep(kv) {
				continue
			}
			kvs = append(kvs, kv)
			size += kv.SizeVT()
			if full() {
				break
			}
		}
		if v != nil {
			v.close()
		}
		switch {
		case it.single || (consumed == len(hits) && len(hits) < n):
			it.done = true
		case consumed == len(hits):
			it.batch = min(2*it.batch, iterMaxBatch)
		}
	}
	return kvs, nil
}

// walk collects the next n keys live at the pinned revision from the cursor on and a
// view of their values (nil when there are none).
func (it *RangeIter) walk(n int) ([]indexHit, *rangeView, error) {
	s := it.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.checkCompacted(it.rev); err != nil {
		return nil, nil, err
	}
	hits := make([]indexHit, 0, n)
	s.idx.visit(it.cursor, it.end, func(ki *keyIndex) bool {
		if rev, _, _, ok := ki.get(it.rev); ok {
			hits = append(hits, indexHit{key: ki.keyBytes(), rev: rev})
		}
		return len(hits) < n
	})
	if len(hits) == 0 {
		return nil, nil, nil
	}
	// Taken under mu: no compaction deletes a revision of hits from this view.
	v, err := s.b.view(hits)
	if err != nil {
		return nil, nil, err
	}
	return hits, v, nil
}

// Count is the number of keys of the whole range live at the pinned revision: those
// Next consumed so far plus the rest, counted from the index without reading values.
func (it *RangeIter) Count() (int, error) {
	if it.done {
		return it.visited, nil
	}
	s := it.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.checkCompacted(it.rev); err != nil {
		return 0, err
	}
	n := it.visited
	s.idx.visit(it.cursor, it.end, func(ki *keyIndex) bool {
		if _, _, _, ok := ki.get(it.rev); ok {
			n++
		}
		return true
	})
	return n, nil
}

// readRev resolves a read at rev (<= 0: viewRev) by a view at viewRev: ErrFutureRev
// above it, ErrCompacted below the compacted revision. Caller holds s.mu shared.
func (s *Store) readRev(rev, viewRev int64) (int64, error) {
	if rev <= 0 {
		rev = viewRev
	}
	if rev > viewRev {
		return 0, fmt.Errorf("range at %d (current %d): %w", rev, viewRev, ErrFutureRev)
	}
	return rev, s.checkCompacted(rev)
}

// checkCompacted fails with ErrCompacted if rev is below the compacted revision.
// Caller holds s.mu shared.
func (s *Store) checkCompacted(rev int64) error {
	if rev < s.compactRev {
		return fmt.Errorf("range at %d (compacted %d): %w", rev, s.compactRev, ErrCompacted)
	}
	return nil
}
