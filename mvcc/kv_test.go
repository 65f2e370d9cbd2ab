package mvcc

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/cairn-kv/cairn/proto/mvccpb"
)

func TestPutGetVersions(t *testing.T) {
	s, _ := newStore(t)
	if s.Rev() != 1 {
		t.Fatalf("fresh Rev = %d, want 1", s.Rev())
	}
	if r := put(t, s, "a", "1"); r != 2 {
		t.Fatalf("rev after first put = %d, want 2", r)
	}
	tw := s.Write()
	tw.Put([]byte("a"), []byte("2"), 7)
	tw.End(0, 0)
	kv := get(t, s, "a", 0)
	want := &mvccpb.KeyValue{Key: []byte("a"), Value: []byte("2"), CreateRevision: 2, ModRevision: 3, Version: 2, Lease: 7}
	if kv.String() != want.String() {
		t.Fatalf("get = %v, want %v", kv, want)
	}
	if kv := get(t, s, "a", 2); string(kv.Value) != "1" || kv.Version != 1 {
		t.Fatalf("get at 2 = %v", kv)
	}
	if kv := get(t, s, "missing", 0); kv != nil {
		t.Fatalf("missing key = %v", kv)
	}
}

func TestDeleteTombstone(t *testing.T) {
	s, _ := newStore(t)
	put(t, s, "a", "1") // 2
	put(t, s, "a", "2") // 3
	tw := s.Write()
	deleted := tw.DeleteRange([]byte("a"), nil)
	evs := tw.End(0, 0) // 4
	if len(deleted) != 1 || string(deleted[0].Value) != "2" {
		t.Fatalf("deleted = %v", deleted)
	}
	if len(evs) != 1 || evs[0].Type != mvccpb.Event_DELETE || evs[0].Kv.ModRevision != 4 || string(evs[0].Kv.Key) != "a" {
		t.Fatalf("events = %v", evs)
	}
	if s.Rev() != 4 {
		t.Fatalf("Rev = %d", s.Rev())
	}
	if kv := get(t, s, "a", 0); kv != nil {
		t.Fatalf("deleted key visible: %v", kv)
	}
	if kv := get(t, s, "a", 3); kv == nil || string(kv.Value) != "2" {
		t.Fatalf("old rev = %v", kv)
	}
	// Deleting nothing changes nothing.
	if n := del(t, s, "a", ""); n != 0 || s.Rev() != 4 {
		t.Fatalf("delete of deleted key: n=%d rev=%d", n, s.Rev())
	}
	// Recreate: new generation.
	put(t, s, "a", "3") // 5
	if kv := get(t, s, "a", 0); kv.Version != 1 || kv.CreateRevision != 5 {
		t.Fatalf("recreated = %v", kv)
	}
	// The tombstone is on disk as an 18-byte key with the 't' mark.
	s.wmu.Lock()
	v := s.b.tx.Bucket(bucketKey).Get(revision{main: 4}.bytes(true))
	s.wmu.Unlock()
	var kv mvccpb.KeyValue
	if v == nil {
		t.Fatal("no tombstone key on disk")
	}
	if err := unmarshal(v, &kv); err != nil || string(kv.Key) != "a" || kv.ModRevision != 0 {
		t.Fatalf("tombstone value = %v, %v", &kv, err)
	}
}

func TestRangeEndEncodings(t *testing.T) {
	s, _ := newStore(t)
	for _, k := range []string{"a", "b", "c", "d"} {
		put(t, s, k, k)
	}
	cases := []struct {
		key, end []byte
		want     []string
	}{
		{[]byte("b"), nil, []string{"b"}},
		{[]byte("bb"), nil, []string{}},
		{[]byte("c"), []byte{}, []string{"c"}},
		{[]byte("b"), []byte{0}, []string{"b", "c", "d"}},
		{[]byte("b"), []byte("d"), []string{"b", "c"}},
		{nil, []byte{0}, []string{"a", "b", "c", "d"}},
		{[]byte{}, []byte{0}, []string{"a", "b", "c", "d"}},
		{[]byte("c"), []byte("b"), []string{}},
		{[]byte("a"), []byte("a"), []string{}},
	}
	for _, c := range cases {
		rr := rangeKVs(t, s, c.key, c.end, RangeOptions{})
		if got := keysOf(rr.KVs); !reflect.DeepEqual(got, c.want) || rr.Count != len(c.want) || rr.Rev != 5 {
			t.Errorf("Range(%q,%q) = %v count %d rev %d, want %v", c.key, c.end, got, rr.Count, rr.Rev, c.want)
		}
	}
}

