package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/lease"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/peerpb"
	"github.com/cairn-kv/cairn/raftnode"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// clusterMember is one in-process member of a test cluster, serving its peer listener.
type clusterMember struct {
	s       *Server
	gs      *grpc.Server
	peerURL string
}

// stop stops the member and its peer listener; safe to call twice.
func (m *clusterMember) stop() {
	m.s.Stop()
	m.gs.Stop()
}

// startTestCluster starts n members that find each other through their peer listeners
// (raft and lease forwarding both go over them) and waits until all are ready. opts
// change every member's Config.
func startTestCluster(t *testing.T, n int, opts ...func(*Config)) []*clusterMember {
	t.Helper()
	ls := make([]net.Listener, n)
	initial := map[string][]url.URL{}
	for i := range ls {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls[i] = l
		initial[fmt.Sprintf("m%d", i+1)] = []url.URL{{Scheme: "http", Host: l.Addr().String()}}
	}
	ms := make([]*clusterMember, n)
	for i, l := range ls {
		name := fmt.Sprintf("m%d", i+1)
		cfg := Config{
			Name:              name,
			DataDir:           t.TempDir(),
			ListenPeerURLs:    initial[name],
			AdvertisePeerURLs: initial[name],
			InitialCluster:    initial,
			HeartbeatInterval: 20 * time.Millisecond,
			ElectionTimeout:   200 * time.Millisecond,
			Logger:            zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel)).Named(name),
		}
		for _, o := range opts {
			o(&cfg)
		}
		s, err := New(cfg)
		if err != nil {
			t.Fatalf("New %s: %v", name, err)
		}
		gs := grpc.NewServer(raftnode.PeerServerOption())
		s.RegisterPeerService(gs)
		go func() { _ = gs.Serve(l) }()
		m := &clusterMember{s: s, gs: gs, peerURL: initial[name][0].String()}
		t.Cleanup(m.stop)
		ms[i] = m
	}
	for _, m := range ms {
		select {
		case <-m.s.ReadyNotify():
		case <-time.After(20 * time.Second):
			t.Fatalf("member %x not ready after 20s", m.s.ID())
		}
	}
	return ms
}

