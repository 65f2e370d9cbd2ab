package main

import (
	"bytes"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// fakeWatch is a minimal Watch service fed by mapKV.onPut: every put to a
// watched key becomes one event for each of the key's watchers, in revision
// order. Watch ids are per stream, from 0, as in etcd.
type fakeWatch struct {
	pb.UnimplementedWatchServer
	mu       sync.Mutex
	watchers map[string][]fakeWatcher
	drop     func(id, rev int64) bool // if non-nil and true, the event is not sent
	dropped  int

	streams, created atomic.Int64
}

type fakeWatcher struct {
	id  int64
	out chan<- *pb.WatchResponse
}

func newFakeWatch(kv *mapKV) *fakeWatch {
	f := &fakeWatch{watchers: map[string][]fakeWatcher{}}
	kv.onPut = f.notify
	return f
}

func (f *fakeWatch) Watch(gs pb.Watch_WatchServer) error {
	f.streams.Add(1)
	out := make(chan *pb.WatchResponse, 1<<16)
	done, sendDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sendDone)
		for {
			select {
			case r := <-out:
				if gs.Send(r) != nil {
					return
				}
			case <-done:
				return
			}
		}
	}()
	defer func() { close(done); <-sendDone }()
	var nextID int64
	for {
		req, err := gs.Recv()
		if err != nil {
			return err
		}
		cr := req.GetCreateRequest()
		if cr == nil {
			continue
		}
		id := nextID
		nextID++
		f.mu.Lock()
		f.watchers[string(cr.Key)] = append(f.watchers[string(cr.Key)], fakeWatcher{id, out})
		f.mu.Unlock()
		f.created.Add(1)
		out <- &pb.WatchResponse{WatchId: id, Created: true}
	}
}

func (f *fakeWatch) notify(key []byte, rev int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.watchers[string(key)] {
		if f.drop != nil && f.drop(w.id, rev) {
			f.dropped++
			continue
		}
		w.out <- &pb.WatchResponse{WatchId: w.id, Events: []*mvccpb.Event{{
			Type: mvccpb.Event_PUT,
			Kv:   &mvccpb.KeyValue{Key: bytes.Clone(key), ModRevision: rev},
		}}}
	}
}

func TestBenchWatch(t *testing.T) {
	kv := &mapKV{}
	fw := newFakeWatch(kv)
	addr, lis := startServer(t, kv, fw, nil)
	r := runJSON(t, exitOK, "bench", "watch", "--endpoints", addr, "--watchers", "30", "--streams", "3", "--conns", "3",
		"--key-space-size", "7", "--put-clients", "4", "--total", "300", "--workload", "watch", "--target", "t", "--round", "1")
	// Key k gets puts i with i%7 == k: 43 each for keys 0..5, 42 for key 6.
	// It has watchers i with i%7 == k: 5 each for keys 0 and 1, 4 for keys 2..6.
	const want = 43*5*2 + 43*4*4 + 42*4
	checkSane(t, r, want)
	if r.Op != "watch" || r.Watchers != 30 || r.Streams != 3 || r.Puts != 300 || r.Clients != 4 || r.Conns != 3 || r.Workload != "watch" {
		t.Errorf("labels not recorded: %+v", r)
	}
	if r.PutAvgMs <= 0 || r.PutP99Ms < r.PutP50Ms {
		t.Errorf("put latencies not recorded: avg %v p50 %v p99 %v", r.PutAvgMs, r.PutP50Ms, r.PutP99Ms)
	}
	if got := kv.puts.Load(); got != 300 {
		t.Errorf("server saw %d puts, want 300", got)
	}
	if s, c := fw.streams.Load(), fw.created.Load(); s != 3 || c != 30 {
		t.Errorf("server saw %d streams and %d watchers, want 3 and 30", s, c)
	}
	if got := lis.accepted.Load(); got != 3 {
		t.Errorf("server accepted %d connections, want 3", got)
	}
	if got := kv.keys(); got != 7 {
		t.Errorf("server holds %d keys, want 7", got)
	}
}

func TestBenchWatchRate(t *testing.T) {
	kv := &mapKV{}
	addr, _ := startServer(t, kv, newFakeWatch(kv), nil)
	start := time.Now()
	r := runJSON(t, exitOK, "bench", "watch", "--endpoints", addr, "--watchers", "4", "--streams", "2",
		"--put-clients", "2", "--total", "21", "--rate", "100")
	checkSane(t, r, 21*4)
	// Put 20 is due 200ms after put 0.
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("21 puts at 100/s took %v, want >= 200ms", d)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"bench", "watch", "--endpoints", addr, "--rate", "-1"}, &out, &errb); code != exitUsage {
		t.Errorf("--rate -1: exit %d, want %d", code, exitUsage)
	}
}

func TestBenchWatchDetectsLostEvents(t *testing.T) {
	kv := &mapKV{}
	fw := newFakeWatch(kv)
	// The first watcher of each stream misses every 10th revision: revisions
	// 10..40 are gaps, 50 (the last put) is never delivered.
	fw.drop = func(id, rev int64) bool { return id == 0 && rev%10 == 0 }
	addr, _ := startServer(t, kv, fw, nil)
	r := runJSON(t, exitFail, "bench", "watch", "--endpoints", addr, "--watchers", "10", "--streams", "2",
		"--total", "50", "--idle-timeout", "200ms")
	if r.Total != 500 || r.OK != 490 || r.Errors != 10 || r.TimedOut {
		t.Fatalf("total/ok/errors/timedout = %d/%d/%d/%v, want 500/490/10/false; %v", r.Total, r.OK, r.Errors, r.TimedOut, r.ErrorsByMessage)
	}
	if g, m := r.ErrorsByMessage[errWatchGap], r.ErrorsByMessage[errWatchMissing]; g != 8 || m != 2 {
		t.Errorf("errors %v, want 8 gaps and 2 never delivered", r.ErrorsByMessage)
	}
}

