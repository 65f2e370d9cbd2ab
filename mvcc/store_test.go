package mvcc

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// history writes a fixed mix of puts, deletes and a txn; returns the final revision.
func history(t *testing.T, s *Store) int64 {
	for i := 0; i < 5; i++ {
		put(t, s, "a", fmt.Sprint("a", i))
		put(t, s, fmt.Sprint("k", i), "v")
	}
	del(t, s, "k1", "k3")
	tw := s.Write()
	tw.Put([]byte("b"), []byte("b0"), 5)
	tw.Put([]byte("k1"), []byte("again"), 0)
	tw.End(20, 1)
	return s.Rev()
}

// dump returns every range result from rev 1 to the current revision.
func dump(t *testing.T, s *Store, from int64) []string {
	var out []string
	for rev := from; rev <= s.Rev(); rev++ {
		rr := rangeKVs(t, s, nil, []byte{0}, RangeOptions{Rev: rev})
		for _, kv := range rr.KVs {
			out = append(out, fmt.Sprintf("@%d %s=%s c%d m%d v%d l%d", rev, kv.Key, kv.Value,
				kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease))
		}
	}
	return out
}

func TestReopenRebuildsIndex(t *testing.T) {
	p := dbPath(t)
	s := openStore(t, p, Config{})
	rev := history(t, s)
	update(t, s, 42, 3, nil)
	before := dump(t, s, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, p, Config{})
	defer s.Close()
	if s.Rev() != rev {
		t.Fatalf("Rev after reopen = %d, want %d", s.Rev(), rev)
	}
	if i, tm := s.ConsistentIndex(); i != 42 || tm != 3 {
		t.Fatalf("ConsistentIndex = %d,%d", i, tm)
	}
	if after := dump(t, s, 1); !reflect.DeepEqual(before, after) {
		t.Fatalf("after reopen:\n%v\nwant\n%v", after, before)
	}
	// Writing continues with the right versions.
	put(t, s, "a", "next")
	if kv := get(t, s, "a", 0); kv.Version != 6 || kv.CreateRevision != 2 || kv.ModRevision != rev+1 {
		t.Fatalf("a after reopen = %v", kv)
	}
}

func TestReopenAfterCompaction(t *testing.T) {
	p := dbPath(t)
	s := openStore(t, p, Config{})
	history(t, s)
	done, err := s.Compact(8)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, done)
	before := dump(t, s, 8)
	s.Close()
	s = openStore(t, p, Config{})
	defer s.Close()
	if s.CompactedRev() != 8 {
		t.Fatalf("CompactedRev = %d", s.CompactedRev())
	}
	if after := dump(t, s, 8); !reflect.DeepEqual(before, after) {
		t.Fatalf("after reopen:\n%v\nwant\n%v", after, before)
	}
	if _, err := s.Read().Range(nil, []byte{0}, RangeOptions{Rev: 7}); !errors.Is(err, ErrCompacted) {
		t.Fatalf("range below compaction after reopen: %v", err)
	}
}

func TestBatching(t *testing.T) {
	p := dbPath(t)
	s := openStore(t, p, Config{BatchInterval: time.Hour, BatchLimit: 1000})
	put(t, s, "a", "1")
	tw := s.Write()
	tw.Put([]byte("b"), []byte("2"), 0)
	tw.End(7, 1)
	if kv := get(t, s, "b", 0); kv == nil || string(kv.Value) != "2" {
		t.Fatalf("uncommitted write not readable: %v", kv)
	}
	if n := committedKeyCount(t, s); n != 0 {
		t.Fatalf("bbolt committed %d keys before Commit", n)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := committedKeyCount(t, s); n != 2 {
		t.Fatalf("committed keys = %d, want 2", n)
	}
	if kv := get(t, s, "b", 0); kv == nil || string(kv.Value) != "2" {
		t.Fatalf("committed write not readable: %v", kv)
	}
	put(t, s, "c", "3") // left uncommitted; Close commits it
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, p, Config{})
	defer s.Close()
	if rr := rangeKVs(t, s, nil, []byte{0}, RangeOptions{}); len(rr.KVs) != 3 {
		t.Fatalf("after reopen: %v", keysOf(rr.KVs))
	}
	if i, _ := s.ConsistentIndex(); i != 0 {
		// The last txn ended with index 0.
		t.Fatalf("ConsistentIndex = %d", i)
	}
}

