package mvcc

import (
	"fmt"
	"hash/crc32"
	"sync"
	"testing"
	"time"
)

// gate pauses a hook until opened: reached closes once the hook first runs.
type gate struct {
	reached, open chan struct{}
	once, opened  sync.Once
}

func newGate(t *testing.T) *gate {
	g := &gate{reached: make(chan struct{}), open: make(chan struct{})}
	t.Cleanup(g.release) // before the store's Close, which waits for paused work
	return g
}

func (g *gate) wait() {
	g.once.Do(func() { close(g.reached) })
	<-g.open
}

func (g *gate) release() { g.opened.Do(func() { close(g.open) }) }

func mustReach(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not reached within 10s", what)
	}
}

// writeDuring runs one write transaction and reports whether it finished within
// blockedTimeout.
func writeDuring(t *testing.T, s *Store, key string) bool {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tw := s.Write()
		tw.Put([]byte(key), []byte("v"), 0)
		tw.End(0, 0)
	}()
	select {
	case <-done:
		return true
	case <-time.After(blockedTimeout):
		return false
	}
}

// fill writes n keys "k%06d" in transactions of at most 1000 changes.
func fill(t *testing.T, s *Store, n int, val string) {
	t.Helper()
	for i := 0; i < n; {
		tw := s.Write()
		for j := 0; j < 1000 && i < n; j, i = j+1, i+1 {
			tw.Put([]byte(fmt.Sprintf("k%06d", i)), []byte(val), 0)
		}
		tw.End(0, 0)
	}
}

