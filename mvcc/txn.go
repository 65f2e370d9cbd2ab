package mvcc

import (
	"fmt"
	"math"

	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// RangeOptions selects what a Range returns.
type RangeOptions struct {
	// Limit caps the number of KVs returned (0 = no limit); Count is unaffected.
	Limit int64
	// Rev is the revision to read at; <= 0 means the view's current revision.
	Rev int64
	// CountOnly returns the count and no KVs.
	CountOnly bool
}

// RangeResult is the outcome of a Range.
type RangeResult struct {
	KVs   []*mvccpb.KeyValue // sorted by key
	Rev   int64              // the view's current revision
	Count int                // every matching key, whatever the limit
}

// rangeIndex checks the read revision of a range read by a view whose current revision is
// viewRev and walks the index: the result without its KVs (the full count) and the
// revisions of the KVs to return, at most the limit (none for CountOnly). Caller holds
// s.mu shared.
func (s *Store) rangeIndex(key, end []byte, o RangeOptions, viewRev int64) (*RangeResult, []indexHit, error) {
	rev, err := s.readRev(o.Rev, viewRev)
	if err != nil {
		return nil, nil, err
	}
	limit := -1
	switch {
	case o.CountOnly:
		limit = 0
	case o.Limit > 0:
		limit = int(min(o.Limit, int64(math.MaxInt)))
	}
	hits, count := s.idx.rangeLimit(key, end, rev, limit)
	return &RangeResult{Rev: viewRev, Count: count}, hits, nil
}

// rangeLocked serves a range for a view whose current revision is viewRev, fetching values
// with value. Caller holds s.mu shared.
func (s *Store) rangeLocked(key, end []byte, o RangeOptions, viewRev int64,
	value func(revision) ([]byte, error)) (*RangeResult, error) {
	res, hits, err := s.rangeIndex(key, end, o, viewRev)
	if err != nil {
		return nil, err
	}
	if o.CountOnly {
		return res, nil
	}
	res.KVs = make([]*mvccpb.KeyValue, 0, len(hits))
	for _, h := range hits {
		kv, err := decodeKV(h.rev, value)
		if err != nil {
			return nil, err
		}
		res.KVs = append(res.KVs, kv)
	}
	return res, nil
}

func decodeKV(rev revision, value func(revision) ([]byte, error)) (*mvccpb.KeyValue, error) {
	v, err := value(rev)
	if err != nil {
		return nil, err
	}
	kv := &mvccpb.KeyValue{}
	if err := kv.UnmarshalVT(v); err != nil {
		return nil, fmt.Errorf("mvcc: decode revision {%d %d}: %w", rev.main, rev.sub, err)
	}
	return kv, nil
}

// ReadTxn is a consistent read view of the store at the revision current when it began.
// It is safe to use concurrently with a write transaction.
type ReadTxn struct {
	s   *Store
	rev int64
}

// Read starts a read view at the current revision.
func (s *Store) Read() *ReadTxn {
	return &ReadTxn{s: s, rev: s.currentRev.Load()}
}

// Rev is the view's revision.
func (t *ReadTxn) Rev() int64 { return t.rev }

// Range reads the keys in [key, end) (see RangeOptions); an empty end reads key alone, end
// "\x00" every key >= key.
//
// Only the index walk holds the index lock; the values are read and decoded after it is
// released, from a view of the backend taken before (rangeView), so a large range holds
// up neither the writer nor, behind it, other readers; the map pages it read leave the
// resident set every rangeDropBytes (the KVs are copies), not only at the end.
func (t *ReadTxn) Range(key, end []byte, o RangeOptions) (*RangeResult, error) {
	var kvs []*mvccpb.KeyValue
	res, err := t.rangeStored(key, end, o, func(n int) { kvs = make([]*mvccpb.KeyValue, 0, n) },
		func(rev revision, val []byte) error {
			kv, err := decodeStored(rev, val) // a copy: the pages it came from may go
			if err != nil {
				return err
			}
			kvs = append(kvs, kv)
			return nil
		})
	if err != nil || o.CountOnly {
		return res, err
	}
	res.KVs = kvs
	return res, nil
}

// rangeStored is the walk of Range and RangeEncoded: the index under mu, then the
// stored encoding of every hit, in key order, read from a view of the backend taken
// before mu is released and handed to f (valid only during the call; start is told how
// many come first). The map pages read leave the resident set every rangeDropBytes.
func (t *ReadTxn) rangeStored(key, end []byte, o RangeOptions, start func(n int), f func(rev revision, val []byte) error) (*RangeResult, error) {
	rangeCounter.Inc()
	s := t.s
	s.mu.RLock()
	res, hits, err := s.rangeIndex(key, end, o, t.rev)
	if err != nil || o.CountOnly {
		s.mu.RUnlock()
		return res, err
	}
	// Taken under mu: no compaction has deleted a revision the walk found, and none that
	// starts later deletes it from this view.
	v, err := s.b.view(hits)
	s.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	defer v.close()
	start(len(hits))
	for i, h := range hits {
		if hook := s.hooks.rangeValue; hook != nil {
			hook(i)
		}
		val, err := v.raw(i, h.rev)
		if err != nil {
			return nil, err
		}
		if err := f(h.rev, val); err != nil {
			return nil, err
		}
		if v.mappedBytes >= rangeDropBytes {
			v.dropMapped()
		}
	}
	return res, nil
}

// End finishes the view.
func (t *ReadTxn) End() {}
