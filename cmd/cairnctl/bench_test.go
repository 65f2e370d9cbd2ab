package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// mapKV is a minimal, real etcdserverpb.KVServer backed by a map: enough to
// check what the load generator sends, not a model of etcd semantics.
type mapKV struct {
	pb.UnimplementedKVServer
	mu   sync.Mutex
	data map[string][]byte
	rev  int64

	puts, ranges, serializable, txns, txnPuts atomic.Int64
	withDeadline                              atomic.Int64                // puts whose context carried a deadline (grpc-timeout)
	failEvery                                 int64                       // if > 0, every failEvery-th Put fails
	stall                                     chan struct{}               // if non-nil, Range blocks until it is closed or the call ends
	onPut                                     func(key []byte, rev int64) // if non-nil, called for each put, in revision order
}

func (s *mapKV) Put(ctx context.Context, req *pb.PutRequest) (*pb.PutResponse, error) {
	n := s.puts.Add(1)
	if _, ok := ctx.Deadline(); ok {
		s.withDeadline.Add(1)
	}
	if s.failEvery > 0 && n%s.failEvery == 0 {
		return nil, status.Error(codes.Unavailable, "injected failure")
	}
	return &pb.PutResponse{Header: s.apply(req)}, nil
}

func (s *mapKV) apply(req *pb.PutRequest) *pb.ResponseHeader {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	s.data[string(req.Key)] = bytes.Clone(req.Value)
	if s.onPut != nil {
		s.onPut(req.Key, s.rev)
	}
	return &pb.ResponseHeader{Revision: s.rev}
}

func (s *mapKV) Range(ctx context.Context, req *pb.RangeRequest) (*pb.RangeResponse, error) {
	s.ranges.Add(1)
	if req.Serializable {
		s.serializable.Add(1)
	}
	if s.stall != nil {
		select {
		case <-s.stall:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: s.rev}}
	if v, ok := s.data[string(req.Key)]; ok {
		resp.Kvs = []*mvccpb.KeyValue{{Key: req.Key, Value: v}}
		resp.Count = 1
	}
	return resp, nil
}

func (s *mapKV) Txn(_ context.Context, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	s.txns.Add(1)
	if len(req.Compare) > 0 {
		return nil, status.Error(codes.Unimplemented, "compares not supported by the test server")
	}
	resp := &pb.TxnResponse{Succeeded: true}
	for _, op := range req.Success {
		put := op.GetRequestPut()
		if put == nil {
			return nil, status.Error(codes.Unimplemented, "only puts are supported by the test server")
		}
		s.txnPuts.Add(1)
		resp.Header = s.apply(put)
		resp.Responses = append(resp.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{}}})
	}
	return resp, nil
}

func (s *mapKV) keys() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.data)
}

// countingListener counts accepted connections, to check --conns.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

func startKV(t *testing.T, kv *mapKV) (addr string, lis *countingListener) {
	t.Helper()
	return startServer(t, kv, nil, nil)
}

