package lease

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTest(minTTL int64) (*Lessor, *fakeClock) {
	c := newClock()
	return New(Config{MinTTL: minTTL, Now: c.Now}), c
}

func mustGrant(t *testing.T, le *Lessor, id LeaseID, ttl int64) *Lease {
	t.Helper()
	l, err := le.Grant(id, ttl)
	if err != nil {
		t.Fatalf("Grant(%d, %d): %v", id, ttl, err)
	}
	return l
}

func TestGrant(t *testing.T) {
	le, _ := newTest(5)
	l := mustGrant(t, le, 1, 10)
	if l.ID != 1 || l.TTL != 10 || l.RemainingTTL != 0 {
		t.Fatalf("granted %+v", l)
	}
	if _, err := le.Grant(1, 10); !errors.Is(err, ErrLeaseExists) {
		t.Fatalf("duplicate grant: %v", err)
	}
	if l := mustGrant(t, le, 2, 1); l.TTL != 5 {
		t.Fatalf("min TTL: got %d, want 5", l.TTL)
	}
	if l := mustGrant(t, le, 3, -7); l.TTL != 5 {
		t.Fatalf("negative TTL: got %d, want 5", l.TTL)
	}
	if _, err := le.Grant(4, MaxLeaseTTL+1); !errors.Is(err, ErrLeaseTTLTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	if l := mustGrant(t, le, 4, MaxLeaseTTL); l.TTL != MaxLeaseTTL {
		t.Fatalf("max TTL: %d", l.TTL)
	}
	if _, err := le.Grant(NoLease, 10); err == nil {
		t.Fatal("grant of NoLease succeeded")
	}
	if got := le.Lookup(2); got == nil || got.TTL != 5 {
		t.Fatalf("Lookup(2) = %+v", got)
	}
	if le.Lookup(99) != nil {
		t.Fatal("Lookup of missing lease not nil")
	}
	var ids []LeaseID
	for _, l := range le.Leases() {
		ids = append(ids, l.ID)
	}
	if !reflect.DeepEqual(ids, []LeaseID{1, 2, 3, 4}) {
		t.Fatalf("Leases IDs = %v", ids)
	}
	// Not primary: Remaining is the granted TTL.
	if r := le.Lookup(1).Remaining(time.Now()); r != 10*time.Second {
		t.Fatalf("follower Remaining = %v", r)
	}
	// A snapshot is not a live view.
	l.TTL = 1234
	if le.Lookup(1).TTL != 10 {
		t.Fatal("snapshot aliases the lessor")
	}
}

func TestAttachDetachRevoke(t *testing.T) {
	le, _ := newTest(1)
	mustGrant(t, le, 1, 10)
	mustGrant(t, le, 2, 10)
	if err := le.Attach(9, "x"); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("attach to missing lease: %v", err)
	}
	for _, k := range []string{"c", "a", "b", "d"} {
		if err := le.Attach(1, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := le.Attach(1, "a"); err != nil { // idempotent
		t.Fatal(err)
	}
	if got := le.Lookup(1).Keys(); !reflect.DeepEqual(got, []string{"a", "b", "c", "d"}) {
		t.Fatalf("keys = %v", got)
	}
	le.Detach(1, "b")
	le.Detach(1, "nope")
	le.Detach(9, "a") // missing lease: no-op
	le.Detach(2, "a") // attached elsewhere: no-op
	// Moving a key to another lease detaches it from the first.
	if err := le.Attach(2, "d"); err != nil {
		t.Fatal(err)
	}
	if got := le.LeaseOf("d"); got != 2 {
		t.Fatalf("LeaseOf(d) = %d", got)
	}
	if got := le.LeaseOf("b"); got != NoLease {
		t.Fatalf("LeaseOf(b) = %d", got)
	}
	keys, err := le.Revoke(1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(keys, []string{"a", "c"}) {
		t.Fatalf("revoked keys = %v", keys)
	}
	if le.Lookup(1) != nil {
		t.Fatal("lease still there after revoke")
	}
	if le.LeaseOf("a") != NoLease {
		t.Fatal("revoked key still owned")
	}
	if _, err := le.Revoke(1); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
	if keys, _ := le.Revoke(2); !reflect.DeepEqual(keys, []string{"d"}) {
		t.Fatalf("lease 2 keys = %v", keys)
	}
	if got := le.Leases(); len(got) != 0 {
		t.Fatalf("leases left: %v", got)
	}
}

func TestRenewOnlyPrimary(t *testing.T) {
	le, c := newTest(1)
	mustGrant(t, le, 1, 10)
	if _, err := le.Renew(1); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("renew on follower: %v", err)
	}
	le.Promote(0)
	if !le.IsPrimary() {
		t.Fatal("not primary after Promote")
	}
	if _, err := le.Renew(2); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("renew missing: %v", err)
	}
	c.Advance(7 * time.Second)
	if r := le.Lookup(1).Remaining(c.Now()); r != 3*time.Second {
		t.Fatalf("remaining before renew = %v", r)
	}
	ttl, err := le.Renew(1)
	if err != nil || ttl != 10 {
		t.Fatalf("Renew = %d, %v", ttl, err)
	}
	if r := le.Lookup(1).Remaining(c.Now()); r != 10*time.Second {
		t.Fatalf("remaining after renew = %v", r)
	}
	// Past expiry the lease is as good as revoked.
	c.Advance(10 * time.Second)
	if _, err := le.Renew(1); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("renew of expired lease: %v", err)
	}
	le.Demote()
	if _, err := le.Renew(1); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("renew after demote: %v", err)
	}
}

