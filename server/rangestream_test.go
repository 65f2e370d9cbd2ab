package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/mvcc"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// streamStore: 200 keys written in 20 revisions, values of varied sizes, some deleted and
// rewritten later; mid is a revision in the middle. Compacted at 3.
func streamStore(t *testing.T) (s *mvcc.Store, mid int64) {
	t.Helper()
	s, err := mvcc.Open(zaptest.NewLogger(t), filepath.Join(t.TempDir(), "db"), mvcc.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	idx := uint64(0)
	write := func(fn func(tx *mvcc.WriteTxn)) {
		idx++
		if err := s.Update(idx, 1, func(tx *mvcc.WriteTxn) error { fn(tx); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	for b := 0; b < 20; b++ {
		write(func(tx *mvcc.WriteTxn) {
			for i := b * 10; i < b*10+10; i++ {
				tx.Put([]byte(fmt.Sprintf("k%03d", i)), []byte(strings.Repeat("x", (i*53)%3000)), 0)
			}
		})
	}
	mid = s.Rev()
	write(func(tx *mvcc.WriteTxn) { tx.DeleteRange([]byte("k050"), []byte("k070")) })
	for i := 0; i < 200; i += 9 {
		write(func(tx *mvcc.WriteTxn) { tx.Put([]byte(fmt.Sprintf("k%03d", i)), []byte("again"), 0) })
	}
	write(func(tx *mvcc.WriteTxn) {
		if _, err := tx.Compact(3); err != nil {
			t.Fatal(err)
		}
	})
	return s, mid
}

// rangeRequestShapes are the Range requests both the streamed and the encoded answers
// are checked on, over streamStore's keys (mid: its revision halfway).
func rangeRequestShapes(mid int64) map[string]*pb.RangeRequest {
	k := func(s string) []byte { return []byte(s) }
	return map[string]*pb.RangeRequest{
		"all":              {Key: k("\x00"), RangeEnd: k("\x00")},
		"prefix":           {Key: k("k1"), RangeEnd: k("k2")},
		"from-key":         {Key: k("k150"), RangeEnd: k("\x00")},
		"single":           {Key: k("k009")},
		"single-deleted":   {Key: k("k055")},
		"none":             {Key: k("a"), RangeEnd: k("b")},
		"limit":            {Key: k("\x00"), RangeEnd: k("\x00"), Limit: 17},
		"limit-exact":      {Key: k("k1"), RangeEnd: k("k2"), Limit: 100},
		"limit-over":       {Key: k("k1"), RangeEnd: k("k2"), Limit: 1000},
		"limit-1":          {Key: k("k1"), RangeEnd: k("k2"), Limit: 1},
		"keys-only":        {Key: k("\x00"), RangeEnd: k("\x00"), KeysOnly: true},
		"count-only":       {Key: k("\x00"), RangeEnd: k("\x00"), CountOnly: true},
		"count-only-limit": {Key: k("\x00"), RangeEnd: k("\x00"), CountOnly: true, Limit: 3},
		"past":             {Key: k("\x00"), RangeEnd: k("\x00"), Revision: mid},
		"past-limit":       {Key: k("k0"), RangeEnd: k("k1"), Revision: 10, Limit: 5},
		"min-mod":          {Key: k("\x00"), RangeEnd: k("\x00"), MinModRevision: mid + 1},
		"ascend-by-key":    {Key: k("\x00"), RangeEnd: k("\x00"), SortOrder: pb.RangeRequest_ASCEND},
		"serializable":     {Key: k("k1"), RangeEnd: k("k2"), Serializable: true},
	}
}

// Merged, RangeStream's chunks are Range's answer (executeRange) for every request
// shape; only the last chunk has header, more and count; the chunks are disjoint,
// in key order, and bounded.
func TestStreamRangeMatchesRange(t *testing.T) {
	s, mid := streamStore(t)
	k := func(s string) []byte { return []byte(s) }
	reqs := rangeRequestShapes(mid)
	for name, r := range map[string]*pb.RangeRequest{
		"max-mod":             {Key: k("\x00"), RangeEnd: k("\x00"), MaxModRevision: 5},
		"create-window":       {Key: k("\x00"), RangeEnd: k("\x00"), MinCreateRevision: 4, MaxCreateRevision: 8},
		"filter-limit-more":   {Key: k("\x00"), RangeEnd: k("\x00"), MinModRevision: mid + 1, Limit: 3},
		"filter-limit-nomore": {Key: k("\x00"), RangeEnd: k("\x00"), MinModRevision: mid + 1, Limit: 23},
		"filter-keys-only":    {Key: k("k1"), RangeEnd: k("\x00"), MaxModRevision: mid, KeysOnly: true, Limit: 40},
	} {
		reqs[name] = r
	}
	for name, r := range reqs {
		for _, chunk := range []int{1, 5000, 1 << 20} {
			t.Run(fmt.Sprintf("%s/%d", name, chunk), func(t *testing.T) {
				rt := s.Read()
				want, err := executeRange(readView{rt}, proto.Clone(r).(*pb.RangeRequest))
				if err != nil {
					t.Fatal(err)
				}
				var msgs []*pb.RangeResponse
				last, err := streamRange(context.Background(), rt, r, chunk, func(m *pb.RangeResponse) error {
					msgs = append(msgs, m)
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				msgs = append(msgs, last)
				merged := &pb.RangeResponse{}
				var prev []byte
				for i, m := range msgs {
					if i < len(msgs)-1 {
						if m.Header != nil || m.More || m.Count != 0 || len(m.Kvs) == 0 {
							t.Fatalf("chunk %d of %d: header %v more %v count %d, %d KVs", i, len(msgs), m.Header, m.More, m.Count, len(m.Kvs))
						}
					}
					size := 0
					for j, kv := range m.Kvs {
						if prev != nil && string(kv.Key) <= string(prev) {
							t.Fatalf("chunk %d: %q after %q", i, kv.Key, prev)
						}
						prev = kv.Key
						if j < len(m.Kvs)-1 {
							size += proto.Size(kv)
						}
					}
					if size >= chunk {
						t.Fatalf("chunk %d: %d bytes before its last KV, bound %d", i, size, chunk)
					}
					proto.Merge(merged, m)
				}
				if !proto.Equal(merged, want) {
					t.Fatalf("merged: %d KVs more %v count %d rev %d; Range: %d KVs more %v count %d rev %d",
						len(merged.Kvs), merged.More, merged.Count, merged.Header.GetRevision(),
						len(want.Kvs), want.More, want.Count, want.Header.GetRevision())
				}
			})
		}
	}
}

// A compacted or future revision fails before anything is sent; a send error ends the
// stream with that error.
func TestStreamRangeErrors(t *testing.T) {
	s, _ := streamStore(t)
	rt := s.Read()
	sent := 0
	send := func(*pb.RangeResponse) error { sent++; return nil }
	for rev, want := range map[int64]error{2: mvcc.ErrCompacted, rt.Rev() + 1: mvcc.ErrFutureRev} {
		_, err := streamRange(context.Background(), rt, &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("\x00"), Revision: rev}, 100, send)
		if !errors.Is(err, want) || sent != 0 {
			t.Fatalf("revision %d: %v after %d chunks, want %v", rev, err, sent, want)
		}
	}
	boom := errors.New("client gone")
	_, err := streamRange(context.Background(), rt, &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("\x00")}, 100,
		func(*pb.RangeResponse) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("send error: %v", err)
	}
}