// startServer serves kv and, if non-nil, watch and lease on a loopback port.
func startServer(t *testing.T, kv *mapKV, watch pb.WatchServer, lease pb.LeaseServer) (addr string, lis *countingListener) {
	t.Helper()
	kv.data = map[string][]byte{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis = &countingListener{Listener: l}
	srv := grpc.NewServer()
	pb.RegisterKVServer(srv, kv)
	if watch != nil {
		pb.RegisterWatchServer(srv, watch)
	}
	if lease != nil {
		pb.RegisterLeaseServer(srv, lease)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return l.Addr().String(), lis
}

// runJSON runs cairnctl with --json appended and decodes the result.
func runJSON(t *testing.T, wantCode int, args ...string) *Result {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(append(args, "--json"), &out, &errb); code != wantCode {
		t.Fatalf("cairnctl %v: exit %d, want %d; stderr:\n%s", args, code, wantCode, errb.String())
	}
	var res Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("decode %q: %v", out.String(), err)
	}
	return &res
}

func checkSane(t *testing.T, r *Result, wantOK int) {
	t.Helper()
	if r.Total != wantOK || r.OK != wantOK || r.Errors != 0 || r.TimedOut {
		t.Fatalf("total/ok/errors/timedout = %d/%d/%d/%v, want %d/%d/0/false", r.Total, r.OK, r.Errors, r.TimedOut, wantOK, wantOK)
	}
	if r.QPS <= 0 || r.Duration <= 0 || r.AvgMs <= 0 {
		t.Fatalf("non-positive qps/duration/avg: %+v", r)
	}
	if !(r.FastestMs <= r.P50Ms && r.P50Ms <= r.P90Ms && r.P90Ms <= r.P99Ms && r.P99Ms <= r.SlowestMs) {
		t.Fatalf("percentiles out of order: %+v", r)
	}
	if r.AvgMs < r.FastestMs || r.AvgMs > r.SlowestMs {
		t.Fatalf("average outside [fastest, slowest]: %+v", r)
	}
	// Every request finished inside the run, so N/duration bounds QPS.
	if got, max := r.QPS, float64(wantOK)/r.Duration*1.0001; got > max {
		t.Fatalf("qps %f > ok/duration %f", got, max)
	}
}

func TestBenchPut(t *testing.T) {
	kv := &mapKV{}
	addr, lis := startKV(t, kv)
	r := runJSON(t, exitOK, "bench", "put", "--endpoints", addr, "--total", "200", "--clients", "4", "--conns", "2",
		"--key-space-size", "50", "--sequential-keys", "--workload", "put-x", "--target", "t1", "--round", "2")
	checkSane(t, r, 200)
	if got := kv.puts.Load(); got != 200 {
		t.Errorf("server saw %d puts, want 200", got)
	}
	if got := lis.accepted.Load(); got != 2 {
		t.Errorf("server accepted %d connections, want 2", got)
	}
	if got := kv.keys(); got != 50 { // sequential keys cover the whole space
		t.Errorf("server holds %d keys, want 50", got)
	}
	if r.Op != "put" || r.Workload != "put-x" || r.Target != "t1" || r.Round != 2 || r.Clients != 4 || r.Conns != 2 {
		t.Errorf("labels not recorded: %+v", r)
	}
	kv.mu.Lock()
	for k, v := range kv.data {
		if len(k) != 8 || len(v) != 256 {
			t.Errorf("key %q (%d B) value %d B, want 8 B and 256 B", k, len(k), len(v))
		}
	}
	kv.mu.Unlock()
}

func TestBenchRange(t *testing.T) {
	for _, tc := range []struct {
		consistency      string
		wantSerializable int64
	}{{"l", 0}, {"s", 200}} {
		t.Run(tc.consistency, func(t *testing.T) {
			kv := &mapKV{}
			addr, lis := startKV(t, kv)
			r := runJSON(t, exitOK, "bench", "range", "--endpoints", "http://"+addr, "--total", "200", "--clients", "4",
				"--conns", "2", "--consistency", tc.consistency, "--read-key", "k1", "--val-size", "10")
			checkSane(t, r, 200)
			if got := kv.ranges.Load(); got != 200 {
				t.Errorf("server saw %d ranges, want 200", got)
			}
			if got := kv.serializable.Load(); got != tc.wantSerializable {
				t.Errorf("server saw %d serializable ranges, want %d", got, tc.wantSerializable)
			}
			if got := kv.puts.Load(); got != 1 { // the key is put once before the run
				t.Errorf("server saw %d puts, want 1", got)
			}
			if v := kv.data["k1"]; len(v) != 10 {
				t.Errorf("ranged key holds %q, want 10 bytes", v)
			}
			if got := lis.accepted.Load(); got != 2 {
				t.Errorf("server accepted %d connections, want 2", got)
			}
		})
	}
}

func TestBenchTxnPut(t *testing.T) {
	kv := &mapKV{}
	addr, lis := startKV(t, kv)
	r := runJSON(t, exitOK, "bench", "txn-put", "--endpoints", addr, "--total", "200", "--clients", "4", "--conns", "2",
		"--key-space-size", "1000")
	checkSane(t, r, 200)
	if got, puts := kv.txns.Load(), kv.txnPuts.Load(); got != 200 || puts != 200 {
		t.Errorf("server saw %d txns with %d puts, want 200 and 200", got, puts)
	}
	if got := lis.accepted.Load(); got != 2 {
		t.Errorf("server accepted %d connections, want 2", got)
	}
}

func TestBenchMultipleEndpoints(t *testing.T) {
	kv1, kv2 := &mapKV{}, &mapKV{}
	a1, l1 := startKV(t, kv1)
	a2, l2 := startKV(t, kv2)
	r := runJSON(t, exitOK, "bench", "put", "--endpoints", a1+","+a2, "--total", "100", "--clients", "2", "--conns", "2")
	checkSane(t, r, 100)
	// Conn i dials endpoint i; which client does how many requests is up to the scheduler.
	if c1, c2 := l1.accepted.Load(), l2.accepted.Load(); c1 != 1 || c2 != 1 {
		t.Errorf("connections per endpoint %d/%d, want 1/1", c1, c2)
	}
	if p1, p2 := kv1.puts.Load(), kv2.puts.Load(); p1+p2 != 100 {
		t.Errorf("puts %d+%d, want 100 in all", p1, p2)
	}
}

func TestBenchCountsErrors(t *testing.T) {
	kv := &mapKV{failEvery: 4}
	addr, _ := startKV(t, kv)
	r := runJSON(t, exitFail, "bench", "put", "--endpoints", addr, "--total", "200", "--clients", "4")
	if r.Total != 200 || r.OK != 150 || r.Errors != 50 {
		t.Fatalf("total/ok/errors = %d/%d/%d, want 200/150/50", r.Total, r.OK, r.Errors)
	}
	if len(r.ErrorsByMessage) != 1 {
		t.Fatalf("errors by message: %v, want one message", r.ErrorsByMessage)
	}
	for m, n := range r.ErrorsByMessage {
		if !strings.Contains(m, "injected failure") || n != 50 {
			t.Errorf("error %q × %d, want injected failure × 50", m, n)
		}
	}
}

func TestBenchTimeout(t *testing.T) {
	kv := &mapKV{stall: make(chan struct{})}
	defer close(kv.stall)
	addr, _ := startKV(t, kv)
	start := time.Now()
	r := runJSON(t, exitFail, "bench", "range", "--endpoints", addr, "--total", "100", "--clients", "2", "--timeout", "300ms")
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("took %v despite --timeout 300ms", el)
	}
	if !r.TimedOut || r.OK != 0 || r.Errors != 0 {
		t.Errorf("timed_out/ok/errors = %v/%d/%d, want true/0/0 (abandoned calls are not server errors)", r.TimedOut, r.OK, r.Errors)
	}
}

