package mvcc

import (
	"fmt"

	"google.golang.org/protobuf/proto"

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

// rangeLocked serves a range for a view whose current revision is viewRev, fetching values
// with value. Caller holds s.mu shared.
func (s *Store) rangeLocked(key, end []byte, o RangeOptions, viewRev int64,
	value func(revision) ([]byte, error)) (*RangeResult, error) {
	rev := o.Rev
	if rev <= 0 {
		rev = viewRev
	}
	if rev > viewRev {
		return nil, fmt.Errorf("range at %d (current %d): %w", rev, viewRev, ErrFutureRev)
	}
	if rev < s.compactRev {
		return nil, fmt.Errorf("range at %d (compacted %d): %w", rev, s.compactRev, ErrCompacted)
	}
	hits := s.idx.rangeAt(key, end, rev)
	res := &RangeResult{Rev: viewRev, Count: len(hits)}
	if o.CountOnly {
		return res, nil
	}
	if o.Limit > 0 && o.Limit < int64(len(hits)) {
		hits = hits[:o.Limit]
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
	if err := proto.Unmarshal(v, kv); err != nil {
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
func (t *ReadTxn) Range(key, end []byte, o RangeOptions) (*RangeResult, error) {
	rangeCounter.Inc()
	t.s.mu.RLock()
	defer t.s.mu.RUnlock()
	r := t.s.b.reader()
	defer r.close()
	return t.s.rangeLocked(key, end, o, t.rev, r.value)
}

// End finishes the view.
func (t *ReadTxn) End() {}
