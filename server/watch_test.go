package server

import (
	"fmt"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/mvcc"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// pendingWatch holds the responses Take returned that a test has not looked at yet.
var pendingWatch = map[*WatchStream][]*pb.WatchResponse{}

// nextWatch returns the stream's next response, waiting up to d: got is false if none
// came, open false if the stream is closed and empty.
func nextWatch(w *WatchStream, d time.Duration) (r *pb.WatchResponse, got, open bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		if q := pendingWatch[w]; len(q) > 0 {
			pendingWatch[w] = q[1:]
			return q[0], true, true
		}
		rs, open := w.Take()
		if len(rs) > 0 {
			pendingWatch[w] = append(pendingWatch[w], rs...)
			continue
		}
		if !open {
			return nil, false, false
		}
		select {
		case <-w.Ready():
		case <-timer.C:
			return nil, false, true
		}
	}
}

func recvWatch(t *testing.T, w *WatchStream) *pb.WatchResponse {
	t.Helper()
	r, got, open := nextWatch(w, 10*time.Second)
	if !open {
		t.Fatal("watch stream closed")
	}
	if !got {
		t.Fatal("no watch response within 10s")
	}
	return r
}

func evStr(e *mvccpb.Event) string {
	s := fmt.Sprintf("%s %s@%d", e.Type, e.Kv.Key, e.Kv.ModRevision)
	if e.Type == mvccpb.Event_PUT {
		s = fmt.Sprintf("PUT %s=%s@%d", e.Kv.Key, e.Kv.Value, e.Kv.ModRevision)
	}
	if e.PrevKv != nil {
		s += fmt.Sprintf(" (prev %s)", e.PrevKv.Value)
	}
	return s
}

// watchEvents reads n events of watch id, checking the header revision of each response.
func watchEvents(t *testing.T, w *WatchStream, id int64, n int) []string {
	t.Helper()
	var out []string
	for len(out) < n {
		r := recvWatch(t, w)
		if r.WatchId != id {
			t.Fatalf("response for watch %d, want %d: %v", r.WatchId, id, r)
		}
		for _, e := range r.Events {
			if e.Kv.ModRevision > r.Header.Revision {
				t.Fatalf("event at %d in a response with header revision %d", e.Kv.ModRevision, r.Header.Revision)
			}
			out = append(out, evStr(e))
		}
	}
	return out
}

func TestWatchThroughServer(t *testing.T) {
	s := startServer(t, testConfig(t))
	w := s.NewWatchStream()
	defer w.Close()
	id, _, err := w.Watch(&pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("b"), PrevKv: true})
	if err != nil || id != 0 {
		t.Fatalf("Watch = %d, %v", id, err)
	}
	noPut, _, err := w.Watch(&pb.WatchCreateRequest{WatchId: 5, Key: []byte("a"), RangeEnd: []byte("\x00"),
		Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NOPUT}})
	if err != nil || noPut != 5 {
		t.Fatalf("Watch = %d, %v", noPut, err)
	}
	if _, _, err := w.Watch(&pb.WatchCreateRequest{WatchId: 5, Key: []byte("x")}); err != mvcc.ErrWatcherDuplicateID {
		t.Fatalf("duplicate id: %v", err)
	}

	mustPut(t, s, "a1", "x") // 2
	mustPut(t, s, "a1", "y") // 3
	if _, err := s.DeleteRange(ctx(t), &pb.DeleteRangeRequest{Key: []byte("a1")}); err != nil {
		t.Fatal(err)
	} // 4
	txn := &pb.TxnRequest{Success: []*pb.RequestOp{
		{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("a2"), Value: []byte("1")}}},
		{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("a3"), Value: []byte("2")}}},
		{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("zz")}}},
		{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("a0"), Value: []byte("3")}}},
	}}
	if _, err := s.Txn(ctx(t), txn); err != nil {
		t.Fatal(err)
	} // 5

	var got, gotNoPut []string
	for len(got) < 6 || len(gotNoPut) < 1 {
		r := recvWatch(t, w)
		for _, e := range r.Events {
			if r.WatchId == id {
				got = append(got, evStr(e))
			} else {
				gotNoPut = append(gotNoPut, evStr(e))
			}
		}
		if r.WatchId == id && len(got) == 6 && r.Header.Revision != 5 {
			t.Fatalf("txn response header revision %d, want 5", r.Header.Revision)
		}
	}
	want := []string{"PUT a1=x@2", "PUT a1=y@3 (prev x)", "DELETE a1@4 (prev y)", "PUT a2=1@5", "PUT a3=2@5", "PUT a0=3@5"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events:\n got %v\nwant %v", got, want)
	}
	if fmt.Sprint(gotNoPut) != "[DELETE a1@4]" {
		t.Fatalf("NOPUT events: %v", gotNoPut)
	}

	// Replay from an old revision.
	old, _, err := w.Watch(&pb.WatchCreateRequest{Key: []byte("a1"), StartRevision: 2})
	if err != nil {
		t.Fatal(err)
	}
	if ev := watchEvents(t, w, old, 3); fmt.Sprint(ev) != "[PUT a1=x@2 PUT a1=y@3 DELETE a1@4]" {
		t.Fatalf("replay: %v", ev)
	}

	if !w.RequestProgressAll() {
		t.Fatal("RequestProgressAll = false")
	}
	if r := recvWatch(t, w); r.WatchId != -1 || r.Header.Revision != 5 || len(r.Events) != 0 {
		t.Fatalf("progress: %v", r)
	}
	if err := w.Cancel(old); err != nil {
		t.Fatal(err)
	}
	if err := w.Cancel(old); err != mvcc.ErrWatcherNotExist {
		t.Fatalf("cancel twice: %v", err)
	}
}