func TestPromoteExpiredOrderAndRetry(t *testing.T) {
	c := newClock()
	le := New(Config{MinTTL: 1, Now: c.Now, ExpiredRetryInterval: 3 * time.Second})
	mustGrant(t, le, 1, 30)
	mustGrant(t, le, 2, 10)
	mustGrant(t, le, 3, 20)
	mustGrant(t, le, 4, 10)
	if got := le.Expired(0); got != nil {
		t.Fatalf("follower Expired = %v", got)
	}
	c.Advance(time.Hour) // followers never expire anything
	le.Promote(5 * time.Second)
	if r := le.Lookup(2).Remaining(c.Now()); r != 15*time.Second {
		t.Fatalf("remaining after Promote(5s) = %v", r)
	}
	c.Advance(14 * time.Second)
	if got := le.Expired(0); len(got) != 0 {
		t.Fatalf("Expired too early: %v", got)
	}
	c.Advance(20 * time.Second) // t=34 after promote: 2, 4 (15s) and 3 (25s) expired, 1 (35s) not
	if got := le.Expired(2); !reflect.DeepEqual(got, []LeaseID{2, 4}) {
		t.Fatalf("Expired(2) = %v", got)
	}
	if got := le.Expired(0); !reflect.DeepEqual(got, []LeaseID{3}) {
		t.Fatalf("Expired(0) = %v", got)
	}
	// Within the retry window nothing comes back.
	c.Advance(time.Second) // 1 expires now
	if got := le.Expired(0); !reflect.DeepEqual(got, []LeaseID{1}) {
		t.Fatalf("Expired = %v, want [1]", got)
	}
	c.Advance(time.Second)
	if got := le.Expired(0); len(got) != 0 {
		t.Fatalf("Expired within retry window = %v", got)
	}
	// Lease 4 got revoked meanwhile; the others come back after the window.
	if _, err := le.Revoke(4); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second) // 3s since 2, 3 were returned, 2s since 1
	if got := le.Expired(0); !reflect.DeepEqual(got, []LeaseID{2, 3}) {
		t.Fatalf("Expired after retry window = %v", got)
	}
	c.Advance(time.Second)
	if got := le.Expired(0); !reflect.DeepEqual(got, []LeaseID{1}) {
		t.Fatalf("Expired after retry window = %v", got)
	}
	// A lease granted while primary expires after its TTL.
	mustGrant(t, le, 5, 1)
	c.Advance(time.Second)
	if got := le.Expired(0); !reflect.DeepEqual(got, []LeaseID{5}) {
		t.Fatalf("Expired = %v, want [5]", got)
	}
}

