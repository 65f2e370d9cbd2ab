package api

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/cairn-kv/cairn/internal/tlsutil"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// startClientPort serves b on a loopback port as the client URL does and returns the
// address and a function that shuts it down and reports ServeClient's result.
func startClientPort(t *testing.T, b Backend) (string, func() error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := NewGRPCServer(b, GRPCConfig{MaxTxnOps: 4, KeepAliveMinTime: 5 * time.Second}, nil)
	hh := NewHTTPHandler(b, prometheus.NewRegistry(), false, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeClient(ctx, l, ClientPort{GRPC: gs, HTTP: hh}) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			t.Fatal("ServeClient did not return after cancel")
			return nil
		}
	}
	t.Cleanup(func() { stop() })
	return l.Addr().String(), stop
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestServeClientGRPCAndHTTPOnOnePort(t *testing.T) {
	b := newFakeBackend()
	addr, stop := startClientPort(t, b)
	cc := dial(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// grpc health
	hr, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check = %v, %v", hr, err)
	}

	// HTTP/1.1 on the same port, interleaved with gRPC
	resp, err := http.Get("http://" + addr + "/version")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != `{"etcdserver":"3.6.16","etcdcluster":"3.6.0","storage":"3.6.0"}` {
		t.Fatalf("GET /version = %d %q", resp.StatusCode, body)
	}
	resp, err = http.Get("http://" + addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != `{"health":"true","reason":""}` {
		t.Fatalf("GET /health = %d %q", resp.StatusCode, body)
	}

	kv := pb.NewKVClient(cc)
	if _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("a"), Value: []byte("1")}); err != nil {
		t.Fatalf("Put: %v", err)
	}
	// validation errors arrive with etcd's code and text
	_, err = kv.Range(ctx, &pb.RangeRequest{})
	wantStatus(t, "Range empty key over the wire", err, ErrGRPCEmptyKey)
	_, err = kv.Txn(ctx, &pb.TxnRequest{Success: ops(5, func(int) *pb.RequestOp { return get("a") })})
	wantStatus(t, "Txn over --max-txn-ops", err, ErrGRPCTooManyOps)
	// member errors are mapped
	b.mu.Lock()
	b.rangeErr = wrap(errCompacted)
	b.mu.Unlock()
	_, err = kv.Range(ctx, &pb.RangeRequest{Key: []byte("a"), Revision: 1})
	wantStatus(t, "Range compacted over the wire", err, ErrGRPCCompacted)
	b.mu.Lock()
	b.rangeErr = nil
	b.err = errTooManyRequests
	b.mu.Unlock()
	_, err = kv.Put(ctx, &pb.PutRequest{Key: []byte("a")})
	if s, _ := status.FromError(err); s.Message() != "etcdserver: too many requests" {
		t.Fatalf("Put too many requests: %v", err)
	}
	b.mu.Lock()
	b.err = nil
	b.mu.Unlock()

	// maintenance and cluster
	mc := pb.NewMaintenanceClient(cc)
	st, err := mc.Status(ctx, &pb.StatusRequest{})
	if err != nil || st.Version != "3.6.16" || st.Header.MemberId != 42 || len(st.Errors) != 0 {
		t.Fatalf("Status = %v, %v", st, err)
	}
	b.mu.Lock()
	b.alarms = []*pb.AlarmMember{{MemberID: 42, Alarm: pb.AlarmType_NOSPACE}}
	b.mu.Unlock()
	ar, err := mc.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_GET})
	if err != nil || len(ar.Alarms) != 1 || ar.Alarms[0].Alarm != pb.AlarmType_NOSPACE {
		t.Fatalf("Alarm GET = %v, %v", ar, err)
	}
	ar, err = mc.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_GET, Alarm: pb.AlarmType_CORRUPT})
	if err != nil || len(ar.Alarms) != 0 {
		t.Fatalf("Alarm GET CORRUPT = %v, %v", ar, err)
	}
	st, err = mc.Status(ctx, &pb.StatusRequest{})
	if err != nil || len(st.Errors) != 1 || st.Errors[0] != "memberID:42 alarm:NOSPACE " {
		t.Fatalf("Status with alarm = %v, %v", st, err)
	}
	ar, err = mc.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_DEACTIVATE, MemberID: 42, Alarm: pb.AlarmType_NOSPACE})
	if err != nil || len(ar.Alarms) != 1 || ar.Alarms[0].MemberID != 42 || ar.Header.GetMemberId() != 42 {
		t.Fatalf("Alarm DEACTIVATE = %v, %v; want the backend's answer with a header", ar, err)
	}
	if _, err := mc.HashKV(ctx, &pb.HashKVRequest{}); err != nil {
		t.Fatalf("HashKV: %v", err)
	}
	ml, err := pb.NewClusterClient(cc).MemberList(ctx, &pb.MemberListRequest{})
	if err != nil || len(ml.Members) != 1 || ml.Header.ClusterId != 100 {
		t.Fatalf("MemberList = %v, %v", ml, err)
	}

	// not served yet: genuine Unimplemented
	if _, err := pb.NewAuthClient(cc).AuthStatus(ctx, &pb.AuthStatusRequest{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("AuthStatus = %v; want Unimplemented", err)
	}
	// Bad peer URLs are refused before they reach the member, with etcd's error.
	for _, u := range []string{"127.0.0.1:2380", "ftp://127.0.0.1:2380", "http://127.0.0.1", "http://127.0.0.1:2380/path"} {
		if _, err := pb.NewClusterClient(cc).MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{u}}); err == nil || err.Error() != ErrGRPCMemberBadURLs.Error() {
			t.Fatalf("MemberAdd(%q) = %v; want %v", u, err, ErrGRPCMemberBadURLs)
		}
	}
	// etcd's Defragment answers no header.
	if dr, err := mc.Defragment(ctx, &pb.DefragmentRequest{}); err != nil || dr.Header != nil {
		t.Fatalf("Defragment = %v, %v; want an empty response", dr, err)
	}
	// Watch is served: a create is answered with its created response.
	wctx, wcancel := context.WithCancel(ctx)
	ws, err := pb.NewWatchClient(cc).Watch(wctx)
	if err == nil {
		err = ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("a")}}})
	}
	var wr *pb.WatchResponse
	if err == nil {
		wr, err = ws.Recv()
	}
	if err != nil || !wr.Created || wr.Header.GetClusterId() != 100 {
		t.Fatalf("Watch create = %v, %v; want created", wr, err)
	}
	wcancel()

	// hasleader metadata without a leader
	b.mu.Lock()
	b.leader = 0
	b.mu.Unlock()
	lctx := metadata.AppendToOutgoingContext(ctx, "hasleader", "true")
	_, err = kv.Range(lctx, &pb.RangeRequest{Key: []byte("a")})
	wantStatus(t, "Range requiring a leader", err, ErrGRPCNoLeader)
	if _, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("a"), Serializable: true}); err != nil {
		t.Fatalf("Range without hasleader: %v", err)
	}

	// learners serve only Status and serializable Range
	b.mu.Lock()
	b.leader, b.learner = 1, true
	b.mu.Unlock()
	_, err = kv.Put(ctx, &pb.PutRequest{Key: []byte("a")})
	wantStatus(t, "Put on learner", err, ErrGRPCNotSupportedForLearner)
	if _, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("a"), Serializable: true}); err != nil {
		t.Fatalf("serializable Range on learner: %v", err)
	}
	if st, err := mc.Status(ctx, &pb.StatusRequest{}); err != nil || !st.IsLearner {
		t.Fatalf("Status on learner = %v, %v", st, err)
	}

	if err := stop(); err != nil {
		t.Fatalf("ServeClient returned %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("port still accepting after shutdown")
	}
}

