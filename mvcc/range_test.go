package mvcc

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
)

// A large Range decodes its values without the index lock: a write transaction and a
// compaction that deletes the very revisions being read complete meanwhile, and the range
// still returns its revision's values.
func TestRangeDoesNotBlockWriter(t *testing.T) {
	s := newStoreWith(t, Config{InitialMmapSize: 64 << 20}) // as in the hash test
	fill(t, s, 1000, "old")
	if err := s.Commit(); err != nil { // half committed, half only in the batch's buffer
		t.Fatal(err)
	}
	tw := s.Write()
	for i := 1000; i < 2000; i++ {
		tw.Put([]byte(fmt.Sprintf("k%06d", i)), []byte("old"), 0)
	}
	tw.End(0, 0)
	g := newGate(t)
	s.hooks.rangeValue = func(i int) {
		if i == 500 {
			g.wait()
		}
	}
	rt := s.Read()
	type result struct {
		rr  *RangeResult
		err error
	}
	resc := make(chan result, 1)
	go func() {
		rr, err := rt.Range(nil, []byte{0}, RangeOptions{})
		resc <- result{rr, err}
	}()
	mustReach(t, g.reached, "range decoding")
	if !writeDuring(t, s, "during-range") {
		g.release()
		<-resc
		t.Fatalf("a write transaction did not finish within %v while a Range was decoding", blockedTimeout)
	}
	// Overwrite and compact every key read, and commit: the range's revisions are gone
	// from bbolt and the buffer.
	fill(t, s, 2000, "new")
	done, err := s.Compact(s.Rev())
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, done)
	if n := batchKeyCount(t, s); n != 2001 {
		t.Fatalf("keys after compaction = %d, want 2001", n)
	}
	g.release()
	res := <-resc
	if res.err != nil {
		t.Fatal(res.err)
	}
	if len(res.rr.KVs) != 2000 || res.rr.Count != 2000 || res.rr.Rev != rt.Rev() {
		t.Fatalf("range: %d KVs, count %d, rev %d (view %d)", len(res.rr.KVs), res.rr.Count, res.rr.Rev, rt.Rev())
	}
	for i, kv := range res.rr.KVs {
		if string(kv.Key) != fmt.Sprintf("k%06d", i) || string(kv.Value) != "old" || kv.ModRevision > rt.Rev() {
			t.Fatalf("KV %d = %s=%s m%d", i, kv.Key, kv.Value, kv.ModRevision)
		}
	}
}

// A limited Range over many keys costs memory for the limit, not for the range; its count
// is still the whole range's.
func TestRangeLimitAllocatesForLimit(t *testing.T) {
	s, _ := newStore(t)
	const n = 100000
	fill(t, s, n, "v")
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	measure := func(o RangeOptions) (perRun uint64, rr *RangeResult) {
		const runs = 5
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := 0; i < runs; i++ {
			rr = rangeKVs(t, s, []byte("k"), []byte("l"), o)
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / runs, rr
	}
	limited, rr := measure(RangeOptions{Limit: 10})
	if len(rr.KVs) != 10 || rr.Count != n || !bytes.Equal(rr.KVs[9].Key, []byte("k000009")) {
		t.Fatalf("limit 10: %d KVs, count %d", len(rr.KVs), rr.Count)
	}
	countOnly, rr := measure(RangeOptions{CountOnly: true})
	if len(rr.KVs) != 0 || rr.Count != n {
		t.Fatalf("count only: %d KVs, count %d", len(rr.KVs), rr.Count)
	}
	// An index hit is 40 bytes: a hit list for the whole range would be 4 MB.
	const bound = 64 << 10
	if limited > bound || countOnly > bound {
		t.Fatalf("bytes allocated per Range over %d keys: limit 10: %d, count only: %d; want <= %d",
			n, limited, countOnly, bound)
	}
	t.Logf("bytes allocated per Range over %d keys: limit 10: %d, count only: %d", n, limited, countOnly)
}
