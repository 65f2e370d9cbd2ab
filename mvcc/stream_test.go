package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// drain reads it to the end in chunks of o, checking each chunk's bound.
func drain(t *testing.T, it *RangeIter, o ChunkOptions) (chunks [][]*mvccpb.KeyValue) {
	t.Helper()
	for {
		kvs, err := it.Next(o)
		if err != nil {
			t.Fatal(err)
		}
		if len(kvs) == 0 {
			return chunks
		}
		size := 0
		for _, kv := range kvs[:len(kvs)-1] {
			size += proto.Size(kv)
		}
		if size >= o.MaxBytes {
			t.Fatalf("chunk of %d KVs is %d bytes before its last KV, bound %d", len(kvs), size, o.MaxBytes)
		}
		if o.MaxKVs > 0 && len(kvs) > o.MaxKVs {
			t.Fatalf("chunk of %d KVs, cap %d", len(kvs), o.MaxKVs)
		}
		chunks = append(chunks, kvs)
	}
}

// streamFixture: 300 keys of varied value sizes over several revisions, some deleted
// and overwritten, half committed and half only buffered.
func streamFixture(t *testing.T) (s *Store, mid int64) {
	t.Helper()
	s, _ = newStore(t)
	for i := 0; i < 300; i++ {
		put(t, s, fmt.Sprintf("k%03d", i), strings.Repeat("v", (i*37)%2000))
	}
	mid = s.Rev()
	del(t, s, "k100", "k120")
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i += 7 {
		put(t, s, fmt.Sprintf("k%03d", i), fmt.Sprintf("new%d", i))
	}
	put(t, s, "z", "last")
	return s, mid
}

// Concatenated chunks are Range's answer, in order and disjoint, whatever the shape of
// the range, the revision and the chunk bound; Count is Range's count.
func TestRangeIterMatchesRange(t *testing.T) {
	s, mid := streamFixture(t)
	type shape struct {
		name     string
		key, end string
		rev      int64
	}
	shapes := []shape{
		{"all", "\x00", "\x00", 0},
		{"prefix", "k1", "k2", 0},
		{"from-key", "k250", "\x00", 0},
		{"single", "k007", "", 0},
		{"single-missing", "k105", "", 0},
		{"empty", "a", "b", 0},
		{"inverted", "k2", "k1", 0},
		{"past", "\x00", "\x00", mid},
		{"past-prefix", "k1", "k2", mid},
	}
	for _, sh := range shapes {
		for _, o := range []ChunkOptions{{MaxBytes: 1}, {MaxBytes: 4096}, {MaxBytes: 1 << 20}, {MaxBytes: 4096, KeysOnly: true}, {MaxBytes: 3000, MaxKVs: 5}} {
			t.Run(fmt.Sprintf("%s/%d/%d/%v", sh.name, o.MaxBytes, o.MaxKVs, o.KeysOnly), func(t *testing.T) {
				want := rangeKVs(t, s, []byte(sh.key), endOf(sh.end), RangeOptions{Rev: sh.rev})
				rt := s.Read()
				it, err := rt.RangeIter([]byte(sh.key), endOf(sh.end), sh.rev)
				if err != nil {
					t.Fatal(err)
				}
				var got []*mvccpb.KeyValue
				for _, c := range drain(t, it, o) {
					got = append(got, c...)
				}
				if len(got) != len(want.KVs) {
					t.Fatalf("%d KVs, Range has %d", len(got), len(want.KVs))
				}
				for i, kv := range got {
					w := want.KVs[i]
					if o.KeysOnly {
						w = proto.Clone(w).(*mvccpb.KeyValue)
						w.Value = nil
					}
					if !proto.Equal(kv, w) {
						t.Fatalf("KV %d = %v, Range has %v", i, kv, w)
					}
					if i > 0 && bytes.Compare(got[i-1].Key, kv.Key) >= 0 {
						t.Fatalf("KV %d %q not after %q", i, kv.Key, got[i-1].Key)
					}
				}
				if n, err := it.Count(); err != nil || n != want.Count {
					t.Fatalf("Count = %d, %v; Range's count %d", n, err, want.Count)
				}
			})
		}
	}
}