func TestDemoteStopsExpiry(t *testing.T) {
	le, c := newTest(1)
	mustGrant(t, le, 1, 5)
	le.Promote(0)
	c.Advance(4 * time.Second)
	le.Demote()
	if le.IsPrimary() {
		t.Fatal("primary after Demote")
	}
	c.Advance(time.Hour)
	if got := le.Expired(0); got != nil {
		t.Fatalf("Expired after Demote = %v", got)
	}
	if got := le.CheckpointDue(time.Second, 0); got != nil {
		t.Fatalf("CheckpointDue after Demote = %v", got)
	}
	if r := le.Lookup(1).Remaining(c.Now()); r != 5*time.Second {
		t.Fatalf("follower Remaining = %v", r)
	}
	// Promoting again starts from the full TTL.
	le.Promote(0)
	c.Advance(4 * time.Second)
	if got := le.Expired(0); len(got) != 0 {
		t.Fatalf("Expired = %v", got)
	}
	c.Advance(time.Second)
	if got := le.Expired(0); !reflect.DeepEqual(got, []LeaseID{1}) {
		t.Fatalf("Expired = %v", got)
	}
}

func TestCheckpoint(t *testing.T) {
	le, c := newTest(1)
	mustGrant(t, le, 1, 600)
	mustGrant(t, le, 2, 100)
	if err := le.Checkpoint(9, 5); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("checkpoint of missing lease: %v", err)
	}
	// Follower: only RemainingTTL is recorded, and Promote starts from it.
	if err := le.Checkpoint(1, 200); err != nil {
		t.Fatal(err)
	}
	if l := le.Lookup(1); l.RemainingTTL != 200 || l.Remaining(c.Now()) != 200*time.Second {
		t.Fatalf("after checkpoint: %+v", l)
	}
	le.Promote(time.Second)
	if r := le.Lookup(1).Remaining(c.Now()); r != 201*time.Second {
		t.Fatalf("promoted remaining = %v", r)
	}
	if r := le.Lookup(2).Remaining(c.Now()); r != 101*time.Second {
		t.Fatalf("promoted remaining (no checkpoint) = %v", r)
	}
	// Nothing is due before the interval.
	if got := le.CheckpointDue(time.Minute, 0); len(got) != 0 {
		t.Fatalf("CheckpointDue early = %v", got)
	}
	c.Advance(time.Minute + 500*time.Millisecond)
	// Lease 1: 201-60.5 = 140.5s → 141; lease 2: 101-60.5 = 40.5 → 41.
	got := le.CheckpointDue(time.Minute, 0)
	want := []Checkpoint{{ID: 1, Remaining: 141}, {ID: 2, Remaining: 41}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("CheckpointDue = %v, want %v", got, want)
	}
	if got := le.CheckpointDue(time.Minute, 0); len(got) != 0 {
		t.Fatalf("CheckpointDue again = %v", got)
	}
	// Applying the checkpoint on the primary (a little later, once committed) sets
	// RemainingTTL but leaves the primary's expiry alone, as etcd does: neither the
	// commit latency nor the rounding up extends the lease.
	c.Advance(200 * time.Millisecond)
	for _, cp := range want {
		if err := le.Checkpoint(cp.ID, cp.Remaining); err != nil {
			t.Fatal(err)
		}
	}
	if l := le.Lookup(1); l.RemainingTTL != 141 || l.Remaining(c.Now()) != 140300*time.Millisecond {
		t.Fatalf("after applied checkpoint: %+v %v", l, l.Remaining(c.Now()))
	}
	// The applied checkpoint restarts the interval.
	c.Advance(time.Minute - 100*time.Millisecond)
	if got := le.CheckpointDue(time.Minute, 0); len(got) != 0 {
		t.Fatalf("CheckpointDue before the interval since the applied checkpoint = %v", got)
	}
	// Expired leases are not checkpointed.
	c.Advance(100 * time.Millisecond)
	if got := le.CheckpointDue(time.Minute, 0); !reflect.DeepEqual(got, []Checkpoint{{ID: 1, Remaining: 81}}) {
		t.Fatalf("CheckpointDue = %v", got)
	}
	// Renew clears RemainingTTL and makes a reset checkpoint due at once.
	if _, err := le.Renew(1); err != nil {
		t.Fatal(err)
	}
	if l := le.Lookup(1); l.RemainingTTL != 0 {
		t.Fatalf("RemainingTTL after renew = %d", l.RemainingTTL)
	}
	if got := le.CheckpointDue(time.Minute, 0); !reflect.DeepEqual(got, []Checkpoint{{ID: 1, Remaining: 600}}) {
		t.Fatalf("reset checkpoint = %v", got)
	}
	// A checkpoint of the full TTL (or 0) clears RemainingTTL, so renewing again is quiet.
	if err := le.Checkpoint(1, 600); err != nil {
		t.Fatal(err)
	}
	if l := le.Lookup(1); l.RemainingTTL != 0 {
		t.Fatalf("RemainingTTL after full checkpoint = %d", l.RemainingTTL)
	}
	if _, err := le.Renew(1); err != nil {
		t.Fatal(err)
	}
	if got := le.CheckpointDue(time.Minute, 0); len(got) != 0 {
		t.Fatalf("CheckpointDue after quiet renew = %v", got)
	}
	if got := le.CheckpointDue(0, 0); got != nil {
		t.Fatalf("CheckpointDue(0) = %v", got)
	}
}

