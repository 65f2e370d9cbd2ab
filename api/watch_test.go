package api

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/mvccpb"
)

type watchTest struct {
	t   *testing.T
	fb  *fakeBackend
	cli pb.Watch_WatchClient
	ws  *fakeWatchStream
}

// newWatchTest serves a fake backend with cfg on a loopback port and opens one Watch
// stream (with metadata md, key/value pairs) to it.
func newWatchTest(t *testing.T, cfg GRPCConfig, md ...string) *watchTest {
	t.Helper()
	fb := newFakeBackend()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := NewGRPCServer(fb, cfg, nil)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	cc := dial(t, l.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	cli, err := pb.NewWatchClient(cc).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wt := &watchTest{t: t, fb: fb, cli: cli}
	return wt
}

// stream returns the backend's stream of this test's Watch call.
func (wt *watchTest) stream() *fakeWatchStream {
	wt.t.Helper()
	if wt.ws != nil {
		return wt.ws
	}
	select {
	case wt.ws = <-wt.fb.watchStreams:
		return wt.ws
	case <-time.After(5 * time.Second):
		wt.t.Fatal("the service opened no WatchStream")
		return nil
	}
}

func (wt *watchTest) send(r *pb.WatchRequest) {
	wt.t.Helper()
	if err := wt.cli.Send(r); err != nil {
		wt.t.Fatalf("send %v: %v", r, err)
	}
}

func (wt *watchTest) create(r *pb.WatchCreateRequest) {
	wt.t.Helper()
	wt.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: r}})
}

func (wt *watchTest) cancel(id int64) {
	wt.t.Helper()
	wt.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: id}}})
}

func (wt *watchTest) progress() {
	wt.t.Helper()
	wt.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}})
}

type recvResult struct {
	r   *pb.WatchResponse
	err error
}

// recv returns the next response, failing the test after 5 s.
func (wt *watchTest) recv() *pb.WatchResponse {
	wt.t.Helper()
	r, err := wt.recvWithin(5 * time.Second)
	if err != nil {
		wt.t.Fatalf("recv: %v", err)
	}
	return r
}

func (wt *watchTest) recvWithin(d time.Duration) (*pb.WatchResponse, error) {
	c := make(chan recvResult, 1)
	go func() {
		r, err := wt.cli.Recv()
		c <- recvResult{r, err}
	}()
	select {
	case res := <-c:
		return res.r, res.err
	case <-time.After(d):
		wt.t.Fatalf("no watch response within %v", d)
		return nil, nil
	}
}

func kv(key, val string, create, mod int64) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: []byte(key), Value: []byte(val), CreateRevision: create, ModRevision: mod, Version: 1}
}

func putEv(key, val string, rev int64) *mvccpb.Event {
	return &mvccpb.Event{Type: mvccpb.Event_PUT, Kv: kv(key, val, rev, rev)}
}

func delEv(key string, rev int64) *mvccpb.Event {
	return &mvccpb.Event{Type: mvccpb.Event_DELETE, Kv: &mvccpb.KeyValue{Key: []byte(key), ModRevision: rev}}
}

func evResp(id, rev int64, evs ...*mvccpb.Event) *pb.WatchResponse {
	return &pb.WatchResponse{WatchId: id, Header: &pb.ResponseHeader{Revision: rev}, Events: evs}
}

func evKeys(r *pb.WatchResponse) string {
	var ks []string
	for _, e := range r.Events {
		ks = append(ks, fmt.Sprintf("%s:%s", e.Type, e.Kv.Key))
	}
	return strings.Join(ks, ",")
}

func requireIdentity(t *testing.T, h *pb.ResponseHeader, rev int64) {
	t.Helper()
	if h.GetClusterId() != 100 || h.GetMemberId() != 42 || h.GetRaftTerm() != 3 || h.GetRevision() != rev {
		t.Fatalf("header %v, want cluster 100 member 42 term 3 revision %d", h, rev)
	}
}

// A watcher's events that reach the service before its created response is sent are
// held back until it is.
func TestWatchCreatedPrecedesEvents(t *testing.T) {
	wt := newWatchTest(t, GRPCConfig{})
	ws := wt.stream() // grpc-go sends the stream's headers before any message
	ws.mu.Lock()
	ws.onWatch = func(id int64) {
		ws.emit(evResp(id, 5, putEv("b", "1", 5)))
		ws.emit(evResp(id, 6, putEv("b", "2", 6)))
	}
	ws.mu.Unlock()
	wt.create(&pb.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("c"), WatchId: 1})
	r := wt.recv()
	if !r.Created || r.Canceled || r.WatchId != 1 || len(r.Events) != 0 {
		t.Fatalf("response %v, want created 1 before its events", r)
	}
	requireIdentity(t, r.Header, 9)
	for i, rev := range []int64{5, 6} {
		r = wt.recv()
		if r.WatchId != 1 || len(r.Events) != 1 || r.Events[0].Kv.ModRevision != rev {
			t.Fatalf("event response %d: %v", i, r)
		}
		requireIdentity(t, r.Header, rev)
	}
	ws.mu.Lock()
	got := ws.watches[1]
	ws.mu.Unlock()
	if string(got.Key) != "b" || string(got.RangeEnd) != "c" {
		t.Fatalf("backend got %v", got)
	}
}