// Like etcd's benchmark tool, bench sends requests without a deadline (--timeout bounds
// the run by cancelling it): a grpc-timeout on every request would cost the server under
// test a timer per request that etcd's own tool never makes it pay.
func TestBenchSendsNoDeadline(t *testing.T) {
	kv := &mapKV{}
	addr, _ := startKV(t, kv)
	r := runJSON(t, exitOK, "bench", "put", "--endpoints", addr, "--total", "50", "--clients", "5", "--timeout", "1m")
	if r.OK != 50 || kv.puts.Load() != 50 {
		t.Fatalf("ok %d, puts served %d, want 50", r.OK, kv.puts.Load())
	}
	if n := kv.withDeadline.Load(); n != 0 {
		t.Errorf("%d of 50 puts reached the server with a deadline, want none", n)
	}
}

func TestBenchUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	var out, errb bytes.Buffer
	if code := run([]string{"bench", "range", "--endpoints", addr, "--total", "1", "--timeout", "300ms"}, &out, &errb); code != exitFail {
		t.Fatalf("exit %d, want %d", code, exitFail)
	}
	if !strings.Contains(errb.String(), "connect to "+addr) {
		t.Errorf("stderr %q does not name the endpoint", errb.String())
	}
}

func TestBenchTextOutput(t *testing.T) {
	kv := &mapKV{}
	addr, _ := startKV(t, kv)
	var out, errb bytes.Buffer
	if code := run([]string{"bench", "put", "--endpoints", addr, "--total", "20"}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"Total:     20", "Duration:", "QPS:", "Average:", "p50:", "p90:", "p99:", "Slowest:", "Errors:    0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		code       int
		out, error string
	}{
		{[]string{"--help"}, exitOK, "bench", ""},
		{nil, exitUsage, "", "Commands:"},
		{[]string{"nope"}, exitUsage, "", `unknown command "nope"`},
		{[]string{"bench", "--help"}, exitOK, "txn-put", ""},
		{[]string{"bench", "frob"}, exitUsage, "", `unknown op "frob"`},
		{[]string{"bench", "put", "--help"}, exitOK, "-key-space-size", ""},
		{[]string{"bench", "range", "--help"}, exitOK, "-consistency", ""},
		{[]string{"bench", "put", "--bogus"}, exitUsage, "", "-bogus"},
		{[]string{"bench", "put", "--clients", "0"}, exitUsage, "", "--clients"},
		{[]string{"bench", "put", "--key-size", "2", "--key-space-size", "101"}, exitUsage, "", "needs keys of 3 bytes"},
		{[]string{"bench", "range", "--consistency", "x"}, exitUsage, "", "--consistency"},
		{[]string{"bench", "put", "--endpoints", "ftp://a:1"}, exitUsage, "", "not host:port, http:// or https://"},
		{[]string{"bench", "put", "--cert", "c.pem"}, exitUsage, "", "--cert and --key go together"},
		{[]string{"bench", "put", "extra"}, exitUsage, "", "unexpected arguments"},
	} {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errb.String(), tc.error) {
			t.Errorf("cairnctl %q: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				tc.args, code, out.String(), errb.String(), tc.code, tc.out, tc.error)
		}
	}
}