// A request larger than max-request-bytes + 512 KiB is refused by grpc-go itself.
func TestGRPCRecvLimit(t *testing.T) {
	b := newFakeBackend()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := NewGRPCServer(b, GRPCConfig{MaxRequestBytes: 1024}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeClient(ctx, l, ClientPort{GRPC: gs, HTTP: http.NotFoundHandler()}) }()
	defer func() { cancel(); <-done }()

	cc := dial(t, l.Addr().String())
	kv := pb.NewKVClient(cc)
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	if _, err := kv.Put(cctx, &pb.PutRequest{Key: []byte("a"), Value: make([]byte, 512*1024)}); err != nil {
		t.Fatalf("Put under the limit: %v", err)
	}
	_, err = kv.Put(cctx, &pb.PutRequest{Key: []byte("a"), Value: make([]byte, 512*1024+2048)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("Put over the limit = %v; want ResourceExhausted", err)
	}
}

// Shutting down with a connection that never sends anything must not hang.
func TestServeClientShutdownWithIdleConn(t *testing.T) {
	b := newFakeBackend()
	addr, stop := startClientPort(t, b)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// and one keep-alive HTTP/1.1 connection
	resp, err := http.Get("http://" + addr + "/livez")
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
}

// TestServeClientTLS: on a TLS port a gRPC client (ALPN h2 only) reaches gRPC and an
// HTTP client (offering http/1.1, with or without h2) the HTTP endpoints; an HTTP-only
// port answers HTTP and refuses gRPC.
func TestServeClientTLS(t *testing.T) {
	info, err := tlsutil.SelfCert(nil, filepath.Join(t.TempDir(), "fixtures"), []string{"127.0.0.1:0"}, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	serve := func(alpn func([]string) []string, gs *grpc.Server, hh http.Handler) string {
		in := info
		in.NextProtos = alpn
		cfg, err := in.ServerConfig()
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- ServeClient(ctx, l, ClientPort{TLS: cfg, GRPC: gs, HTTP: hh}) }()
		t.Cleanup(func() { cancel(); <-done })
		return l.Addr().String()
	}
	b := newFakeBackend()
	hh := NewHTTPHandler(b, prometheus.NewRegistry(), false, nil)
	both := serve(ClientNextProtos, NewGRPCServer(b, GRPCConfig{MaxTxnOps: 4}, nil), hh)
	httpOnly := serve(HTTPNextProtos, nil, hh)

	tc := &tls.Config{InsecureSkipVerify: true}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc, err := grpc.NewClient(both, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if hr, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC over TLS: %v %v", hr, err)
	}
	for _, h2 := range []bool{false, true} {
		for _, addr := range []string{both, httpOnly} {
			hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc.Clone(), ForceAttemptHTTP2: h2}}
			resp, err := hc.Get("https://" + addr + "/health")
			if err != nil {
				t.Fatalf("GET /health on %s (h2 offered %v): %v", addr, h2, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.ProtoMajor != 1 || string(body) != `{"health":"true","reason":""}` {
				t.Fatalf("GET /health on %s (h2 offered %v) = %s %d %q", addr, h2, resp.Proto, resp.StatusCode, body)
			}
			hc.CloseIdleConnections()
		}
	}
	cc2, err := grpc.NewClient(httpOnly, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc2.Close()
	sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
	defer scancel()
	if _, err := healthpb.NewHealthClient(cc2).Check(sctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Fatal("gRPC answered on an HTTP-only port")
	}
}

// On a TLS port serving gRPC and HTTP, a client that speaks only HTTP/2 gets the HTTP
// endpoints over HTTP/2 (as from etcd), several requests on one connection included,
// while gRPC clients keep getting gRPC, also one that connects and stays idle past the
// sniffing window before its first call.
func TestServeClientTLSHTTP2(t *testing.T) {
	defer func(w time.Duration) { h2SniffWindow = w }(h2SniffWindow)
	h2SniffWindow = 200 * time.Millisecond
	info, err := tlsutil.SelfCert(nil, filepath.Join(t.TempDir(), "fixtures"), []string{"127.0.0.1:0"}, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	info.NextProtos = ClientNextProtos
	cfg, err := info.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBackend()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ServeClient(ctx, l, ClientPort{TLS: cfg, GRPC: NewGRPCServer(b, GRPCConfig{MaxTxnOps: 4}, nil),
			HTTP: NewHTTPHandler(b, prometheus.NewRegistry(), false, nil)})
	}()
	defer func() { cancel(); <-done }()
	addr := l.Addr().String()
	tc := &tls.Config{InsecureSkipVerify: true}

	var protos http.Protocols
	protos.SetHTTP2(true) // offers only h2, as gRPC clients do
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc.Clone(), Protocols: &protos}}
	defer hc.CloseIdleConnections()
	var conns int
	for i, path := range []string{"/health", "/version", "/health"} {
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+path, nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(ci httptrace.GotConnInfo) {
				if !ci.Reused {
					conns++
				}
			}}))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("request %d, GET %s over HTTP/2: %v", i, path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("GET %s over HTTP/2 = %s %d %q %q", path, resp.Proto, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		if path == "/health" && string(body) != `{"health":"true","reason":""}` {
			t.Fatalf("GET /health over HTTP/2: %q", body)
		}
		time.Sleep(50 * time.Millisecond) // the client's settings acknowledgement goes meanwhile
	}
	if conns != 1 {
		t.Fatalf("three requests took %d connections, want 1 (the HTTP/2 server hung up)", conns)
	}

	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cc.Connect()
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
		if !cc.WaitForStateChange(cctx, s) {
			t.Fatalf("gRPC connection not ready: %v", s)
		}
	}
	time.Sleep(2 * h2SniffWindow) // idle past the window: the connection went to gRPC
	if hr, err := healthpb.NewHealthClient(cc).Check(cctx, &healthpb.HealthCheckRequest{}); err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC over TLS after an idle start: %v %v", hr, err)
	}
	cc2, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc2.Close()
	if _, err := pb.NewKVClient(cc2).Range(cctx, &pb.RangeRequest{Key: []byte("k")}); err != nil {
		t.Fatalf("gRPC over TLS, a call at once: %v", err)
	}
}