func TestLimitCountOnly(t *testing.T) {
	s, _ := newStore(t)
	for _, k := range []string{"d", "c", "b", "a"} {
		put(t, s, k, k)
	}
	rr := rangeKVs(t, s, nil, []byte{0}, RangeOptions{Limit: 2})
	if got := keysOf(rr.KVs); !reflect.DeepEqual(got, []string{"a", "b"}) || rr.Count != 4 {
		t.Fatalf("limit 2: %v count %d", got, rr.Count)
	}
	rr = rangeKVs(t, s, nil, []byte{0}, RangeOptions{Limit: 10})
	if len(rr.KVs) != 4 || rr.Count != 4 {
		t.Fatalf("limit 10: %d kvs count %d", len(rr.KVs), rr.Count)
	}
	rr = rangeKVs(t, s, nil, []byte{0}, RangeOptions{CountOnly: true})
	if len(rr.KVs) != 0 || rr.Count != 4 {
		t.Fatalf("count only: %d kvs count %d", len(rr.KVs), rr.Count)
	}
	rr = rangeKVs(t, s, nil, []byte{0}, RangeOptions{Rev: 3})
	if got := keysOf(rr.KVs); !reflect.DeepEqual(got, []string{"c", "d"}) || rr.Rev != 5 {
		t.Fatalf("at rev 3: %v rev %d", got, rr.Rev)
	}
}

func TestRevErrors(t *testing.T) {
	s, _ := newStore(t)
	for i := 0; i < 5; i++ {
		put(t, s, "k", string(rune('0'+i))) // revs 2..6
	}
	r := s.Read()
	if _, err := r.Range([]byte("k"), nil, RangeOptions{Rev: 7}); !errors.Is(err, ErrFutureRev) {
		t.Fatalf("future rev: %v", err)
	}
	if _, err := s.Compact(7); !errors.Is(err, ErrFutureRev) {
		t.Fatalf("compact future: %v", err)
	}
	done, err := s.Compact(4)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, done)
	if _, err := s.Compact(4); !errors.Is(err, ErrCompacted) {
		t.Fatalf("compact again: %v", err)
	}
	if _, err := s.Compact(3); !errors.Is(err, ErrCompacted) {
		t.Fatalf("compact below: %v", err)
	}
	r = s.Read()
	if _, err := r.Range([]byte("k"), nil, RangeOptions{Rev: 3}); !errors.Is(err, ErrCompacted) {
		t.Fatalf("compacted rev: %v", err)
	}
	if kv := get(t, s, "k", 4); kv == nil || string(kv.Value) != "2" {
		t.Fatalf("at compacted rev = %v", kv)
	}
	if s.CompactedRev() != 4 {
		t.Fatalf("CompactedRev = %d", s.CompactedRev())
	}
	if _, _, _, err := s.HashByRev(3); !errors.Is(err, ErrCompacted) {
		t.Fatalf("hash compacted: %v", err)
	}
	if _, _, _, err := s.HashByRev(9); !errors.Is(err, ErrFutureRev) {
		t.Fatalf("hash future: %v", err)
	}
}