// The created response carries the revision the watcher was registered at, not the
// member's revision when the response is built: a write that lands in between (its event
// at 8 while the member is at 9 by then) must not look at or below the created revision.
func TestWatchCreatedRevisionIsRegistrationRevision(t *testing.T) {
	wt := newWatchTest(t, GRPCConfig{})
	ws := wt.stream()
	ws.mu.Lock()
	ws.createdRev = 7
	ws.onWatch = func(id int64) { ws.emit(evResp(id, 8, putEv("b", "1", 8))) }
	ws.mu.Unlock()
	wt.create(&pb.WatchCreateRequest{Key: []byte("b")})
	created := wt.recv()
	if !created.Created {
		t.Fatalf("response %v, want created", created)
	}
	requireIdentity(t, created.Header, 7)
	r := wt.recv()
	if len(r.Events) != 1 || r.Events[0].Kv.ModRevision <= created.Header.Revision {
		t.Fatalf("event response %v after created revision %d", r, created.Header.Revision)
	}
}

func TestWatchCreateErrors(t *testing.T) {
	wt := newWatchTest(t, GRPCConfig{})
	wt.create(&pb.WatchCreateRequest{Key: []byte("a"), WatchId: 7})
	if r := wt.recv(); !r.Created || r.WatchId != 7 {
		t.Fatalf("create 7: %v", r)
	}
	for _, c := range []struct {
		req    *pb.WatchCreateRequest
		reason string
	}{
		{&pb.WatchCreateRequest{Key: []byte("b"), WatchId: 7}, "mvcc: duplicate watch ID provided on the WatchStream"},
		{&pb.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("a")}, "mvcc: watcher range is empty"},
		{&pb.WatchCreateRequest{Key: []byte("b"), StartRevision: -1}, "etcdserver: mvcc: required revision has been compacted"},
	} {
		wt.create(c.req)
		r := wt.recv()
		if !r.Created || !r.Canceled || r.WatchId != -1 || r.CancelReason != c.reason {
			t.Fatalf("create %v: got %v, want created+canceled id -1 %q", c.req, r, c.reason)
		}
		requireIdentity(t, r.Header, 9)
	}
	// An empty key is etcd's smallest key "\x00".
	wt.create(&pb.WatchCreateRequest{RangeEnd: []byte{0}})
	r := wt.recv()
	ws := wt.stream()
	ws.mu.Lock()
	got := ws.watches[r.WatchId]
	ws.mu.Unlock()
	if got == nil || string(got.Key) != "\x00" || string(got.RangeEnd) != "\x00" {
		t.Fatalf("backend got %v for an empty key", got)
	}
}

func TestWatchCancel(t *testing.T) {
	wt := newWatchTest(t, GRPCConfig{})
	wt.create(&pb.WatchCreateRequest{Key: []byte("a")})
	r := wt.recv()
	ws := wt.stream()
	id := r.WatchId
	wt.cancel(id)
	r = wt.recv()
	if !r.Canceled || r.Created || r.WatchId != id {
		t.Fatalf("cancel: %v", r)
	}
	requireIdentity(t, r.Header, 9)
	// An unknown id gets no response; a late event of the canceled watcher is dropped.
	wt.cancel(99)
	ws.emit(evResp(id, 10, putEv("a", "x", 10)))
	wt.progress()
	if r := wt.recv(); r.WatchId != -1 || len(r.Events) != 0 || r.Canceled {
		t.Fatalf("after cancel got %v, want only the progress response", r)
	}
}

func TestWatchCompacted(t *testing.T) {
	wt := newWatchTest(t, GRPCConfig{})
	wt.create(&pb.WatchCreateRequest{Key: []byte("a"), StartRevision: 2})
	id := wt.recv().WatchId
	ws := wt.stream()
	ws.emit(&pb.WatchResponse{WatchId: id, CompactRevision: 5, Header: &pb.ResponseHeader{Revision: 9}})
	r := wt.recv()
	if !r.Canceled || r.CompactRevision != 5 || r.WatchId != id || r.Created || len(r.Events) != 0 {
		t.Fatalf("compacted: %v", r)
	}
	requireIdentity(t, r.Header, 9)
}