func TestBatchLimitAndInterval(t *testing.T) {
	s := openStore(t, dbPath(t), Config{BatchInterval: time.Hour, BatchLimit: 3})
	defer s.Close()
	put(t, s, "a", "1")
	if n := committedKeyCount(t, s); n != 0 {
		t.Fatalf("committed %d keys below the limit", n)
	}
	put(t, s, "b", "1")
	put(t, s, "c", "1")
	if n := committedKeyCount(t, s); n != 3 {
		t.Fatalf("committed %d keys at the limit, want 3", n)
	}

	s2 := openStore(t, dbPath(t), Config{BatchInterval: 5 * time.Millisecond})
	defer s2.Close()
	put(t, s2, "a", "1")
	update(t, s2, 9, 9, nil)
	deadline := time.Now().Add(5 * time.Second)
	for committedKeyCount(t, s2) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("batch interval never committed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCompactionPhysical(t *testing.T) {
	s, _ := newStore(t)
	for i := 0; i < 2500; i++ { // more than one compaction batch
		put(t, s, "a", fmt.Sprint(i))
	}
	put(t, s, "b", "1")
	del(t, s, "b", "")
	put(t, s, "c", "1")
	cur := s.Rev()
	if n := batchKeyCount(t, s); n != 2503 {
		t.Fatalf("keys before compaction = %d", n)
	}
	done, err := s.Compact(cur)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, done)
	// Left: the latest a and c. b's tombstone is older than cur and goes too.
	if n := batchKeyCount(t, s); n != 2 {
		t.Fatalf("keys after compaction = %d, want 2", n)
	}
	if n := committedKeyCount(t, s); n != 2 {
		t.Fatalf("committed keys after compaction = %d, want 2", n)
	}
	rr := rangeKVs(t, s, nil, []byte{0}, RangeOptions{})
	if got := keysOf(rr.KVs); !reflect.DeepEqual(got, []string{"a", "c"}) || rr.KVs[0].Version != 2500 {
		t.Fatalf("after compaction: %v", rr.KVs)
	}
	if _, err := s.Read().Range([]byte("a"), nil, RangeOptions{Rev: cur - 1}); !errors.Is(err, ErrCompacted) {
		t.Fatalf("old read: %v", err)
	}
	s.wmu.Lock()
	meta := s.b.tx.Bucket(bucketMeta)
	sched, fin := meta.Get(metaScheduledCompact), meta.Get(metaFinishedCompact)
	s.wmu.Unlock()
	if bytesToRev(sched).main != cur || bytesToRev(fin).main != cur || len(fin) != 17 {
		t.Fatalf("compaction marks: %x %x", sched, fin)
	}
}

func TestCompactionResumedOnOpen(t *testing.T) {
	p := dbPath(t)
	s := openStore(t, p, Config{})
	for i := 0; i < 10; i++ {
		put(t, s, "a", fmt.Sprint(i)) // revs 2..11
	}
	want := dump(t, s, 6)
	s.Close()
	// Mark a compaction at 6 as scheduled but never run.
	db, err := bolt.Open(p, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaScheduledCompact, revision{main: 6}.bytes(false))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s = openStore(t, p, Config{})
	defer s.Close()
	if s.CompactedRev() != 6 {
		t.Fatalf("CompactedRev = %d", s.CompactedRev())
	}
	s.wmu.Lock()
	done := s.lastCompaction
	s.wmu.Unlock()
	if done == nil {
		t.Fatal("compaction not resumed")
	}
	waitDone(t, done)
	if n := batchKeyCount(t, s); n != 6 { // revs 6..11
		t.Fatalf("keys after resumed compaction = %d, want 6", n)
	}
	if got := dump(t, s, 6); !reflect.DeepEqual(got, want) {
		t.Fatalf("after resume: %v want %v", got, want)
	}
	if _, err := s.Read().Range([]byte("a"), nil, RangeOptions{Rev: 5}); !errors.Is(err, ErrCompacted) {
		t.Fatalf("old read: %v", err)
	}
}

func TestHashByRev(t *testing.T) {
	s1, _ := newStore(t)
	s2, _ := newStore(t)
	history(t, s1)
	history(t, s2)
	h1, r1, c1, err := s1.HashByRev(0)
	if err != nil {
		t.Fatal(err)
	}
	h2, r2, c2, _ := s2.HashByRev(0)
	if h1 != h2 || r1 != r2 || r1 != s1.Rev() || c1 != c2 {
		t.Fatalf("identical histories: %x/%d/%d vs %x/%d/%d", h1, r1, c1, h2, r2, c2)
	}
	// A hash at a revision ignores later writes.
	hAt, _, _, _ := s1.HashByRev(r1)
	put(t, s1, "extra", "x")
	if h, _, _, _ := s1.HashByRev(r1); h != hAt {
		t.Fatal("hash at a past revision changed with a later write")
	}
	if h, _, _, _ := s1.HashByRev(0); h == hAt {
		t.Fatal("hash did not change with a write")
	}
	put(t, s2, "extra", "y")
	if ha, _, _, _ := s1.HashByRev(0); func() bool { hb, _, _, _ := s2.HashByRev(0); return ha == hb }() {
		t.Fatal("different values hash the same")
	}
	// Compaction: the hash at the current revision is the same before and after the
	// physical deletion (as long as the compact revision is the same).
	s3, _ := newStore(t)
	history(t, s3)
	put(t, s3, "extra", "x")
	d1, err := s1.Compact(9)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, d1)
	s3.wmu.Lock() // keep s3's physical compaction from running before hashing
	s3.mu.Lock()
	s3.compactRev = 9
	s3.idx.compact(9)
	s3.mu.Unlock()
	s3.wmu.Unlock()
	ha, _, ca, _ := s1.HashByRev(0)
	hb, _, cb, _ := s3.HashByRev(0)
	if ha != hb || ca != 9 || cb != 9 {
		t.Fatalf("compacted vs not physically compacted: %x/%d vs %x/%d", ha, ca, hb, cb)
	}
}

