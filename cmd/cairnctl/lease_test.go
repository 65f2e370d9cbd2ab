package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// fakeLease grants, renews and revokes leases in a map.
type fakeLease struct {
	pb.UnimplementedLeaseServer
	mu     sync.Mutex
	leases map[int64]int64 // id -> TTL
	nextID int64

	grants, revokes, keepAlives, streams atomic.Int64
	forgetEvery                          int64 // if > 0, every forgetEvery-th keep-alive answers TTL 0
}

func newFakeLease() *fakeLease { return &fakeLease{leases: map[int64]int64{}, nextID: 1000} }

func (f *fakeLease) LeaseGrant(_ context.Context, req *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	f.grants.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	f.leases[f.nextID] = req.TTL
	return &pb.LeaseGrantResponse{ID: f.nextID, TTL: req.TTL}, nil
}

func (f *fakeLease) LeaseRevoke(_ context.Context, req *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	f.revokes.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.leases[req.ID]; !ok {
		return nil, status.Error(codes.NotFound, "requested lease not found")
	}
	delete(f.leases, req.ID)
	return &pb.LeaseRevokeResponse{}, nil
}

func (f *fakeLease) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	f.streams.Add(1)
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		n := f.keepAlives.Add(1)
		f.mu.Lock()
		ttl := f.leases[req.ID]
		f.mu.Unlock()
		if f.forgetEvery > 0 && n%f.forgetEvery == 0 {
			ttl = 0
		}
		if err := stream.Send(&pb.LeaseKeepAliveResponse{ID: req.ID, TTL: ttl}); err != nil {
			return err
		}
	}
}

func (f *fakeLease) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.leases)
}

func TestBenchLeaseKeepAlive(t *testing.T) {
	fl := newFakeLease()
	addr, lis := startServer(t, &mapKV{}, nil, fl)
	r := runJSON(t, exitOK, "bench", "lease-keepalive", "--endpoints", addr, "--leases", "7", "--clients", "3",
		"--conns", "2", "--total", "200", "--workload", "lease", "--target", "t")
	checkSane(t, r, 200)
	if r.Op != "lease-keepalive" || r.Leases != 7 || r.Clients != 3 || r.Conns != 2 || r.Workload != "lease" {
		t.Errorf("labels not recorded: %+v", r)
	}
	if g, k, s := fl.grants.Load(), fl.keepAlives.Load(), fl.streams.Load(); g != 7 || k != 200 || s != 3 {
		t.Errorf("server saw %d grants, %d keep-alives on %d streams; want 7, 200, 3", g, k, s)
	}
	if rv, left := fl.revokes.Load(), fl.count(); rv != 7 || left != 0 {
		t.Errorf("server saw %d revokes and holds %d leases; want 7 and 0", rv, left)
	}
	if got := lis.accepted.Load(); got != 2 {
		t.Errorf("server accepted %d connections, want 2", got)
	}
}

func TestBenchLeaseKeepAliveCountsErrors(t *testing.T) {
	fl := newFakeLease()
	fl.forgetEvery = 5
	addr, _ := startServer(t, &mapKV{}, nil, fl)
	r := runJSON(t, exitFail, "bench", "lease-keepalive", "--endpoints", addr, "--leases", "3", "--clients", "2", "--total", "100")
	if r.Total != 100 || r.OK != 80 || r.Errors != 20 {
		t.Fatalf("total/ok/errors = %d/%d/%d, want 100/80/20 (%v)", r.Total, r.OK, r.Errors, r.ErrorsByMessage)
	}
	for m := range r.ErrorsByMessage {
		if !strings.Contains(m, "lease not found") {
			t.Errorf("unexpected error %q", m)
		}
	}
	if left := fl.count(); left != 0 {
		t.Errorf("%d leases left after the run", left)
	}
}

func TestNewOpsCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		code       int
		out, error string
	}{
		{[]string{"bench", "--help"}, exitOK, "lease-keepalive", ""},
		{[]string{"bench", "watch", "--help"}, exitOK, "-put-clients", ""},
		{[]string{"bench", "watch", "--help"}, exitOK, "-idle-timeout", ""},
		{[]string{"bench", "lease-keepalive", "--help"}, exitOK, "-leases", ""},
		{[]string{"bench", "watch", "--clients", "3"}, exitUsage, "", "-clients"},
		{[]string{"bench", "watch", "--put-clients", "0"}, exitUsage, "", "--put-clients must be >= 1"},
		{[]string{"bench", "watch", "--watchers", "0"}, exitUsage, "", "--watchers"},
		{[]string{"bench", "watch", "--watchers", "5", "--streams", "6"}, exitUsage, "", "--streams 6 exceeds --watchers 5"},
		{[]string{"bench", "watch", "--streams", "2", "--conns", "3"}, exitUsage, "", "--conns 3 exceeds --streams 2"},
		{[]string{"bench", "watch", "--watchers", "5", "--streams", "5", "--key-space-size", "6"}, exitUsage, "", "--key-space-size 6 exceeds"},
		{[]string{"bench", "watch", "--key-size", "1", "--key-space-size", "11", "--watchers", "20"}, exitUsage, "", "needs keys of 2 bytes"},
		{[]string{"bench", "watch", "--idle-timeout", "0s"}, exitUsage, "", "--idle-timeout"},
		{[]string{"bench", "lease-keepalive", "--leases", "0"}, exitUsage, "", "--leases"},
		{[]string{"bench", "lease-keepalive", "--lease-ttl", "0"}, exitUsage, "", "--lease-ttl"},
		{[]string{"bench", "lease-keepalive", "--val-size", "3"}, exitUsage, "", "-val-size"},
		{[]string{"bench", "lease-keepalive", "--clients", "0"}, exitUsage, "", "--clients must be >= 1"},
	} {
		var out, errb strings.Builder
		code := run(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errb.String(), tc.error) {
			t.Errorf("cairnctl %q: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				tc.args, code, out.String(), errb.String(), tc.code, tc.out, tc.error)
		}
	}
	// Defaults as documented.
	cfg, code := parseBenchFlags("watch", nil, io.Discard, io.Discard)
	if cfg == nil || cfg.watchers != 1000 || cfg.streams != 10 || cfg.total != 1000 || cfg.clients != 1 || cfg.keySpace != 1 || !cfg.sequential {
		t.Errorf("watch defaults: %+v (code %d)", cfg, code)
	}
	cfg, code = parseBenchFlags("lease-keepalive", nil, io.Discard, io.Discard)
	if cfg == nil || cfg.leases != 100 || cfg.leaseTTL != 60 || cfg.clients != 1 {
		t.Errorf("lease-keepalive defaults: %+v (code %d)", cfg, code)
	}
}