func TestWatchPrevKVAndFilters(t *testing.T) {
	wt := newWatchTest(t, GRPCConfig{})
	wt.create(&pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("z")})
	plain := wt.recv().WatchId
	wt.create(&pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("z"), PrevKv: true})
	withPrev := wt.recv().WatchId
	wt.create(&pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("z"), Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NOPUT}})
	noPut := wt.recv().WatchId
	ws := wt.stream()

	ev := putEv("b", "2", 11)
	ev.PrevKv = kv("b", "1", 10, 10)
	ws.emit(evResp(plain, 11, ev))
	ws.emit(evResp(withPrev, 11, ev))
	ws.emit(evResp(noPut, 11, ev))                 // filtered away entirely: nothing sent
	ws.emit(evResp(noPut, 12, ev, delEv("b", 12))) // only the delete
	r := wt.recv()
	if r.WatchId != plain || len(r.Events) != 1 || r.Events[0].PrevKv != nil {
		t.Fatalf("plain watcher got %v, want no prev_kv", r)
	}
	r = wt.recv()
	if r.WatchId != withPrev || len(r.Events) != 1 || string(r.Events[0].PrevKv.GetValue()) != "1" {
		t.Fatalf("prev_kv watcher got %v", r)
	}
	r = wt.recv()
	if r.WatchId != noPut || evKeys(r) != "DELETE:b" || r.Header.Revision != 12 {
		t.Fatalf("NOPUT watcher got %v", r)
	}
	if ev.PrevKv == nil {
		t.Fatal("the member's event was modified")
	}
}

func TestWatchProgressRequest(t *testing.T) {
	wt := newWatchTest(t, GRPCConfig{})
	wt.create(&pb.WatchCreateRequest{Key: []byte("a")})
	wt.recv()
	ws := wt.stream()
	wt.progress()
	r := wt.recv()
	if r.WatchId != -1 || len(r.Events) != 0 || r.Canceled || r.Created {
		t.Fatalf("progress: %v", r)
	}
	requireIdentity(t, r.Header, 9)

	// Unsynced: no answer until the watchers catch up, then exactly one.
	ws.setSynced(false)
	wt.progress()
	time.Sleep(3 * progressAllRetry)
	ws.mu.Lock()
	calls := ws.progressAllCalls
	ws.mu.Unlock()
	if calls < 2 {
		t.Fatalf("RequestProgressAll called %d times, want retries while unsynced", calls)
	}
	ws.setSynced(true)
	if r := wt.recv(); r.WatchId != -1 {
		t.Fatalf("progress after sync: %v", r)
	}
	ws.emit(evResp(0, 10, putEv("a", "1", 10)))
	if r := wt.recv(); len(r.Events) != 1 {
		t.Fatalf("want the event next (one progress response only), got %v", r)
	}
}

func TestWatchProgressNotify(t *testing.T) {
	wt := newWatchTest(t, GRPCConfig{WatchProgressNotifyInterval: 100 * time.Millisecond})
	wt.create(&pb.WatchCreateRequest{Key: []byte("a")})
	wt.recv()
	wt.create(&pb.WatchCreateRequest{Key: []byte("b"), ProgressNotify: true})
	id := wt.recv().WatchId
	r := wt.recv()
	if r.WatchId != id || len(r.Events) != 0 || r.Canceled {
		t.Fatalf("progress notify: %v", r)
	}
	requireIdentity(t, r.Header, 9)
	ws := wt.stream()
	ws.mu.Lock()
	calls := append([]int64(nil), ws.progressCalls...)
	ws.mu.Unlock()
	for _, c := range calls {
		if c != id {
			t.Fatalf("RequestProgress(%d) for a watcher without progress_notify", c)
		}
	}
}

