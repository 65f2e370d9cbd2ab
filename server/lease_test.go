package server

import (
	"testing"
	"time"

	"github.com/cairn-kv/cairn/lease"
	"github.com/cairn-kv/cairn/mvcc"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

func leaseRecord(t *testing.T, s *Server, id int64) (mvcc.LeaseRecord, bool) {
	t.Helper()
	recs, err := s.store.Leases()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.ID == id {
			return r, true
		}
	}
	return mvcc.LeaseRecord{}, false
}

// waitCheckpointed waits until lease id's record carries a checkpointed remaining TTL of
// at most max seconds, and returns it.
func waitCheckpointed(t *testing.T, s *Server, id, max int64) int64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if r, ok := leaseRecord(t, s, id); ok && r.RemainingTTL > 0 && r.RemainingTTL <= max {
			return r.RemainingTTL
		}
		time.Sleep(50 * time.Millisecond)
	}
	r, _ := leaseRecord(t, s, id)
	t.Fatalf("lease %x not checkpointed at <= %ds within 10s; record %+v", id, max, r)
	return 0
}

// The leader checkpoints remaining TTLs through raft; the apply persists them; a
// restarted member resumes the lease from the checkpoint, not from a full TTL; a
// keep-alive clears the checkpoint (in the record too) before it renews.
func TestLeaseCheckpointPersistsAndRestores(t *testing.T) {
	cfg := testConfig(t)
	cfg.LeaseCheckpointInterval = 200 * time.Millisecond
	s := startServer(t, cfg)
	g, err := s.LeaseGrant(ctx(t), &pb.LeaseGrantRequest{ID: 0x77, TTL: 30})
	if err != nil || g.ID != 0x77 || g.TTL != 30 {
		t.Fatalf("grant = %v, %v", g, err)
	}
	if _, err := s.Put(ctx(t), &pb.PutRequest{Key: []byte("k"), Value: []byte("v"), Lease: 0x77}); err != nil {
		t.Fatal(err)
	}
	// At least 2s of the 30 have passed by the time the record says <= 28.
	rem := waitCheckpointed(t, s, 0x77, 28)
	if l := s.lessor.Lookup(0x77); l == nil || l.RemainingTTL != rem && l.RemainingTTL != rem-1 {
		t.Fatalf("lessor after checkpoint = %+v, record %d", l, rem)
	}
	s.Stop()

	// Restart with checkpoints effectively off, so only the persisted one counts.
	cfg.LeaseCheckpointInterval = time.Hour
	s = startServer(t, cfg)
	rec, ok := leaseRecord(t, s, 0x77)
	if !ok || rec.TTL != 30 || rec.RemainingTTL <= 0 || rec.RemainingTTL > 28 {
		t.Fatalf("record after restart = %+v (found %v)", rec, ok)
	}
	waitPrimary(t, s)
	ttl, err := s.LeaseTimeToLive(ctx(t), &pb.LeaseTimeToLiveRequest{ID: 0x77, Keys: true})
	if err != nil {
		t.Fatal(err)
	}
	// Promote gives RemainingTTL plus the election timeout (100ms); TTL is truncated.
	if ttl.TTL > rec.RemainingTTL || ttl.TTL < rec.RemainingTTL-2 || ttl.GrantedTTL != 30 ||
		len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "k" {
		t.Fatalf("time-to-live after restart = %v, checkpointed %d", ttl, rec.RemainingTTL)
	}

	// A keep-alive first commits a checkpoint of 0, so the record forgets the stale
	// remaining TTL before the lease runs from its full TTL again.
	got, err := s.LeaseRenew(ctx(t), 0x77)
	if err != nil || got != 30 {
		t.Fatalf("renew = %d, %v", got, err)
	}
	if r, _ := leaseRecord(t, s, 0x77); r.RemainingTTL != 0 {
		t.Fatalf("record after renew = %+v, want no remaining TTL", r)
	}
	if l := s.lessor.Lookup(0x77); l.RemainingTTL != 0 || l.Remaining(time.Now()) < 29*time.Second {
		t.Fatalf("lessor after renew = %+v, remaining %v", l, l.Remaining(time.Now()))
	}
	s.Stop()
	s = startServer(t, cfg)
	waitPrimary(t, s)
	if ttl, err := s.LeaseTimeToLive(ctx(t), &pb.LeaseTimeToLiveRequest{ID: 0x77}); err != nil || ttl.TTL < 29 {
		t.Fatalf("time-to-live after renew and restart = %v, %v", ttl, err)
	}
}

// A checkpoint naming a lease revoked since it was proposed is skipped; the others in
// the batch apply; values at or above the TTL (or <= 0) clear the remaining TTL.
func TestLeaseCheckpointApply(t *testing.T) {
	cfg := testConfig(t)
	cfg.LeaseCheckpointInterval = -1 // only the checkpoints proposed here
	s := startServer(t, cfg)
	waitPrimary(t, s)
	for _, id := range []int64{1, 2, 3} {
		if _, err := s.LeaseGrant(ctx(t), &pb.LeaseGrantRequest{ID: id, TTL: 100}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.LeaseRevoke(ctx(t), &pb.LeaseRevokeRequest{ID: 3}); err != nil {
		t.Fatal(err)
	}
	res, err := s.propose(ctx(t), &pb.InternalRaftRequest{LeaseCheckpoint: &pb.LeaseCheckpointRequest{
		Checkpoints: []*pb.LeaseCheckpoint{{ID: 3, Remaining_TTL: 10}, {ID: 1, Remaining_TTL: 40}, {ID: 2, Remaining_TTL: 100}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.resp.(*pb.LeaseCheckpointResponse); !ok {
		t.Fatalf("response %T", res.resp)
	}
	want := map[int64]int64{1: 40, 2: 0}
	for id, rem := range want {
		if r, ok := leaseRecord(t, s, id); !ok || r.TTL != 100 || r.RemainingTTL != rem {
			t.Errorf("record %d = %+v, want remaining %d", id, r, rem)
		}
		if l := s.lessor.Lookup(lease.LeaseID(id)); l.RemainingTTL != rem {
			t.Errorf("lessor %d = %+v, want remaining %d", id, l, rem)
		}
	}
	if _, ok := leaseRecord(t, s, 3); ok || s.lessor.Lookup(3) != nil {
		t.Error("checkpoint brought back a revoked lease")
	}
	// The leader's own expiry is not moved by an applied checkpoint (etcd's rule).
	if l := s.lessor.Lookup(1); l.Remaining(time.Now()) < 90*time.Second {
		t.Errorf("leader expiry moved by checkpoint: %v left", l.Remaining(time.Now()))
	}
	// Checkpoints are off: nothing else was proposed, nothing else is due.
	if ttl, err := s.LeaseTimeToLive(ctx(t), &pb.LeaseTimeToLiveRequest{ID: 3}); err == nil {
		t.Errorf("time-to-live of revoked lease = %v", ttl)
	}
}

func waitPrimary(t *testing.T, s *Server) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !s.lessor.IsPrimary() {
		if time.Now().After(deadline) {
			t.Fatal("lessor not primary 5s after start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