// refHash is etcd's HashKV computation (what a compaction at the hashed revision keeps
// below the compact revision; everything there if that is nothing) over the batch under
// the write lock, as HashByRev scanned it before; for stores with live keys at rev.
func refHash(t *testing.T, s *Store, rev int64) uint32 {
	t.Helper()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.RLock()
	compactRev := s.compactRev
	keep := s.idx.keep(rev)
	s.mu.RUnlock()
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	h.Write(bucketKey)
	err := s.b.tx.Bucket(bucketKey).ForEach(func(k, v []byte) error {
		kr := bytesToRev(k)
		if kr.main > rev {
			return nil
		}
		if kr.main <= compactRev && len(keep) > 0 {
			if _, ok := keep[kr]; !ok {
				return nil
			}
		}
		if kr.main == compactRev && isTombstone(k) {
			return nil
		}
		h.Write(k)
		h.Write(v)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return h.Sum32()
}

// A HashKV scans the whole key bucket; writes must go on meanwhile, and the hash must be
// the one the scan of the batch under the write lock gave (committed or not).
func TestHashByRevDoesNotBlockWrites(t *testing.T) {
	// A commit that remapped the db would wait for the scan's read transaction (see
	// TestInitialMmapSizeCommitBesideOpenSnapshot); the server maps 10 GiB.
	s := newStoreWith(t, Config{InitialMmapSize: 64 << 20})
	fill(t, s, 3000, "a")
	fill(t, s, 1000, "b") // overwrites k000000..k000999
	del(t, s, "k002000", "k002010")
	if _, err := s.Compact(s.Rev() - 1); err != nil {
		t.Fatal(err)
	}
	waitDone(t, s.lastCompaction)
	fill(t, s, 500, "c") // left in the uncommitted batch
	rev := s.Rev()
	want := refHash(t, s, rev)

	g := newGate(t)
	s.hooks.hashScan = func(n int) {
		if n == 2000 {
			g.wait()
		}
	}
	type result struct {
		h        uint32
		rev, crv int64
		err      error
	}
	resc := make(chan result, 1)
	go func() {
		h, r, c, err := s.HashByRev(rev)
		resc <- result{h, r, c, err}
	}()
	mustReach(t, g.reached, "hash scan")
	if !writeDuring(t, s, "during-hash") {
		g.release()
		<-resc
		t.Fatalf("a write transaction did not finish within %v while HashByRev was scanning", blockedTimeout)
	}
	g.release()
	res := <-resc
	if res.err != nil {
		t.Fatal(res.err)
	}
	s.hooks.hashScan = nil
	if res.h != want || res.rev != rev || res.crv != s.CompactedRev() {
		t.Fatalf("hash %x rev %d compact %d, want %x rev %d compact %d", res.h, res.rev, res.crv, want, rev, s.CompactedRev())
	}
	if h, _, _, _ := s.HashByRev(rev); h != want || refHash(t, s, rev) != want {
		t.Fatalf("hash at %d after a later write: %x, want %x", rev, h, want)
	}
	if h, _, _, _ := s.HashByRev(0); h != refHash(t, s, s.Rev()) || h == want {
		t.Fatalf("current hash %x, reference %x (at %d: %x)", h, refHash(t, s, s.Rev()), rev, want)
	}
}

// Two members with the same history, every key deleted before the compaction: one has
// physically compacted, the other not yet. Their hashes agree (no false CORRUPT alarm),
// and the second's hash does not change when its compaction finishes.
func TestHashEmptyKeyspaceDuringCompaction(t *testing.T) {
	hist := func(s *Store) int64 {
		put(t, s, "a", "1")
		put(t, s, "b", "1")
		put(t, s, "a", "2")
		del(t, s, "a", "")
		del(t, s, "b", "")
		return s.Rev()
	}
	done, _ := newStore(t)
	pending, _ := newStore(t)
	rev := hist(done)
	if hist(pending) != rev {
		t.Fatal("histories differ")
	}
	g := newGate(t)
	pending.hooks.compactBatch = g.wait
	d1, err := done.Compact(rev)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, d1)
	d2, err := pending.Compact(rev)
	if err != nil {
		t.Fatal(err)
	}
	mustReach(t, g.reached, "pending compaction")
	if n := batchKeyCount(t, pending); n != 5 {
		t.Fatalf("pending member holds %d revisions, want all 5", n)
	}
	h1, _, c1, err := done.HashByRev(0)
	if err != nil {
		t.Fatal(err)
	}
	h2, _, c2, err := pending.HashByRev(0)
	if err != nil {
		t.Fatal(err)
	}
	if h1 != h2 || c1 != rev || c2 != rev {
		t.Fatalf("compacted %x/%d vs compaction pending %x/%d", h1, c1, h2, c2)
	}
	g.release()
	waitDone(t, d2)
	if h, _, _, _ := pending.HashByRev(0); h != h2 {
		t.Fatalf("hash after the compaction finished %x, before %x", h, h2)
	}
	put(t, done, "c", "1")
	put(t, pending, "c", "1")
	ha, _, _, _ := done.HashByRev(0)
	hb, _, _, _ := pending.HashByRev(0)
	if ha != hb || ha == h1 {
		t.Fatalf("after a later put: %x vs %x (before %x)", ha, hb, h1)
	}
}

// The hashes etcd 3.6.16 answers HashKV with after the same history (measured against
// /work/main/bin/etcd through clientv3): below the compact revision etcd hashes what a
// compaction at the hashed revision would keep, or, when that is nothing, what bbolt holds
// once the compaction is done.
func TestHashByRevMatchesEtcd(t *testing.T) {
	s, _ := newStore(t)
	for i := 0; i < 20; i++ {
		put(t, s, fmt.Sprintf("k%02d", i%7), fmt.Sprint(i)) // revs 2..21
	}
	del(t, s, "k03", "") // 22
	tw := s.Write()      // 23
	tw.Put([]byte("t1"), []byte("a"), 0)
	tw.Put([]byte("t2"), []byte("b"), 0)
	tw.DeleteRange([]byte("k04"), nil)
	tw.End(0, 0)
	all := func() {
		tw := s.Write()
		tw.DeleteRange([]byte{0}, []byte{0})
		tw.End(0, 0)
	}
	compact := func(rev int64) {
		t.Helper()
		done, err := s.Compact(rev)
		if err != nil {
			t.Fatal(err)
		}
		waitDone(t, done)
	}
	check := func(rev int64, wantHash uint32, wantCompact int64) {
		t.Helper()
		h, _, c, err := s.HashByRev(rev)
		if err != nil || h != wantHash || c != wantCompact {
			t.Fatalf("HashByRev(%d) at %d = %08x, compact %d, %v; etcd: %08x, compact %d",
				rev, s.Rev(), h, c, err, wantHash, wantCompact)
		}
	}
	check(0, 0x4a173686, -1)
	compact(18) // k00..k06 were changed, k03 and k04 deleted, after 18
	check(0, 0xe63061ef, 18)
	check(23, 0xe63061ef, 18)
	put(t, s, "k00", "after") // 24
	all()                     // 25
	compact(25)
	check(0, 0x40a4756d, 25)
	put(t, s, "z", "1") // 26
	check(0, 0x577351a3, 25)
	put(t, s, "y", "1") // 27
	put(t, s, "y", "2") // 28
	compact(28)
	all() // 29: nothing live, the compaction kept y@28 and z@26
	check(0, 0x16e7176b, 28)
}