func TestWatchNoLeaderEndsStream(t *testing.T) {
	wt := newWatchTest(t, GRPCConfig{ElectionTimeout: 20 * time.Millisecond}, "hasleader", "true")
	wt.create(&pb.WatchCreateRequest{Key: []byte("a")})
	wt.recv()
	wt.fb.mu.Lock()
	wt.fb.leader = 0
	wt.fb.mu.Unlock()
	_, err := wt.recvWithin(5 * time.Second)
	if s, _ := status.FromError(err); s.Code() != codes.Unavailable || s.Message() != "etcdserver: no leader" {
		t.Fatalf("stream ended with %v, want no leader", err)
	}
	ws := wt.stream()
	deadline := time.Now().Add(5 * time.Second)
	for !ws.isClosed() {
		if time.Now().After(deadline) {
			t.Fatal("WatchStream not closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatchClientGoneClosesStream(t *testing.T) {
	fb := newFakeBackend()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := NewGRPCServer(fb, GRPCConfig{}, nil)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	cc := dial(t, l.Addr().String())
	for _, how := range []string{"cancel", "close-send"} {
		ctx, cancel := context.WithCancel(context.Background())
		cli, err := pb.NewWatchClient(cc).Watch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cli.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("a")}}})
		if _, err := cli.Recv(); err != nil {
			t.Fatal(err)
		}
		ws := <-fb.watchStreams
		if how == "close-send" {
			// A half-closed stream keeps delivering events, as etcd's does.
			cli.CloseSend()
			ws.emit(evResp(0, 10, putEv("a", "1", 10)))
			if r, err := cli.Recv(); err != nil || len(r.Events) != 1 {
				t.Fatalf("after CloseSend: %v %v", r, err)
			}
		}
		cancel()
		deadline := time.Now().Add(5 * time.Second)
		for !ws.isClosed() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: WatchStream not closed", how)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// Large responses of a fragmenting watcher arrive in pieces; others arrive whole.
func TestWatchFragmentOverGRPC(t *testing.T) {
	// max-request-bytes 1 gives a limit of 512 KiB + 1.
	wt := newWatchTest(t, GRPCConfig{MaxRequestBytes: 1})
	wt.create(&pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("z"), Fragment: true})
	frag := wt.recv().WatchId
	wt.create(&pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("z")})
	whole := wt.recv().WatchId
	ws := wt.stream()
	big := strings.Repeat("v", 200*1024)
	var evs []*mvccpb.Event
	for i := 0; i < 6; i++ {
		evs = append(evs, putEv(fmt.Sprintf("k%d", i), big, 20))
	}
	ws.emit(evResp(frag, 20, evs...))
	ws.emit(evResp(whole, 20, evs...))
	var got []int
	for n := 0; n < 6; {
		r := wt.recv()
		if r.WatchId != frag {
			t.Fatalf("unexpected %v", r.WatchId)
		}
		got = append(got, len(r.Events))
		n += len(r.Events)
		if r.Fragment != (n < 6) {
			t.Fatalf("fragment flag %v with %d of 6 events received", r.Fragment, n)
		}
		if proto.Size(r) >= 512*1024+1 {
			t.Fatalf("fragment of %d bytes", proto.Size(r))
		}
	}
	if fmt.Sprint(got) != "[2 2 2]" {
		t.Fatalf("fragments of %v events, want [2 2 2]", got)
	}
	if r := wt.recv(); r.WatchId != whole || len(r.Events) != 6 || r.Fragment {
		t.Fatalf("non-fragmenting watcher: %d events fragment=%v", len(r.Events), r.Fragment)
	}
}

func TestSendFragments(t *testing.T) {
	var evs []*mvccpb.Event
	for i := 0; i < 10; i++ {
		evs = append(evs, putEv(fmt.Sprintf("key-%02d", i), strings.Repeat("x", 80), int64(100+i)))
	}
	one := proto.Size(evs[0])
	for _, c := range []struct {
		name     string
		evs      []*mvccpb.Event
		maxBytes int
	}{
		{"below the limit: whole", evs, 100000},
		{"one event over the limit: whole", evs[:1], 10},
		{"several", evs, 3*one + 60},
		{"one per response", evs, one},
		{"odd split", evs, 4*one + 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			wr := &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: 200, ClusterId: 100}, WatchId: 3, Events: c.evs}
			var sent []*pb.WatchResponse
			if err := sendFragments(wr, c.maxBytes, func(r *pb.WatchResponse) error {
				sent = append(sent, r)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			var all []*mvccpb.Event
			for i, r := range sent {
				if r.Fragment != (i < len(sent)-1) {
					t.Fatalf("response %d/%d fragment=%v", i, len(sent), r.Fragment)
				}
				if len(r.Events) > 1 && proto.Size(r) >= c.maxBytes {
					t.Fatalf("response %d has %d bytes, limit %d", i, proto.Size(r), c.maxBytes)
				}
				if r.WatchId != 3 || r.Header.Revision != 200 {
					t.Fatalf("response %d lost id/header: %v", i, r)
				}
				// etcd packs greedily: the next event would not have fit.
				if i < len(sent)-1 {
					next := sent[i+1].Events[0]
					probe := proto.Clone(r).(*pb.WatchResponse)
					probe.Events = append(probe.Events, next)
					if proto.Size(probe) < c.maxBytes {
						t.Fatalf("response %d could have held one more event", i)
					}
				}
				all = append(all, r.Events...)
			}
			if len(all) != len(c.evs) {
				t.Fatalf("%d events sent, want %d", len(all), len(c.evs))
			}
			for i := range all {
				if all[i] != c.evs[i] {
					t.Fatalf("event %d out of order", i)
				}
			}
			whole := proto.Size(wr) < c.maxBytes || len(c.evs) < 2
			if whole != (len(sent) == 1) {
				t.Fatalf("%d responses for whole=%v", len(sent), whole)
			}
		})
	}
}
