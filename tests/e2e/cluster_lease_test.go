package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Bounds of the lease-through-a-follower tests. The cluster runs with a 500 ms election
// timeout, so its minimum lease TTL is 1 s (1.5 election timeouts, rounded up) and the
// TTLs below are granted as asked.
const (
	// flTTL is the lease TTL of the keep-alive scenarios (clientv3 sends a keep-alive
	// every third of it).
	flTTL = 3
	// flKillTTL is the TTL of the leader-kill scenario. clientv3 gives up on a lease
	// (closes the keep-alive channel) when no answer came for a whole TTL; 5 s leaves
	// room for the election (0.5 to 1 s here) on a loaded 2-core machine without
	// making the test about clientv3's timer rather than the server.
	flKillTTL = 5
	// flExpiryBound bounds how long an unrenewed lease's key may survive its TTL.
	flExpiryBound = flTTL*time.Second + 7*time.Second
	// flElectionBound bounds the election after the leader was killed.
	flElectionBound = 10 * time.Second
	// flResumeBound bounds how long after the kill keep-alives must be answered again.
	flResumeBound = 15 * time.Second
)

// flKeepAlive counts the keep-alive responses of one clientv3 KeepAlive channel and
// when they arrived, and whether the channel closed (clientv3 gave up on the lease).
type flKeepAlive struct {
	mu     sync.Mutex
	times  []time.Time
	badTTL []int64
	closed bool
	done   chan struct{}
}

func flStartKeepAlive(t *testing.T, ctx context.Context, cli *clientv3.Client, id clientv3.LeaseID, ttl int64) *flKeepAlive {
	t.Helper()
	ch, err := cli.KeepAlive(ctx, id)
	if err != nil {
		t.Fatalf("KeepAlive(%x): %v", id, err)
	}
	k := &flKeepAlive{done: make(chan struct{})}
	go func() {
		defer close(k.done)
		for r := range ch {
			k.mu.Lock()
			k.times = append(k.times, time.Now())
			if r.TTL != ttl {
				k.badTTL = append(k.badTTL, r.TTL)
			}
			k.mu.Unlock()
		}
		k.mu.Lock()
		k.closed = true
		k.mu.Unlock()
	}()
	return k
}

// since returns how many responses arrived after from, whether the channel closed, and
// any response whose TTL was not the granted one.
func (k *flKeepAlive) since(from time.Time) (n int, closed bool, badTTL []int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, at := range k.times {
		if at.After(from) {
			n++
		}
	}
	return n, k.closed, append([]int64(nil), k.badTTL...)
}