func TestTxnSubRevisions(t *testing.T) {
	s, _ := newStore(t)
	put(t, s, "z", "0") // 2
	tw := s.Write()
	defer tw.End(0, 0) // releases the write lock if a check fails; End is idempotent
	if tw.Rev() != 2 {
		t.Fatalf("txn Rev = %d", tw.Rev())
	}
	rr, err := tw.Range([]byte("a"), nil, RangeOptions{})
	if err != nil || rr.Rev != 2 || len(rr.KVs) != 0 {
		t.Fatalf("range before writes: %v %v", rr, err)
	}
	tw.Put([]byte("a"), []byte("1"), 0)
	tw.Put([]byte("b"), []byte("2"), 0)
	rr, err = tw.Range(nil, []byte{0}, RangeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(rr.KVs); !reflect.DeepEqual(got, []string{"a", "b", "z"}) || rr.Rev != 3 {
		t.Fatalf("txn sees own writes: %v rev %d", got, rr.Rev)
	}
	if _, err := tw.Range(nil, []byte{0}, RangeOptions{Rev: 4}); !errors.Is(err, ErrFutureRev) {
		t.Fatalf("txn future rev: %v", err)
	}
	tw.Put([]byte("a"), []byte("1b"), 0)
	if d := tw.DeleteRange([]byte("z"), nil); len(d) != 1 {
		t.Fatalf("delete z: %v", d)
	}
	if rr, _ := tw.Range([]byte("z"), nil, RangeOptions{}); len(rr.KVs) != 0 {
		t.Fatalf("txn sees own delete: %v", rr.KVs)
	}
	// Not visible to readers before End. (No Fatal while the txn holds the write lock.)
	if rr, err := s.Read().Range([]byte("a"), nil, RangeOptions{}); err != nil || len(rr.KVs) != 0 {
		t.Errorf("uncommitted txn visible: %v, %v", rr, err)
	}
	evs := tw.End(10, 2)
	if len(evs) != 4 {
		t.Fatalf("events = %v", evs)
	}
	if s.Rev() != 3 {
		t.Fatalf("Rev after txn = %d", s.Rev())
	}
	a, b := get(t, s, "a", 0), get(t, s, "b", 0)
	if a.ModRevision != 3 || b.ModRevision != 3 || a.Version != 2 || a.CreateRevision != 3 {
		t.Fatalf("a=%v b=%v", a, b)
	}
	// On disk: {3,0} a, {3,1} b, {3,2} a, {3,3}t z.
	s.wmu.Lock()
	bk := s.b.tx.Bucket(bucketKey)
	for sub, key := range []string{"a", "b", "a"} {
		v := bk.Get(revision{main: 3, sub: int64(sub)}.bytes(false))
		var kv mvccpb.KeyValue
		if err := unmarshal(v, &kv); err != nil || string(kv.Key) != key {
			t.Errorf("sub %d: %v %v", sub, &kv, err)
		}
	}
	if bk.Get(revision{main: 3, sub: 3}.bytes(true)) == nil {
		t.Error("tombstone at {3,3} missing")
	}
	s.wmu.Unlock()
	if i, tm := s.ConsistentIndex(); i != 10 || tm != 2 {
		t.Fatalf("ConsistentIndex = %d,%d", i, tm)
	}
}

func TestReadSnapshotIsolation(t *testing.T) {
	s, _ := newStore(t)
	put(t, s, "a", "1")
	r := s.Read()
	defer r.End()
	tw := s.Write()
	defer tw.End(0, 0)
	tw.Put([]byte("a"), []byte("2"), 0)
	tw.Put([]byte("b"), []byte("2"), 0)
	// A write in progress is invisible.
	rr, err := r.Range(nil, []byte{0}, RangeOptions{})
	tw.End(0, 0)
	if err != nil || len(rr.KVs) != 1 || string(rr.KVs[0].Value) != "1" {
		t.Fatalf("during write: %v %v", rr, err)
	}
	// A write ended after the view began is invisible too.
	rr, err = r.Range(nil, []byte{0}, RangeOptions{})
	if err != nil || len(rr.KVs) != 1 || string(rr.KVs[0].Value) != "1" || rr.Rev != 2 || r.Rev() != 2 {
		t.Fatalf("after write: %v %v", rr, err)
	}
	if _, err := r.Range(nil, []byte{0}, RangeOptions{Rev: 3}); !errors.Is(err, ErrFutureRev) {
		t.Fatalf("view future rev: %v", err)
	}
	// A new view sees it.
	if rr := rangeKVs(t, s, nil, []byte{0}, RangeOptions{}); len(rr.KVs) != 2 || rr.Rev != 3 {
		t.Fatalf("new view: %v", rr)
	}
}

func TestIndexKeepSkipsTombstoneAtCompactRev(t *testing.T) {
	ti := newTreeIndex()
	ti.put([]byte("a"), revision{main: 2})
	ti.tombstone([]byte("a"), revision{main: 3})
	ti.put([]byte("b"), revision{main: 4})
	keep := ti.keep(3)
	if len(keep) != 0 {
		t.Fatalf("keep(3) = %v", keep)
	}
	avail := ti.compact(3)
	if _, ok := avail[revision{main: 3}]; !ok || len(avail) != 1 {
		t.Fatalf("compact(3) available = %v", avail)
	}
	if _, _, _, ok := ti.get([]byte("a"), 3); ok {
		t.Fatal("deleted key visible after compaction")
	}
	avail = ti.compact(4)
	if _, ok := avail[revision{main: 4}]; !ok || len(avail) != 1 || ti.keyIndex([]byte("a")) != nil {
		t.Fatalf("compact(4) available = %v", avail)
	}
	if !bytes.Equal(ti.rangeAt(nil, []byte{0}, 4)[0].key, []byte("b")) {
		t.Fatal("b missing")
	}
}
