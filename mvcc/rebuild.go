package mvcc

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"
)

// The index rebuild at Open is a two-stage pipeline: one goroutine walks the "key"
// bucket in revision order and decodes, in batches, only what the index needs of each
// value (key, create revision, version: never the value itself, so nothing of a value
// is copied and only the first page of a large one is read); the caller inserts the
// batches into the index in order, and drops the map pages they read. Walking bbolt
// (page faults) and inserting into the btree so run on two cores at once.

// A batch of the pipeline carries up to rebuildBatch revisions or rebuildBatchBytes of
// stored values (their map pages stay resident until the index has taken them and the
// scan dropper drops them: rebuildQueue batches ahead bound that).
const (
	rebuildBatch      = 4096
	rebuildBatchBytes = 8 << 20
	rebuildQueue      = 2
)

// scanned is one revision of the "key" bucket, decoded for the index. key and val
// point into bbolt's map: they are valid while the scan's transaction is open.
type scanned struct {
	rev  revision
	tomb bool
	indexFields
	val []byte // the stored bytes, for the scan dropper
}

// indexFields is what the rebuild reads of a stored mvccpb.KeyValue.
type indexFields struct {
	key     []byte
	created int64
	ver     int64
	lease   int64
}

type scanBatch struct {
	items  []scanned
	bytes  int // of the items' stored values
	maxRev int64
	err    error
}

// scanKeyBucket walks the "key" bucket of tx, sending decoded batches on out until the
// end, an error (sent as the last batch) or stop is closed. It closes out.
func scanKeyBucket(tx *bolt.Tx, out chan<- *scanBatch, free <-chan *scanBatch, stop <-chan struct{}) {
	defer close(out)
	send := func(b *scanBatch) bool {
		select {
		case out <- b:
			return true
		case <-stop:
			return false
		}
	}
	// Batches the index has taken come back through free, so the rebuild allocates a few.
	next := func(maxRev int64) *scanBatch {
		select {
		case b := <-free:
			*b = scanBatch{items: b.items[:0], maxRev: maxRev}
			return b
		default:
			return &scanBatch{items: make([]scanned, 0, rebuildBatch), maxRev: maxRev}
		}
	}
	b := next(0)
	c := tx.Bucket(bucketKey).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != revBytesLen && len(k) != markedRevBytesLen {
			b.err = fmt.Errorf("malformed key bucket key %x", k)
			send(b)
			return
		}
		rev := bytesToRev(k)
		b.maxRev = max(b.maxRev, rev.main)
		if len(v) == 0 {
			continue // a restore's revision marker (etcdutl --bump-revision): no key
		}
		it := scanned{rev: rev, tomb: isTombstone(k), val: v}
		var err error
		if it.indexFields, err = decodeIndexFields(v); err != nil {
			b.err = fmt.Errorf("decode revision {%d %d}: %w", rev.main, rev.sub, err)
			send(b)
			return
		}
		b.items = append(b.items, it)
		b.bytes += len(v)
		if len(b.items) == rebuildBatch || b.bytes >= rebuildBatchBytes {
			if !send(b) {
				return
			}
			b = next(b.maxRev)
		}
	}
	send(b)
}

// decodeIndexFields reads key, create_revision, version and lease of a marshalled
// mvccpb.KeyValue without decoding (or copying) the value; key aliases b.
func decodeIndexFields(b []byte) (f indexFields, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return f, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			f.key, n = protowire.ConsumeBytes(b)
		case (num == 2 || num == 4 || num == 6) && typ == protowire.VarintType:
			var x uint64
			x, n = protowire.ConsumeVarint(b)
			switch num {
			case 2:
				f.created = int64(x)
			case 4:
				f.ver = int64(x)
			default:
				f.lease = int64(x)
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return f, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return f, nil
}

// rebuildIndex rebuilds the index from the "key" bucket of tx and returns the highest
// revision found (1 if none), and the lease of every live key that has one (for
// TakeKeyLeases; nil if none).
func (s *Store) rebuildIndex(tx *bolt.Tx) (int64, map[string]int64, error) {
	drop := s.b.newScanDropper(tx) // before the scan: tx is then the scan's alone
	defer drop.flush()
	batches := make(chan *scanBatch, rebuildQueue)
	free := make(chan *scanBatch, rebuildQueue+2)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		scanKeyBucket(tx, batches, free, stop)
	}()
	// The scan must be over before tx (whose pages it reads) may end.
	defer func() {
		close(stop)
		<-done
	}()
	cur := int64(1)
	var leases map[string]int64
	for b := range batches {
		if b.err != nil {
			return 0, nil, b.err
		}
		cur = max(cur, b.maxRev)
		for i := range b.items {
			it := &b.items[i]
			if it.tomb {
				// A tombstone for a key whose live revisions were compacted away has
				// nothing left to end.
				s.idx.tombstone(it.key, it.rev)
				delete(leases, string(it.key))
			} else {
				s.idx.restore(it.key, it.created, it.rev, it.ver)
				switch {
				case it.lease != 0 && leases == nil:
					leases = map[string]int64{string(it.key): it.lease}
				case it.lease != 0:
					leases[string(it.key)] = it.lease
				default:
					delete(leases, string(it.key))
				}
			}
			drop.note(it.val)
		}
		clear(b.items) // no pointer into the map outlives the scan
		select {
		case free <- b:
		default:
		}
	}
	return cur, leases, nil
}