func TestCheckpointDueLimit(t *testing.T) {
	le, c := newTest(1)
	for id := LeaseID(1); id <= 5; id++ {
		mustGrant(t, le, id, 1000)
	}
	le.Promote(0)
	c.Advance(10 * time.Second)
	a := le.CheckpointDue(time.Second, 3)
	b := le.CheckpointDue(time.Second, 3)
	if len(a) != 3 || len(b) != 2 {
		t.Fatalf("batches %v %v", a, b)
	}
	for i, cp := range append(a, b...) {
		if cp.ID != LeaseID(i+1) || cp.Remaining != 990 {
			t.Fatalf("checkpoint %d = %+v", i, cp)
		}
	}
}

func TestRestore(t *testing.T) {
	le, c := newTest(5)
	mustGrant(t, le, 7, 100)
	le.Restore([]Lease{
		{ID: 3, TTL: 60, RemainingTTL: 20},
		{ID: 1, TTL: 2},
		{ID: NoLease, TTL: 10},
		{ID: 2, TTL: 30, RemainingTTL: 30},
	})
	if le.Lookup(7) != nil {
		t.Fatal("Restore kept an old lease")
	}
	var got []Lease
	for _, l := range le.Leases() {
		got = append(got, Lease{ID: l.ID, TTL: l.TTL, RemainingTTL: l.RemainingTTL})
	}
	want := []Lease{{ID: 1, TTL: 5}, {ID: 2, TTL: 30}, {ID: 3, TTL: 60, RemainingTTL: 20}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("restored %+v, want %+v", got, want)
	}
	if err := le.Attach(3, "k"); err != nil {
		t.Fatal(err)
	}
	// Snapshots carry their keys through Restore.
	other, _ := newTest(5)
	snap := le.Leases()
	ls := make([]Lease, len(snap))
	for i, l := range snap {
		ls[i] = *l
	}
	other.Restore(ls)
	if keys := other.Lookup(3).Keys(); !reflect.DeepEqual(keys, []string{"k"}) {
		t.Fatalf("restored keys = %v", keys)
	}
	le.Promote(0)
	c.Advance(20 * time.Second)
	if got := le.Expired(0); !reflect.DeepEqual(got, []LeaseID{1, 3}) {
		t.Fatalf("Expired after restore = %v", got)
	}
	// Restore on a primary restarts expiries from now.
	le.Restore([]Lease{{ID: 4, TTL: 10}})
	c.Advance(9 * time.Second)
	if got := le.Expired(0); len(got) != 0 {
		t.Fatalf("Expired = %v", got)
	}
	c.Advance(time.Second)
	if got := le.Expired(0); !reflect.DeepEqual(got, []LeaseID{4}) {
		t.Fatalf("Expired = %v", got)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, c := range Collectors() {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	le, _ := newTest(1)
	mustGrant(t, le, 1, 10)
	le.Promote(0)
	if _, err := le.Renew(1); err != nil {
		t.Fatal(err)
	}
	if _, err := le.Revoke(1); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{
		"etcd_debugging_lease_granted_total", "etcd_debugging_lease_revoked_total",
		"etcd_debugging_lease_renewed_total", "etcd_debugging_lease_ttl_total",
	} {
		if !names[n] {
			t.Errorf("metric %s missing (have %v)", n, names)
		}
	}
}

func TestConcurrency(t *testing.T) {
	le, c := newTest(1)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				id := LeaseID(w*1000 + i + 1)
				if _, err := le.Grant(id, int64(i%20+1)); err != nil {
					t.Error(err)
					return
				}
				key := fmt.Sprintf("k%d-%d", w, i%10)
				_ = le.Attach(id, key)
				switch i % 5 {
				case 0:
					_, _ = le.Renew(id)
				case 1:
					_ = le.Checkpoint(id, 3)
				case 2:
					le.Detach(id, key)
				case 3:
					_, _ = le.Revoke(id)
				}
				if l := le.Lookup(id); l != nil {
					_ = l.Keys()
					_ = l.Remaining(c.Now())
				}
			}
		}(w)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			if i%2 == 0 {
				le.Promote(time.Second)
			} else {
				le.Demote()
			}
			c.Advance(500 * time.Millisecond)
			for _, id := range le.Expired(10) {
				_, _ = le.Revoke(id)
			}
			for _, cp := range le.CheckpointDue(time.Second, 10) {
				_ = le.Checkpoint(cp.ID, cp.Remaining)
			}
			_ = le.Leases()
			_ = le.IsPrimary()
		}
	}()
	wg.Wait()
	// Invariant: every owned key belongs to a live lease that lists it.
	le.mu.Lock()
	defer le.mu.Unlock()
	for k, id := range le.owner {
		e := le.leases[id]
		if e == nil {
			t.Fatalf("key %q owned by missing lease %d", k, id)
		}
		if _, ok := e.keys[k]; !ok {
			t.Fatalf("key %q not listed by lease %d", k, id)
		}
	}
	for id, e := range le.leases {
		for k := range e.keys {
			if le.owner[k] != id {
				t.Fatalf("lease %d lists %q owned by %d", id, k, le.owner[k])
			}
		}
	}
	if le.primary && (len(le.exp.items) != len(le.leases) || len(le.cps.items) != len(le.leases)) {
		t.Fatalf("heaps %d/%d for %d leases", len(le.exp.items), len(le.cps.items), len(le.leases))
	}
}

