package mvcc

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// readHistory returns the events of revisions minRev..maxRev from the backend, in
// revision and sub-revision order, stopping at a revision boundary after maxRevs
// revisions or once maxEvents events were read; end is the last revision covered.
//
// Committed revisions are read in a bbolt read transaction, without the write lock; only
// the revisions of the open batch (at most one batch interval's worth) are read under it.
// A compaction may delete revisions below it meanwhile: callers check CompactedRev after
// the read.
func (s *Store) readHistory(minRev, maxRev int64, maxRevs, maxEvents int) (evs []*mvccpb.Event, end int64, err error) {
	sc := historyScan{to: maxRev, maxRevs: maxRevs, maxEvents: maxEvents, cur: -1}
	from := minRev
	if committed := s.committedRev.Load(); from <= committed {
		sc.to = min(maxRev, committed)
		tx, err := s.backend().db.Begin(false)
		if err != nil {
			return nil, 0, fmt.Errorf("mvcc: begin history read: %w", err)
		}
		err = sc.scan(tx.Bucket(bucketKey), from)
		_ = tx.Rollback()
		if err != nil || sc.full {
			return sc.evs, sc.end, err
		}
		from, sc.to = sc.to+1, maxRev
	}
	if from > maxRev {
		return sc.evs, maxRev, nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed || s.b.tx == nil {
		return nil, 0, errors.New("mvcc: store is closed or its backend failed")
	}
	err = sc.scan(s.b.tx.Bucket(bucketKey), from)
	return sc.evs, sc.end, err
}

// historyScan accumulates events over one or two bucket scans.
type historyScan struct {
	to        int64
	maxRevs   int
	maxEvents int

	evs  []*mvccpb.Event
	revs int   // distinct revisions read
	cur  int64 // the revision of the last event read
	end  int64 // the last revision covered
	full bool  // stopped at a limit
}

func (sc *historyScan) scan(b *bolt.Bucket, from int64) error {
	c := b.Cursor()
	for k, v := c.Seek(revision{main: from}.bytes(false)); k != nil; k, v = c.Next() {
		rev := bytesToRev(k)
		if rev.main > sc.to {
			break
		}
		if rev.main != sc.cur {
			if sc.revs >= sc.maxRevs || (sc.revs > 0 && len(sc.evs) >= sc.maxEvents) {
				sc.end, sc.full = sc.cur, true
				return nil
			}
			sc.revs++
			sc.cur = rev.main
		}
		if len(v) == 0 {
			continue // a restore's revision marker: no key changed
		}
		kv := &mvccpb.KeyValue{}
		if err := kv.UnmarshalVT(v); err != nil {
			return fmt.Errorf("mvcc: decode revision {%d %d}: %w", rev.main, rev.sub, err)
		}
		ev := &mvccpb.Event{Type: mvccpb.Event_PUT, Kv: kv}
		if isTombstone(k) {
			// A tombstone stores only the key; the event carries its revision too.
			ev.Type = mvccpb.Event_DELETE
			kv.ModRevision = rev.main
		}
		sc.evs = append(sc.evs, ev)
	}
	sc.end = sc.to
	return nil
}

// kvAt returns key's value at rev, or nil if it did not exist then or rev is compacted.
func (s *Store) kvAt(key []byte, rev int64) *mvccpb.KeyValue {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if rev <= 0 || rev < s.compactRev {
		return nil
	}
	mod, _, _, ok := s.idx.get(key, rev)
	if !ok {
		return nil
	}
	r := s.b.reader()
	defer r.close()
	kv, err := decodeKV(mod, r.value)
	if err != nil {
		return nil
	}
	return kv
}