// waitResponses waits (bounded) until at least n responses arrived after from, failing
// the test if the channel closes first.
func (k *flKeepAlive) waitResponses(t *testing.T, from time.Time, n int, bound time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for i := 0; ; i++ {
		got, closed, bad := k.since(from)
		if len(bad) > 0 {
			t.Fatalf("%s: keep-alive responses with TTL %v, want the granted TTL", what, bad)
		}
		if got >= n {
			return
		}
		if closed {
			t.Fatalf("%s: keep-alive channel closed (clientv3 gave up on the lease) after %d responses, want %d", what, got, n)
		}
		if time.Now().After(deadline) || i > 10000 {
			t.Fatalf("%s: %d keep-alive responses within %v, want >= %d", what, got, bound, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// flTimeToLive is TimeToLive with attached keys, failing the test on error.
func flTimeToLive(t *testing.T, cli *clientv3.Client, id clientv3.LeaseID) *clientv3.LeaseTimeToLiveResponse {
	t.Helper()
	tl, err := cli.TimeToLive(ctx(t), id, clientv3.WithAttachedKeys())
	if err != nil {
		t.Fatalf("TimeToLive(%x): %v", id, err)
	}
	return tl
}

func flKeys(tl *clientv3.LeaseTimeToLiveResponse) []string {
	out := make([]string, len(tl.Keys))
	for i, k := range tl.Keys {
		out[i] = string(k)
	}
	return out
}

// TestClusterLeaseFollower: in a 3-member cluster, a client that talks only to a
// follower can keep a lease alive, ask its time to live and get etcd's not-found for
// an unknown lease, through clientv3, a raw stream, etcdctl and a concurrency.Session;
// and its keep-alives go on while the leader is killed and another elected. Only the
// leader knows when a lease expires, so the follower must ask the leader for each.
//
// Differential: nothing here depends on the server binary. Run with
// CAIRN_TEST_AGAINST=etcd, the same expectations hold for the reference etcd, which
// forwards these requests to its leader.
func TestClusterLeaseFollower(t *testing.T) {
	c := framework.StartCluster(t, 3, framework.Options{})
	leader := c.Leader()
	f := c.Followers()[0]
	t.Logf("leader %s, client talks only to follower %s (%s); against etcd: %v", leader.Name, f.Name, f.ClientURL, framework.AgainstEtcd())
	cli := f.NewClient()

	t.Run("KeepAliveHoldsLeaseThenExpires", func(t *testing.T) {
		g, err := cli.Grant(ctx(t), flTTL)
		if err != nil || g.TTL != flTTL {
			t.Fatalf("grant %d through follower = %v, %v", flTTL, g, err)
		}
		mustPut(t, cli, "fl/k", "v", clientv3.WithLease(g.ID))
		kctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		began := time.Now()
		ka := flStartKeepAlive(t, kctx, cli, g.ID, flTTL)

		// Hold it for two TTLs: a follower that cannot renew would let it expire
		// within one.
		hold := 2 * flTTL * time.Second
		for i := 0; time.Since(began) < hold && i < 1000; i++ {
			waitKeys(t, cli, "fl/", 0, "fl/k")
			time.Sleep(250 * time.Millisecond)
		}
		// A keep-alive every TTL/3 s: about 6 in 6 s; 4 leaves room for a slow start.
		ka.waitResponses(t, began, 4, 5*time.Second, "while kept alive")
		waitKeys(t, cli, "fl/", 0, "fl/k")
		tl := flTimeToLive(t, cli, g.ID)
		if tl.TTL <= 0 || tl.TTL > flTTL || tl.GrantedTTL != flTTL || !eqStrings(flKeys(tl), []string{"fl/k"}) {
			t.Fatalf("time-to-live through follower while kept alive = TTL %d granted %d keys %q; want TTL in (0,%d], granted %d, keys [fl/k]",
				tl.TTL, tl.GrantedTTL, flKeys(tl), flTTL, flTTL)
		}

		// Stop renewing: the leader's countdown must show through the follower (a
		// follower answering from its own lessor would say the full TTL until the end),
		// and the key must go within a bound.
		cancel()
		stopped := time.Now()
		var seen []int64
		countedDown := false
		for i := 0; i < 1000; i++ {
			tl := flTimeToLive(t, cli, g.ID)
			if len(seen) == 0 || seen[len(seen)-1] != tl.TTL {
				seen = append(seen, tl.TTL)
			}
			if tl.TTL == -1 {
				break
			}
			if tl.TTL > flTTL {
				t.Fatalf("time-to-live through follower after the keep-alive stopped = %d, above the granted %d", tl.TTL, flTTL)
			}
			if tl.TTL < flTTL-1 {
				countedDown = true
			}
			if time.Since(stopped) > flExpiryBound {
				t.Fatalf("lease still alive %v after its keep-alive stopped; TTLs seen through follower %v", flExpiryBound, seen)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !countedDown {
			t.Fatalf("time-to-live through follower never counted down below %d before the lease expired; TTLs seen %v", flTTL-1, seen)
		}
		waitKeys(t, cli, "fl/", flExpiryBound)
		t.Logf("TTLs seen through follower after the keep-alive stopped: %v; gone after %v", seen, time.Since(stopped).Round(time.Millisecond))
	})

	t.Run("UnknownLease", func(t *testing.T) {
		const unknown = clientv3.LeaseID(0x7e57ab1e)
		// A follower that waits for its own lessor answers "request timed out" only
		// after the request timeout; etcd's answer is not-found, at once.
		began := time.Now()
		_, err := cli.KeepAliveOnce(ctx(t), unknown)
		framework.RequireClientError(t, err, rpctypes.ErrLeaseNotFound)
		if el := time.Since(began); el > 3*time.Second {
			t.Errorf("keep-alive of an unknown lease through follower took %v", el)
		}
		// On the wire: a keep-alive response with TTL 0, the stream stays open.
		stream, err := pb.NewLeaseClient(cli.ActiveConnection()).LeaseKeepAlive(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: int64(unknown)}); err != nil {
				t.Fatal(err)
			}
			resp, err := stream.Recv()
			if err != nil || resp.ID != int64(unknown) || resp.TTL != 0 || resp.Header == nil || resp.Header.Revision == 0 {
				t.Fatalf("raw keep-alive #%d of an unknown lease through follower = %v, %v; want TTL 0", i, resp, err)
			}
		}
		_ = stream.CloseSend()
		if tl := flTimeToLive(t, cli, unknown); tl.TTL != -1 {
			t.Fatalf("time-to-live of an unknown lease through follower = %d, want -1", tl.TTL)
		}
	})

	t.Run("EtcdctlKeepAliveOnce", func(t *testing.T) {
		g, err := cli.Grant(ctx(t), 10)
		if err != nil {
			t.Fatal(err)
		}
		out, errOut, err := f.Etcdctl("lease", "keep-alive", "--once", fmt.Sprintf("%x", g.ID))
		// etcdctl prints the id zero-padded to 16 hex digits.
		want := fmt.Sprintf("lease %016x keepalived with TTL(10)", g.ID)
		if err != nil || strings.TrimSpace(out) != want {
			t.Fatalf("etcdctl lease keep-alive --once against follower: stdout %q stderr %q err %v; want %q", out, errOut, err, want)
		}
		out, errOut, err = f.Etcdctl("lease", "keep-alive", "--once", "7e57ab1e")
		if err == nil || !strings.Contains(errOut, "etcdserver: requested lease not found") {
			t.Fatalf("etcdctl lease keep-alive --once of an unknown lease against follower: stdout %q stderr %q err %v; want an error naming %q",
				out, errOut, err, "etcdserver: requested lease not found")
		}
	})

	t.Run("Session", func(t *testing.T) {
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(flTTL))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		select {
		case <-s.Done():
			t.Fatalf("session through follower ended within 2 TTLs")
		case <-time.After(2 * flTTL * time.Second):
		}
		if tl := flTimeToLive(t, cli, s.Lease()); tl.TTL <= 0 || tl.TTL > flTTL {
			t.Fatalf("session lease time-to-live through follower = %d, want in (0,%d]", tl.TTL, flTTL)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("session close: %v", err)
		}
		if tl := flTimeToLive(t, cli, s.Lease()); tl.TTL != -1 {
			t.Fatalf("session lease after close: TTL %d, want -1", tl.TTL)
		}
	})

	// Last: it kills the leader. Both followers keep a lease alive, each through its own
	// client, so that whichever of them is elected, the other one's keep-alives must
	// reach a new leader.
	t.Run("KeepAliveSurvivesLeaderKill", func(t *testing.T) {
		old := c.Leader()
		type kept struct {
			m   *framework.Member
			cli *clientv3.Client
			id  clientv3.LeaseID
			key string
			ka  *flKeepAlive
		}
		kctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var ks []*kept
		began := time.Now()
		for _, m := range c.Followers() {
			k := &kept{m: m, cli: m.NewClient(), key: "flk/" + m.Name}
			g, err := k.cli.Grant(ctx(t), flKillTTL)
			if err != nil {
				t.Fatalf("grant through %s: %v", m.Name, err)
			}
			k.id = g.ID
			mustPut(t, k.cli, k.key, "v", clientv3.WithLease(k.id))
			k.ka = flStartKeepAlive(t, kctx, k.cli, k.id, flKillTTL)
			ks = append(ks, k)
		}
		for _, k := range ks {
			k.ka.waitResponses(t, began, 2, 2*flKillTTL*time.Second, "through "+k.m.Name+" before the kill")
		}

		old.Kill()
		killed := time.Now()
		nl, err := c.WaitLeader(flElectionBound)
		if err != nil {
			t.Fatalf("after killing leader %s: %v", old.Name, err)
		}
		t.Logf("killed leader %s; %s leads after %v", old.Name, nl.Name, time.Since(killed).Round(time.Millisecond))
		// Keep-alives go on (a third of the TTL apart) and the leases outlive two TTLs
		// counted from the kill.
		for _, k := range ks {
			k.ka.waitResponses(t, killed, 3, flResumeBound, "through "+k.m.Name+" after the leader was killed")
		}
		for i := 0; time.Since(killed) < 2*flKillTTL*time.Second && i < 1000; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		for _, k := range ks {
			what := "through " + k.m.Name + " two TTLs after the leader was killed"
			k.ka.waitResponses(t, killed, 6, flResumeBound, what)
			waitKeys(t, k.cli, k.key, 0, k.key)
			if tl := flTimeToLive(t, k.cli, k.id); tl.TTL <= 0 || tl.TTL > flKillTTL || !eqStrings(flKeys(tl), []string{k.key}) {
				t.Fatalf("time-to-live %s = TTL %d keys %q; want TTL in (0,%d], keys [%s]", what, tl.TTL, flKeys(tl), flKillTTL, k.key)
			}
		}
		cancel()
		for _, k := range ks {
			select {
			case <-k.ka.done:
			case <-time.After(5 * time.Second):
				t.Fatalf("keep-alive channel through %s still open 5s after its context was cancelled", k.m.Name)
			}
		}
	})
}
