package server

import (
	"errors"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/lease"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// TestLeaseRenewNeedsConfirmedLeadership: a leader whose Ready loop is frozen (a stalled
// disk) still believes it leads, but renews no lease once its last confirmation is an
// election timeout old: keep-alives it receives wait for a quorum's confirmation that
// never comes and fail, with etcd's lease.ErrNotPrimary once the request timeout passed,
// while the others elect a new leader. After the thaw the old leader forwards
// keep-alives to the new one.
func TestLeaseRenewNeedsConfirmedLeadership(t *testing.T) {
	ms, leader, followers, g := leaseOnLeader(t, 30)
	if ttl, err := leader.s.LeaseRenew(boundedCtx(t, 3*time.Second), g.ID); err != nil || ttl != 30 {
		t.Fatalf("renew on the healthy leader = %d, %v; want 30, nil", ttl, err)
	}

	leader.s.node.FreezeReadyLoop(time.Minute)
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			leader.s.node.FreezeReadyLoop(0)
		}
	}
	t.Cleanup(thaw)
	frozenAt := time.Now()
	var refused int
	for i := 0; i < 200 && refused < 5 && time.Since(frozenAt) < 2*time.Second; i++ {
		if leader.s.Leader() != leader.s.ID() {
			t.Fatalf("the frozen leader learned of a new leader: the test freezes nothing")
		}
		// A confirmation from before the freeze may serve a renewal until an election
		// timeout after it began: a renewal asked for later than that must fail.
		askedAt := time.Since(frozenAt)
		ttl, err := leader.s.LeaseRenew(boundedCtx(t, 200*time.Millisecond), g.ID)
		if err == nil && askedAt > leader.s.cfg.ElectionTimeout {
			t.Fatalf("keep-alive %d, asked %v after the freeze: renewed on a leader that cannot confirm it leads (TTL %d)",
				i+1, askedAt.Round(time.Millisecond), ttl)
		}
		if err != nil {
			refused++
		}
		time.Sleep(5 * time.Millisecond)
	}
	if refused < 5 {
		t.Fatalf("%d keep-alives refused in the freeze's first 2s; want 5", refused)
	}
	begin := time.Now()
	_, err := leader.s.LeaseRenew(boundedCtx(t, 10*time.Second), g.ID)
	if !errors.Is(err, lease.ErrNotPrimary) || err.Error() != lease.ErrNotPrimary.Error() {
		t.Fatalf("keep-alive on the frozen leader with time to spare: %v, want %q", err, lease.ErrNotPrimary)
	}
	t.Logf("%d short keep-alives refused; one with time to spare refused after %v: %v", refused,
		time.Since(begin).Round(time.Millisecond), err)

	newLeader := followers[0].s.Leader()
	if newLeader == 0 || newLeader == leader.s.ID() || followers[1].s.Leader() != newLeader {
		t.Fatalf("followers name leaders %x and %x; want a new one", newLeader, followers[1].s.Leader())
	}
	thaw()
	waitLeader(t, ms)
	if ttl, err := leader.s.LeaseRenew(boundedCtx(t, 5*time.Second), g.ID); err != nil || ttl != 30 {
		t.Fatalf("renew through the old leader after the thaw = %d, %v; want 30, nil", ttl, err)
	}
}