func TestWatchCompactedThroughServer(t *testing.T) {
	s := startServer(t, testConfig(t))
	for i := 0; i < 5; i++ {
		mustPut(t, s, "k", fmt.Sprint(i)) // 2..6
	}
	if _, err := s.Compact(ctx(t), &pb.CompactionRequest{Revision: 5, Physical: true}); err != nil {
		t.Fatal(err)
	}
	w := s.NewWatchStream()
	defer w.Close()
	id, _, err := w.Watch(&pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 2})
	if err != nil {
		t.Fatal(err)
	}
	r := recvWatch(t, w)
	if r.WatchId != id || r.CompactRevision != 5 || len(r.Events) != 0 {
		t.Fatalf("got %v, want compact_revision 5", r)
	}
	id, _, err = w.Watch(&pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 5})
	if err != nil {
		t.Fatal(err)
	}
	if ev := watchEvents(t, w, id, 2); fmt.Sprint(ev) != "[PUT k=3@5 PUT k=4@6]" {
		t.Fatalf("from the compact revision: %v", ev)
	}
}

func TestWatchLeaseRevokeDeletes(t *testing.T) {
	s := startServer(t, testConfig(t))
	if _, err := s.LeaseGrant(ctx(t), &pb.LeaseGrantRequest{ID: 9, TTL: 60}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"l1", "l2"} {
		if _, err := s.Put(ctx(t), &pb.PutRequest{Key: []byte(k), Value: []byte("v"), Lease: 9}); err != nil {
			t.Fatal(err)
		}
	}
	w := s.NewWatchStream()
	defer w.Close()
	id, _, err := w.Watch(&pb.WatchCreateRequest{Key: []byte("l"), RangeEnd: []byte("m"), PrevKv: true})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.LeaseRevoke(ctx(t), &pb.LeaseRevokeRequest{ID: 9})
	if err != nil {
		t.Fatal(err)
	}
	r := recvWatch(t, w)
	if r.WatchId != id || len(r.Events) != 2 || r.Header.Revision != resp.Header.Revision {
		t.Fatalf("got %v", r)
	}
	for _, e := range r.Events {
		if e.Type != mvccpb.Event_DELETE || e.Kv.ModRevision != resp.Header.Revision || e.PrevKv == nil || e.PrevKv.Lease != 9 {
			t.Fatalf("event %v", e)
		}
	}
}

func TestWatchStreamClosesOnStop(t *testing.T) {
	s := startServer(t, testConfig(t))
	w := s.NewWatchStream()
	if _, _, err := w.Watch(&pb.WatchCreateRequest{Key: []byte("k")}); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	r, got, open := nextWatch(w, 10*time.Second)
	if got {
		t.Fatalf("response after stop: %v", r)
	}
	if open {
		t.Fatal("watch stream not closed by Stop")
	}
	w.Close()
}