func endOf(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

// Count before or midway through the iteration still counts the whole range; Keep
// drops KVs but not from the count.
func TestRangeIterCountAndKeep(t *testing.T) {
	s, _ := streamFixture(t)
	rt := s.Read()
	it, err := rt.RangeIter([]byte("k"), []byte("l"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := it.Count(); err != nil || n != 283 {
		t.Fatalf("Count before Next = %d, %v; want 283", n, err)
	}
	kvs, err := it.Next(ChunkOptions{MaxBytes: 1 << 20, MaxKVs: 10})
	if err != nil || len(kvs) != 10 {
		t.Fatalf("Next = %d KVs, %v", len(kvs), err)
	}
	if n, err := it.Count(); err != nil || n != 283 {
		t.Fatalf("Count midway = %d, %v; want 283", n, err)
	}
	keep := func(kv *mvccpb.KeyValue) bool { return strings.HasPrefix(string(kv.Value), "new") }
	var kept []*mvccpb.KeyValue
	for _, c := range drain(t, it, ChunkOptions{MaxBytes: 10, Keep: keep}) {
		kept = append(kept, c...)
	}
	// Every 7th key is rewritten: k014..k294 after the first chunk's k000..k009.
	if len(kept) != 41 || string(kept[0].Key) != "k014" {
		t.Fatalf("kept %v", keysOf(kept))
	}
	for _, kv := range kept {
		if !keep(kv) {
			t.Fatalf("kept %v", kv)
		}
	}
	if n, err := it.Count(); err != nil || n != 283 {
		t.Fatalf("Count at the end = %d, %v; want 283", n, err)
	}
}

// Writes and a compaction up to the pinned revision between chunks change nothing the
// iterator returns; a compaction past it fails the next chunk and Count with
// ErrCompacted. Nothing blocks a writer between chunks.
func TestRangeIterPinnedRevision(t *testing.T) {
	s, _ := streamFixture(t)
	want := rangeKVs(t, s, []byte("\x00"), []byte("\x00"), RangeOptions{})
	rt := s.Read()
	it, err := rt.RangeIter([]byte("\x00"), []byte("\x00"), 0)
	if err != nil {
		t.Fatal(err)
	}
	o := ChunkOptions{MaxBytes: 2048}
	first, err := it.Next(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i += 3 {
		put(t, s, fmt.Sprintf("k%03d", i), "later")
	}
	del(t, s, "k200", "k300")
	waitDone(t, must(s.Compact(rt.Rev())))
	got := append([]*mvccpb.KeyValue(nil), first...)
	for _, c := range drain(t, it, o) {
		got = append(got, c...)
	}
	if len(got) != len(want.KVs) {
		t.Fatalf("%d KVs, want %d", len(got), len(want.KVs))
	}
	for i := range got {
		if !proto.Equal(got[i], want.KVs[i]) {
			t.Fatalf("KV %d = %v, want %v", i, got[i], want.KVs[i])
		}
	}

	it, err = rt.RangeIter([]byte("\x00"), []byte("\x00"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := it.Next(o); err != nil {
		t.Fatal(err)
	}
	put(t, s, "after", "x")
	waitDone(t, must(s.Compact(s.Rev())))
	if _, err := it.Next(o); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Next after a compaction past the pinned revision: %v, want ErrCompacted", err)
	}
	if _, err := it.Count(); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Count after a compaction past the pinned revision: %v, want ErrCompacted", err)
	}
	if _, err := rt.RangeIter([]byte("a"), nil, rt.Rev()+1); !errors.Is(err, ErrFutureRev) {
		t.Fatalf("RangeIter at a future revision: %v, want ErrFutureRev", err)
	}
	if _, err := rt.RangeIter([]byte("a"), nil, 1); !errors.Is(err, ErrCompacted) {
		t.Fatalf("RangeIter at a compacted revision: %v, want ErrCompacted", err)
	}
}

func must(done <-chan struct{}, err error) <-chan struct{} {
	if err != nil {
		panic(err)
	}
	return done
}

// Reads large enough to drop their pages from the resident set (rangeView.close, the
// index rebuild at Open) read the same values again afterwards, from the buffer, bbolt
// and a reopened store alike.
func TestDroppedPagesReadBack(t *testing.T) {
	s, path := newStore(t)
	for i := 0; i < 64; i++ {
		put(t, s, fmt.Sprintf("big%02d", i), strings.Repeat(string(rune('a'+i%26)), 20<<10))
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	check := func(s *Store) {
		t.Helper()
		for round := 0; round < 2; round++ {
			rr := rangeKVs(t, s, []byte("big"), []byte("bih"), RangeOptions{})
			if len(rr.KVs) != 64 {
				t.Fatalf("%d KVs", len(rr.KVs))
			}
			for i, kv := range rr.KVs {
				if want := strings.Repeat(string(rune('a'+i%26)), 20<<10); string(kv.Value) != want {
					t.Fatalf("round %d: value %d changed", round, i)
				}
			}
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, path, Config{})
	defer s2.Close()
	check(s2)
}

// Commits that drop the whole map from the resident set (every residentDropInterval)
// while readers read and writers write leave every value readable as written.
func TestCommitDropsResidentPages(t *testing.T) {
	s, _ := newStore(t)
	val := func(i int) string { return strings.Repeat(string(rune('a'+i%26)), 4<<10) }
	for i := 0; i < 200; i++ {
		put(t, s, fmt.Sprintf("k%03d", i), val(i))
	}
	stop := repeatUntilStopped(func() error {
		r := s.Read()
		rr, err := r.Range([]byte("k"), []byte("l"), RangeOptions{})
		r.End()
		if err != nil {
			return err
		}
		for _, kv := range rr.KVs {
			var i int
			fmt.Sscanf(string(kv.Key), "k%03d", &i)
			if string(kv.Value) != val(i) {
				return fmt.Errorf("value of %s changed", kv.Key)
			}
		}
		return nil
	})
	for round := 0; round < 50; round++ {
		put(t, s, fmt.Sprintf("k%03d", round), val(round))
		s.wmu.Lock()
		s.b.lastDrop = time.Time{} // drop at this commit
		err := s.commitLocked()
		s.wmu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
