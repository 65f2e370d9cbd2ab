package mvcc

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// decodeIndexFields reads what proto.Unmarshal reads, for every field combination.
func TestDecodeIndexFields(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		kv := &mvccpb.KeyValue{Key: []byte(fmt.Sprintf("k%d", rng.IntN(1000)))}
		if rng.IntN(2) == 0 {
			kv.CreateRevision = rng.Int64()
			kv.ModRevision = rng.Int64N(1 << 40)
			kv.Version = rng.Int64N(1 << 20)
		}
		if rng.IntN(2) == 0 {
			kv.Value = bytes.Repeat([]byte{byte(i)}, rng.IntN(20000))
		}
		if rng.IntN(3) == 0 {
			kv.Lease = rng.Int64()
		}
		b, err := proto.Marshal(kv)
		if err != nil {
			t.Fatal(err)
		}
		f, err := decodeIndexFields(b)
		if err != nil || !bytes.Equal(f.key, kv.Key) || f.created != kv.CreateRevision || f.ver != kv.Version || f.lease != kv.Lease {
			t.Fatalf("%v: got %+v %v", kv, f, err)
		}
	}
	if _, err := decodeIndexFields([]byte{0x0a, 0x05, 'a'}); err == nil {
		t.Fatal("a truncated key decoded")
	}
}

// An index rebuilt at Open (several pipeline batches, tombstones, keys deleted and
// created again, a compaction) answers every read as the index it replaces.
func TestRebuildIndexMatchesLiveIndex(t *testing.T) {
	s, p := newStore(t)
	rng := rand.New(rand.NewPCG(3, 4))
	key := func() string { return fmt.Sprintf("key-%03d", rng.IntN(300)) }
	var compactAt int64
	for i := 0; i < 3*rebuildBatch; i++ {
		switch r := rng.IntN(10); {
		case r < 7:
			put(t, s, key(), fmt.Sprintf("v%d", i))
		case r < 9:
			del(t, s, key(), "")
		default:
			tw := s.Write()
			for j := 0; j < 3; j++ {
				tw.Put([]byte(key()), []byte("txn"), 0)
			}
			tw.DeleteRange([]byte(key()), nil)
			tw.End(0, 0)
		}
		if i == 2*rebuildBatch {
			compactAt = s.Rev() - 500
			done, err := s.Compact(compactAt)
			if err != nil {
				t.Fatal(err)
			}
			<-done
		}
	}
	type read struct {
		kvs []string
		n   int
	}
	readAll := func(s *Store) map[int64]read {
		out := map[int64]read{}
		for rev := compactAt; rev <= s.Rev(); rev += 37 {
			res := rangeKVs(t, s, []byte{0}, []byte{0}, RangeOptions{Rev: rev})
			var r read
			for _, kv := range res.KVs {
				r.kvs = append(r.kvs, fmt.Sprintf("%s=%s c%d m%d v%d", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version))
			}
			r.n = res.Count
			// What a Put at rev+1 reads: the visible revision, creation and version.
			for k := 0; k < 300; k++ {
				mod, created, ver, ok := s.idx.get([]byte(fmt.Sprintf("key-%03d", k)), rev)
				if ok {
					r.kvs = append(r.kvs, fmt.Sprintf("idx %d: %v c%d v%d", k, mod, created, ver))
				}
			}
			out[rev] = r
		}
		return out
	}
	want := readAll(s)
	wantRev, wantCompact := s.Rev(), s.CompactedRev()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, p, Config{})
	defer s2.Close()
	if s2.Rev() != wantRev || s2.CompactedRev() != wantCompact {
		t.Fatalf("rev %d compacted %d after reopen, want %d %d", s2.Rev(), s2.CompactedRev(), wantRev, wantCompact)
	}
	got := readAll(s2)
	for rev, w := range want {
		if g := got[rev]; fmt.Sprint(g) != fmt.Sprint(w) {
			t.Fatalf("at rev %d after reopen:\n got %v\nwant %v", rev, g, w)
		}
	}
}

// BenchmarkOpen opens a store and rebuilds its index: from a copy of the db file named
// by $CAIRN_BENCH_DB (e.g. a member's member/snap/db), else from 200,000 keys of 1 KiB.
//
//	CAIRN_BENCH_DB=/tmp/m.data/member/snap/db go test -run - -bench Open -cpuprofile cpu.prof ./mvcc/
func BenchmarkOpen(b *testing.B) {
	p := filepath.Join(b.TempDir(), "db")
	if src := os.Getenv("CAIRN_BENCH_DB"); src != "" {
		data, err := os.ReadFile(src)
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			b.Fatal(err)
		}
	} else {
		s, err := Open(nil, p, Config{})
		if err != nil {
			b.Fatal(err)
		}
		val := bytes.Repeat([]byte("v"), 1024)
		for i := 0; i < 200000; i += 100 {
			tw := s.Write()
			for j := i; j < i+100; j++ {
				tw.Put([]byte(fmt.Sprintf("/registry/pods/%08d", j)), val, 0)
			}
			tw.End(0, 0)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		s, err := Open(nil, p, Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// TakeKeyLeases hands over, once, the lease of every live key as the rebuild at Open
// found it (a later put without a lease, a delete and a delete then put all count), and
// nothing once the store was written.
func TestTakeKeyLeases(t *testing.T) {
	s, p := newStore(t)
	putLease := func(key string, id int64) {
		tw := s.Write()
		tw.Put([]byte(key), []byte("v"), id)
		tw.End(0, 0)
	}
	putLease("a", 1)
	putLease("b", 2)
	putLease("b", 0) // b keeps no lease
	putLease("c", 3)
	del(t, s, "c", "") // c is gone
	putLease("d", 4)
	del(t, s, "d", "")
	putLease("d", 5) // d lives again with 5
	putLease("e", 0)
	if _, ok := s.TakeKeyLeases(); ok {
		t.Fatal("leases handed over after writes")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, p, Config{})
	defer s2.Close()
	got, ok := s2.TakeKeyLeases()
	if want := map[string]int64{"a": 1, "d": 5}; !ok || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("TakeKeyLeases = %v %v, want %v", got, ok, want)
	}
	if _, ok := s2.TakeKeyLeases(); ok {
		t.Fatal("leases handed over twice")
	}
}

// BenchmarkPutExisting overwrites keys that exist, one write transaction per put as a
// member applies them: the put reads the key's previous value from the batch.
func BenchmarkPutExisting(b *testing.B) {
	s, err := Open(nil, filepath.Join(b.TempDir(), "db"), Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const keys = 10000
	val := bytes.Repeat([]byte("v"), 256)
	key := func(i int) []byte { return []byte(fmt.Sprintf("%08d", i%keys)) }
	for i := range keys {
		tw := s.Write()
		tw.Put(key(i), val, 0)
		tw.End(0, 0)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := s.Update(uint64(i+1), 1, func(t *WriteTxn) error {
			t.Put(key(i), val, 0)
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