func TestMembers(t *testing.T) {
	p := dbPath(t)
	s := openStore(t, p, Config{})
	update(t, s, 5, 1, func(tx *WriteTxn) { tx.PutMember(0x1234, []byte(`{"id":1}`)) })
	update(t, s, 6, 1, func(tx *WriteTxn) { tx.PutMember(0xabcdef, []byte(`{"id":2}`)) })
	update(t, s, 7, 2, func(tx *WriteTxn) { tx.DeleteMember(0x1234) })
	ms, err := s.Members()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || string(ms[0xabcdef]) != `{"id":2}` {
		t.Fatalf("members = %v", ms)
	}
	if i, tm := s.ConsistentIndex(); i != 7 || tm != 2 {
		t.Fatalf("ConsistentIndex = %d,%d", i, tm)
	}
	s.Close()
	s = openStore(t, p, Config{})
	defer s.Close()
	ms, err = s.Members()
	if err != nil || len(ms) != 1 || string(ms[0xabcdef]) != `{"id":2}` {
		t.Fatalf("members after reopen = %v, %v", ms, err)
	}
	if i, tm := s.ConsistentIndex(); i != 7 || tm != 2 {
		t.Fatalf("ConsistentIndex after reopen = %d,%d", i, tm)
	}
	s.wmu.Lock()
	key := s.b.tx.Bucket(bucketMembers).Get([]byte("0000000000abcdef"))
	removed := s.b.tx.Bucket(bucketMembersRemoved).Get([]byte("0000000000001234"))
	s.wmu.Unlock()
	if key == nil || removed == nil {
		t.Fatalf("member keys: %q %q", key, removed)
	}
	if ids, err := s.RemovedMembers(); err != nil || len(ids) != 1 || ids[0] != 0x1234 {
		t.Fatalf("RemovedMembers = %x, %v", ids, err)
	}
}

func TestSize(t *testing.T) {
	s, _ := newStore(t)
	put(t, s, "a", "1")
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	total, inUse := s.Size()
	if total <= 0 || inUse <= 0 || inUse > total {
		t.Fatalf("Size = %d, %d", total, inUse)
	}
}

// Readers running beside a writer (with batch commits and compactions) always see whole
// transactions: x and y are written together and must match at every revision.
func TestConcurrentReadersWithWriter(t *testing.T) {
	s := openStore(t, dbPath(t), Config{BatchInterval: time.Millisecond, BatchLimit: 50})
	defer s.Close()
	const writes = 400
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errc := make(chan error, 8)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(stop)
		for i := 0; i < writes; i++ {
			tw := s.Write()
			v := []byte(fmt.Sprint(i))
			tw.Put([]byte("x"), v, 0)
			tw.Put([]byte("y"), v, 0)
			if i%7 == 0 {
				tw.DeleteRange([]byte("t"), []byte("u"))
			} else {
				tw.Put([]byte(fmt.Sprint("t", i%5)), v, 0)
			}
			tw.End(uint64(i+1), 1)
			if i%50 == 49 {
				if _, err := s.Compact(s.Rev() - 20); err != nil {
					errc <- err
					return
				}
			}
		}
	}()
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := int64(0)
			for {
				select {
				case <-stop:
					return
				default:
				}
				rt := s.Read()
				rr, err := rt.Range(nil, []byte{0}, RangeOptions{})
				rt.End()
				if errors.Is(err, ErrCompacted) {
					continue
				}
				if err != nil {
					errc <- err
					return
				}
				if rr.Rev < last {
					errc <- fmt.Errorf("revision went back: %d < %d", rr.Rev, last)
					return
				}
				last = rr.Rev
				var x, y string
				for _, kv := range rr.KVs {
					switch string(kv.Key) {
					case "x":
						x = string(kv.Value)
					case "y":
						y = string(kv.Value)
					}
					if kv.ModRevision > rr.Rev {
						errc <- fmt.Errorf("kv %s from the future: %d > %d", kv.Key, kv.ModRevision, rr.Rev)
						return
					}
				}
				if x != y {
					errc <- fmt.Errorf("torn read at %d: x=%q y=%q", rr.Rev, x, y)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if kv := get(t, s, "x", 0); string(kv.Value) != fmt.Sprint(writes-1) {
		t.Fatalf("final x = %v", kv)
	}
}