// TestLeaseRenewReusesRecentConfirmation: keep-alives in a row share the leader's last
// ReadIndex round while it began less than half an election timeout ago, rather than
// running one each; an older one, or a lease the leader does not know, takes a new round.
func TestLeaseRenewReusesRecentConfirmation(t *testing.T) {
	_, leader, _, g := leaseOnLeader(t, 30)
	renew := func(id int64) (int64, error) { return leader.s.LeaseRenew(boundedCtx(t, 3*time.Second), id) }
	rounds := func() uint64 { return leader.s.reads.nextID.Load() }

	const keepAlives = 100
	before, began := rounds(), time.Now()
	for i := 0; i < keepAlives; i++ {
		if ttl, err := renew(g.ID); err != nil || ttl != 30 {
			t.Fatalf("keep-alive %d = %d, %v; want 30, nil", i+1, ttl, err)
		}
	}
	// One round per half election timeout at most, and the first keep-alive's own.
	took := time.Since(began)
	if n, most := rounds()-before, uint64(took/(leader.s.cfg.ElectionTimeout/2))+2; n > most {
		t.Fatalf("%d keep-alives in %v took %d ReadIndex rounds; want at most %d", keepAlives, took, n, most)
	}

	time.Sleep(leader.s.cfg.ElectionTimeout)
	before = rounds()
	if ttl, err := renew(g.ID); err != nil || ttl != 30 {
		t.Fatalf("keep-alive after an election timeout = %d, %v; want 30, nil", ttl, err)
	}
	if rounds() == before {
		t.Fatal("a keep-alive an election timeout after the last round took no round of its own")
	}

	if _, err := renew(g.ID); err != nil {
		t.Fatal(err)
	}
	before = rounds()
	if _, err := renew(g.ID + 1); !errors.Is(err, lease.ErrLeaseNotFound) {
		t.Fatalf("keep-alive of an unknown lease: %v, want %v", err, lease.ErrLeaseNotFound)
	}
	if rounds() == before {
		t.Fatal("an unknown lease was answered from a reused round, without waiting for what is committed to be applied")
	}
}

// TestLeaseRevokeNeedsConfirmedLeadership (etcd issue 15247): a leader whose Ready loop
// is frozen renews nothing, so its lessor finds the lease expired, while the new leader
// keeps it alive. The old leader must not revoke it: neither during the freeze (its
// proposal would reach the new leader at the thaw) nor after.
func TestLeaseRevokeNeedsConfirmedLeadership(t *testing.T) {
	ms, old, followers, g := leaseOnLeader(t, 2)
	if _, err := old.s.Put(ctx(t), &pb.PutRequest{Key: []byte("held"), Value: []byte("v"), Lease: g.ID}); err != nil {
		t.Fatal(err)
	}
	old.s.node.FreezeReadyLoop(time.Minute)
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			old.s.node.FreezeReadyLoop(0)
		}
	}
	t.Cleanup(thaw)
	frozenAt := time.Now()

	// Keep the lease alive through a follower (which forwards to whoever leads) for 4 s
	// of freeze, twice the TTL the frozen lessor counts down, then 4 s after the thaw.
	keep := func(d time.Duration, what string) {
		t.Helper()
		until := time.Now().Add(d)
		for i := 0; i < 100 && time.Now().Before(until); i++ {
			if ttl, err := followers[0].s.LeaseRenew(boundedCtx(t, 5*time.Second), g.ID); err != nil || ttl != 2 {
				t.Fatalf("%s, %v after the freeze: renew through a follower = %d, %v",
					what, time.Since(frozenAt).Round(time.Millisecond), ttl, err)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	keep(4*time.Second, "during the freeze")
	if l := followers[0].s.Leader(); l == old.s.ID() || l == 0 {
		t.Fatalf("no new leader during the freeze (followers follow %x)", l)
	}
	thaw()
	keep(4*time.Second, "after the thaw")
	waitLeader(t, ms)
	if kv := mustGet(t, followers[1].s, "held"); kv == nil {
		t.Fatal("the lease's key is gone")
	}
}

// leaseOnLeader starts a 3-member cluster and grants a lease of ttl seconds on its leader.
func leaseOnLeader(t *testing.T, ttl int64) (ms []*clusterMember, leader *clusterMember, followers []*clusterMember, g *pb.LeaseGrantResponse) {
	t.Helper()
	ms = startTestCluster(t, 3)
	leader, followers = waitLeader(t, ms)
	g, err := leader.s.LeaseGrant(ctx(t), &pb.LeaseGrantRequest{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return ms, leader, followers, g
}