// waitLeader waits (bounded) until every running member names the same leader among
// them, and returns it and the others.
func waitLeader(t *testing.T, ms []*clusterMember) (leader *clusterMember, followers []*clusterMember) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 1000; i++ {
		leader, followers = nil, nil
		id := ms[0].s.Leader()
		agree := id != 0
		for _, m := range ms {
			if m.s.Leader() != id {
				agree = false
			}
			if m.s.ID() == id {
				leader = m
			} else {
				followers = append(followers, m)
			}
		}
		if agree && leader != nil {
			return leader, followers
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("members do not agree on a leader within 10s")
	return nil, nil
}

func boundedCtx(t *testing.T, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

// TestLeaseForwardFollower: keep-alives and time-to-live queries a follower receives
// are answered by the leader's lessor, well within the request timeout, with the
// leader's not-found; the peer service refuses another cluster, a non-member, its own id and, on a follower,
// answers a retryable Unavailable; after the leader stops, keep-alives reach the next
// one; stopping a member closes its cached connections.
func TestLeaseForwardFollower(t *testing.T) {
	ms := startTestCluster(t, 3)
	leader, followers := waitLeader(t, ms)
	f := followers[0]

	g, err := f.s.LeaseGrant(ctx(t), &pb.LeaseGrantRequest{TTL: 5})
	if err != nil {
		t.Fatalf("grant through follower: %v", err)
	}
	if _, err := f.s.Put(ctx(t), &pb.PutRequest{Key: []byte("fwd/k"), Value: []byte("v"), Lease: g.ID}); err != nil {
		t.Fatalf("put with lease through follower: %v", err)
	}

	// Without forwarding a follower's renewal waits for its own lessor to become
	// primary, i.e. until the request timeout (5.4s here): 3s is ample for the leader.
	begin := time.Now()
	ttl, err := f.s.LeaseRenew(boundedCtx(t, 3*time.Second), g.ID)
	if err != nil || ttl != 5 {
		t.Fatalf("renew through follower = %d, %v; want 5, nil", ttl, err)
	}
	t.Logf("renew through follower took %v", time.Since(begin))
	if _, err := f.s.LeaseRenew(boundedCtx(t, 3*time.Second), g.ID+1); !errors.Is(err, lease.ErrLeaseNotFound) {
		t.Fatalf("renew of unknown lease through follower: %v, want %v", err, lease.ErrLeaseNotFound)
	}

	// The follower's own lessor has no expiry and would say 5 until the lease is gone;
	// the leader's counts down from the renewal.
	time.Sleep(1500 * time.Millisecond)
	tl, err := f.s.LeaseTimeToLive(boundedCtx(t, 3*time.Second), &pb.LeaseTimeToLiveRequest{ID: g.ID, Keys: true})
	if err != nil {
		t.Fatalf("time-to-live through follower: %v", err)
	}
	lt, err := leader.s.LeaseTimeToLive(ctx(t), &pb.LeaseTimeToLiveRequest{ID: g.ID})
	if err != nil {
		t.Fatalf("time-to-live on leader: %v", err)
	}
	if tl.TTL < 1 || tl.TTL > 3 || tl.GrantedTTL != 5 || len(tl.Keys) != 1 || string(tl.Keys[0]) != "fwd/k" {
		t.Fatalf("time-to-live through follower 1.5s after renewal = %v; want TTL in [1,3], granted 5, keys [fwd/k]", tl)
	}
	if d := tl.TTL - lt.TTL; d < 0 || d > 1 {
		t.Fatalf("time-to-live through follower %d, then on leader %d", tl.TTL, lt.TTL)
	}
	if _, err := f.s.LeaseTimeToLive(boundedCtx(t, 3*time.Second), &pb.LeaseTimeToLiveRequest{ID: g.ID + 1}); !errors.Is(err, lease.ErrLeaseNotFound) {
		t.Fatalf("time-to-live of unknown lease through follower: %v, want %v", err, lease.ErrLeaseNotFound)
	}

	// The peer service itself.
	call := func(m *clusterMember, clusterID, from uint64) error {
		cc, err := grpc.NewClient(raftnode.DialTarget(m.peerURL), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		_, err = peerpb.NewLeaseForwardClient(cc).Renew(boundedCtx(t, 3*time.Second),
			&peerpb.LeaseRenewRequest{ClusterId: clusterID, From: from, Request: &pb.LeaseKeepAliveRequest{ID: g.ID}})
		return err
	}
	member := f.s.ID()
	if err := call(leader, leader.s.ClusterID()+1, member); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("renew from another cluster: %v, want FailedPrecondition", err)
	}
	if err := call(leader, leader.s.ClusterID(), 0x7777); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("renew from a non-member: %v, want PermissionDenied", err)
	}
	if err := call(leader, leader.s.ClusterID(), leader.s.ID()); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("renew claiming the receiver's own id: %v, want PermissionDenied", err)
	}
	if err := call(leader, leader.s.ClusterID(), member); err != nil {
		t.Fatalf("renew on the leader's peer service: %v", err)
	}
	if err := call(followers[1], leader.s.ClusterID(), member); status.Code(err) != codes.Unavailable {
		t.Fatalf("renew on a follower's peer service: %v, want Unavailable", err)
	}

	// The leader goes away: the follower's keep-alives go to the next leader (or, if
	// it is elected itself, to its own lessor once promoted).
	leader.stop()
	begin = time.Now()
	ttl, err = f.s.LeaseRenew(boundedCtx(t, 10*time.Second), g.ID)
	if err != nil || ttl != 5 {
		t.Fatalf("renew through follower after the leader stopped = %d, %v; want 5, nil", ttl, err)
	}
	t.Logf("renew after the leader stopped took %v (new leader %x)", time.Since(begin), f.s.Leader())

	// Stop closes the cached connections and refuses new ones.
	fwd := f.s.leaseFwd
	f.stop()
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		fwd.mu.Lock()
		stopped, open := fwd.stopped, len(fwd.conns)
		fwd.mu.Unlock()
		if stopped && open == 0 {
			break
		}
		if time.Now().After(deadline) || i > 500 {
			t.Fatalf("after Stop: forwarder stopped=%v with %d connections", stopped, open)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
