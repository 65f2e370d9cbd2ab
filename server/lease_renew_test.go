package server

import (
	"errors"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/lease"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// TestLeaseRenewNeedsConfirmedLeadership: a leader whose Ready loop is frozen (a stalled
// disk) still believes it leads, but renews no lease: keep-alives it receives wait for a
// quorum's confirmation that never comes and fail, with etcd's lease.ErrNotPrimary once
// the request timeout passed, while the others elect a new leader. After the thaw the
// old leader forwards keep-alives to the new one.
func TestLeaseRenewNeedsConfirmedLeadership(t *testing.T) {
	ms := startTestCluster(t, 3)
	leader, followers := waitLeader(t, ms)
	g, err := leader.s.LeaseGrant(ctx(t), &pb.LeaseGrantRequest{TTL: 30})
	if err != nil {
		t.Fatal(err)
	}
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
	for i := 0; i < 20 && time.Since(frozenAt) < 2*time.Second; i++ {
		if leader.s.Leader() != leader.s.ID() {
			t.Fatalf("the frozen leader learned of a new leader: the test freezes nothing")
		}
		ttl, err := leader.s.LeaseRenew(boundedCtx(t, 200*time.Millisecond), g.ID)
		if err == nil {
			t.Fatalf("keep-alive %d, %v after the freeze: renewed on a leader that cannot confirm it leads (TTL %d)",
				i+1, time.Since(frozenAt).Round(time.Millisecond), ttl)
		}
		refused++
	}
	begin := time.Now()
	_, err = leader.s.LeaseRenew(boundedCtx(t, 10*time.Second), g.ID)
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