func TestBenchWatchTimeout(t *testing.T) {
	kv := &mapKV{}
	fw := newFakeWatch(kv)
	fw.drop = func(id, rev int64) bool { return true }
	addr, _ := startServer(t, kv, fw, nil)
	start := time.Now()
	r := runJSON(t, exitFail, "bench", "watch", "--endpoints", addr, "--watchers", "4", "--streams", "2",
		"--total", "20", "--timeout", "500ms", "--idle-timeout", "1m")
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("took %v despite --timeout 500ms", el)
	}
	// Events not delivered by the deadline are abandoned, not counted as errors.
	if !r.TimedOut || r.OK != 0 || r.Errors != 0 {
		t.Errorf("timed_out/ok/errors = %v/%d/%d (%v), want true/0/0", r.TimedOut, r.OK, r.Errors, r.ErrorsByMessage)
	}
}

func TestCheckWatch(t *testing.T) {
	ms := time.Millisecond
	// Key 0: revisions 1, 3, 5, 7; key 1: 2, 4. Put with revision r was sent at r ms.
	var puts []putRecord
	for _, p := range []struct {
		key int
		rev int64
	}{{0, 1}, {1, 2}, {0, 3}, {1, 4}, {0, 5}, {0, 7}} {
		puts = append(puts, putRecord{key: p.key, rev: p.rev, sent: time.Duration(p.rev) * ms})
	}
	log := func(key int, revs ...int64) *watcherLog {
		w := &watcherLog{key: key, revs: revs}
		for _, r := range revs {
			w.recv = append(w.recv, time.Duration(r)*ms+2*ms) // 2 ms after the put
		}
		return w
	}
	for _, tc := range []struct {
		name     string
		w        *watcherLog
		timedOut bool
		ok       int
		errs     map[string]int
	}{
		{"complete", log(0, 1, 3, 5, 7), false, 4, nil},
		{"other key complete", log(1, 2, 4), false, 2, nil},
		{"gap", log(0, 1, 5, 7), false, 3, map[string]int{errWatchGap: 1}},
		{"tail missing", log(0, 1, 3), false, 2, map[string]int{errWatchMissing: 2}},
		{"tail abandoned at timeout", log(0, 1, 3), true, 2, nil},
		{"gap at timeout still counts", log(0, 3), true, 1, map[string]int{errWatchGap: 1}},
		{"duplicate", log(0, 1, 3, 3, 5, 7), false, 4, map[string]int{errWatchOrder: 1}},
		{"out of order", log(0, 1, 5, 3, 7), false, 3, map[string]int{errWatchGap: 1, errWatchOrder: 1}},
		{"unknown revision", log(0, 1, 3, 5, 6, 7), false, 4, map[string]int{errWatchUnexpected: 1}},
		{"other key's event", log(0, 1, 2, 3, 5, 7), false, 4, map[string]int{errWatchWrongKey: 1}},
		{"nothing", log(1), false, 0, map[string]int{errWatchMissing: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := checkWatch([]*watcherLog{tc.w}, puts, 2, tc.timedOut)
			if len(st.lat) != tc.ok {
				t.Errorf("%d in-order events, want %d", len(st.lat), tc.ok)
			}
			for _, d := range st.lat {
				if d != 2*ms {
					t.Errorf("latency %v, want 2ms", d)
				}
			}
			if len(st.errs) != len(tc.errs) {
				t.Errorf("errors %v, want %v", st.errs, tc.errs)
			}
			for m, n := range tc.errs {
				if st.errs[m] != n {
					t.Errorf("errors %v, want %v", st.errs, tc.errs)
				}
			}
		})
	}
	// Several watchers aggregate; lastRecv is the latest in-order receipt.
	st := checkWatch([]*watcherLog{log(0, 1, 3, 5, 7), log(0, 1, 3, 5, 7), log(1, 2, 4)}, puts, 2, false)
	if len(st.lat) != 10 || len(st.errs) != 0 || st.lastRecv != 9*ms {
		t.Errorf("lat %d, errs %v, lastRecv %v; want 10, none, 9ms", len(st.lat), st.errs, st.lastRecv)
	}
	res := newResult(st.lat, st.errs, 10*ms)
	if res.OK != 10 || res.QPS != 1000 || res.AvgMs != 2 {
		t.Errorf("result ok/qps/avg = %d/%v/%v, want 10/1000/2", res.OK, res.QPS, res.AvgMs)
	}
}

func TestBenchWatchTextOutput(t *testing.T) {
	kv := &mapKV{}
	addr, _ := startServer(t, kv, newFakeWatch(kv), nil)
	var out, errb bytes.Buffer
	if code := run([]string{"bench", "watch", "--endpoints", addr, "--watchers", "6", "--streams", "2", "--total", "5"}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"Watchers:  6 on 2 streams; 5 puts", "Total:     30", "Errors:    0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