// A checkpoint proposed before a Renew but applied after it must not cancel the reset
// checkpoint the Renew made due: the stale RemainingTTL is cleared again at once.
func TestCheckpointAppliedAfterRenew(t *testing.T) {
	le, c := newTest(1)
	mustGrant(t, le, 1, 600)
	if err := le.Checkpoint(1, 300); err != nil {
		t.Fatal(err)
	}
	le.Promote(0)
	c.Advance(10 * time.Second)
	if _, err := le.Renew(1); err != nil {
		t.Fatal(err)
	}
	if err := le.Checkpoint(1, 250); err != nil { // stale, from before the renewal
		t.Fatal(err)
	}
	if got := le.CheckpointDue(time.Minute, 0); !reflect.DeepEqual(got, []Checkpoint{{ID: 1, Remaining: 600}}) {
		t.Fatalf("CheckpointDue = %v", got)
	}
	if err := le.Checkpoint(1, 600); err != nil {
		t.Fatal(err)
	}
	if l := le.Lookup(1); l.RemainingTTL != 0 || l.Remaining(c.Now()) != 600*time.Second {
		t.Fatalf("after reset checkpoint: %+v %v", l, l.Remaining(c.Now()))
	}
}

func TestSetPrimary(t *testing.T) {
	le, c := newTest(1)
	mustGrant(t, le, 1, 10)
	if !le.SetPrimary(true, time.Second) || !le.IsPrimary() {
		t.Fatal("SetPrimary(true) did not promote")
	}
	c.Advance(5 * time.Second)
	// Already primary: nothing changes, the expiry is not extended again.
	if le.SetPrimary(true, time.Second) {
		t.Fatal("SetPrimary(true) on a primary reported a change")
	}
	if r := le.Lookup(1).Remaining(c.Now()); r != 6*time.Second {
		t.Fatalf("remaining = %v, want 6s", r)
	}
	if !le.SetPrimary(false, 0) || le.IsPrimary() || le.SetPrimary(false, 0) {
		t.Fatal("SetPrimary(false) did not demote exactly once")
	}
	c.Advance(time.Hour)
	if got := le.Expired(0); got != nil {
		t.Fatalf("follower expired %v", got)
	}
}
