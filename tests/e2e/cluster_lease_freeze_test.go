package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
)

// Bounds of the frozen-leader lease test (500 ms election timeout: minimum TTL 1 s).
const (
	// frzTTL is the lease TTL: a lock holder keeps it alive every TTL/3.
	frzTTL = 3
	// frzKeepAliveEvery paces the keep-alives sent to the frozen leader.
	frzKeepAliveEvery = 200 * time.Millisecond
	// frzKeepAliveTimeout bounds each of them.
	frzKeepAliveTimeout = time.Second
	// frzExpiryBound bounds how long after the freeze the majority must have expired the
	// lease: an election (0.5 to 1 s), the new leader's promotion, the TTL plus the
	// election timeout it adds, the revoke; ample on a loaded 2-core machine.
	frzExpiryBound = frzTTL*time.Second + 12*time.Second
	// frzMaxFreeze is how long the member is asked to stay frozen at most (the test
	// thaws it earlier).
	frzMaxFreeze = 60 * time.Second
)

// frzKeepAlive is one LeaseKeepAliveOnce sent to the frozen leader.
type frzKeepAlive struct {
	sent time.Time
	ttl  int64
	err  error
}

// TestClusterLeaseFrozenLeader: a leader whose raft Ready loop stalls (a stuck disk:
// no ticks, nothing persisted, sent or applied) still believes it leads while its gRPC
// keeps serving. The other two elect a new leader, which expires a lease nobody can
// renew through it. The stale leader must not renew that lease meanwhile: a keep-alive
// it answered with success at time t promises the lease until t + TTL, and a lock held
// on that promise would then have two holders. So no keep-alive sent at t and answered
// with success may be followed by the majority deleting the lease's key before t + TTL.
// A keep-alive that waits out the request timeout gets etcd's answer for a leader that
// cannot confirm its leadership: codes.Unknown "not a primary lessor". After the thaw the
// old leader rejoins and agrees: the key is gone, the lease unknown, HashKV equal.
//
// Cairn-only: the freeze is Cairn's test-only fault endpoint (CAIRN_FAULT_INJECTION);
// etcd has no way to stall a member's raft loop from outside while it keeps serving.
func TestClusterLeaseFrozenLeader(t *testing.T) {
	framework.CairnOnly(t, "freezes a member's raft loop through Cairn's fault injection endpoint")
	c := framework.StartCluster(t, 3, framework.Options{Env: []string{framework.FaultInjectionEnv}})
	leader := c.Leader()
	var others []*framework.Member
	var majEps []string
	for _, m := range c.Members {
		if m != leader {
			others = append(others, m)
			majEps = append(majEps, m.ClientURL)
		}
	}
	lcli := leader.NewClient() // talks to the leader only
	mcli, err := clientv3.New(clientv3.Config{Endpoints: majEps, DialTimeout: framework.DefaultDialTimeout, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer mcli.Close()

	g, err := lcli.Grant(ctx(t), frzTTL)
	if err != nil || g.TTL != frzTTL {
		t.Fatalf("grant %d = %v, %v", frzTTL, g, err)
	}
	put := mustPut(t, lcli, "frz/k", "holder", clientv3.WithLease(g.ID))
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	wch := mcli.Watch(wctx, "frz/k", clientv3.WithRev(put.Header.Revision+1))
	deleted := make(chan time.Time, 1)
	go func() {
		for wr := range wch {
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					deleted <- time.Now()
					return
				}
			}
		}
	}()
	// The majority has the key before the freeze (so its deletion is the expiry).
	waitKeys(t, mcli, "frz/", 10*time.Second, "frz/k")

	keepAlive := func() frzKeepAlive {
		kctx, cancel := context.WithTimeout(context.Background(), frzKeepAliveTimeout)
		defer cancel()
		ka := frzKeepAlive{sent: time.Now()}
		r, err := lcli.KeepAliveOnce(kctx, g.ID)
		ka.err = err
		if err == nil {
			ka.ttl = r.TTL
		}
		return ka
	}
	// The healthy leader renews.
	for i := 0; i < 3; i++ {
		if ka := keepAlive(); ka.err != nil || ka.ttl != frzTTL {
			t.Fatalf("keep-alive %d on the healthy leader %s: TTL %d, %v", i+1, leader.Name, ka.ttl, ka.err)
		}
		time.Sleep(frzKeepAliveEvery)
	}

	if err := leader.FreezeRaft(frzMaxFreeze); err != nil {
		t.Fatal(err)
	}
	frozenAt := time.Now()
	thawed := false
	defer func() {
		if !thawed {
			_ = leader.FreezeRaft(0)
		}
	}()
	t.Logf("froze the raft loop of leader %s; keep-alives go to it only, the majority (%s, %s) watches the key",
		leader.Name, others[0].Name, others[1].Name)
	// One keep-alive with time to wait out the request timeout (5 s + 2 election
	// timeouts): etcd's answer when leadership cannot be confirmed, on the wire. It is
	// sent an election timeout after the freeze: until then the leader may still answer
	// from a confirmation that began before the freeze (the checks below bound those).
	slow := make(chan error, 1)
	go func() {
		time.Sleep(time.Until(frozenAt.Add(framework.ClusterElectionMs * time.Millisecond)))
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		stream, err := pb.NewLeaseClient(lcli.ActiveConnection()).LeaseKeepAlive(sctx)
		if err == nil {
			err = stream.Send(&pb.LeaseKeepAliveRequest{ID: int64(g.ID)})
		}
		if err == nil {
			var r *pb.LeaseKeepAliveResponse
			if r, err = stream.Recv(); err == nil {
				err = fmt.Errorf("renewed: %v", r)
			}
		}
		slow <- err
	}()

	// One keep-alive every frzKeepAliveEvery, each in its own goroutine: a refused one
	// may take its whole timeout, and the pace must not depend on it.
	var mu sync.Mutex
	var kas []frzKeepAlive
	var wg sync.WaitGroup
	send := func() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ka := keepAlive()
			mu.Lock()
			kas = append(kas, ka)
			mu.Unlock()
		}()
	}
	var deletedAt time.Time
	for i := 0; i < 200 && deletedAt.IsZero() && time.Since(frozenAt) < frzExpiryBound; i++ {
		send()
		select {
		case deletedAt = <-deleted:
		case <-time.After(frzKeepAliveEvery):
		}
	}
	if deletedAt.IsZero() {
		select {
		case deletedAt = <-deleted:
		case <-time.After(time.Until(frozenAt.Add(frzExpiryBound))):
			t.Fatalf("the majority did not expire the lease within %v of the leader's freeze", frzExpiryBound)
		}
	}
	// A few more after the expiry: a stale leader would still renew.
	for i := 0; i < 3; i++ {
		send()
		time.Sleep(frzKeepAliveEvery)
	}
	wg.Wait()
	sort.Slice(kas, func(i, j int) bool { return kas[i].sent.Before(kas[j].sent) })

	var ok, failed int
	var violations, errs []string
	for _, ka := range kas {
		at := ka.sent.Sub(frozenAt).Round(time.Millisecond)
		if ka.err != nil {
			failed++
			if len(errs) < 5 {
				errs = append(errs, fmt.Sprintf("+%v: %v", at, ka.err))
			}
			continue
		}
		ok++
		if until := ka.sent.Add(frzTTL * time.Second); deletedAt.Before(until) {
			violations = append(violations, fmt.Sprintf("keep-alive sent at +%v succeeded (TTL %d): lease promised until +%v, deleted by the majority at +%v",
				at, ka.ttl, until.Sub(frozenAt).Round(time.Millisecond), deletedAt.Sub(frozenAt).Round(time.Millisecond)))
		}
	}
	t.Logf("%d keep-alives to the frozen leader: %d succeeded, %d failed (first errors: %s); key deleted by the majority %v after the freeze",
		len(kas), ok, failed, strings.Join(errs, "; "), deletedAt.Sub(frozenAt).Round(time.Millisecond))
	if len(kas) < 10 {
		t.Errorf("only %d keep-alives reached the frozen leader before the expiry: the test proves little", len(kas))
	}
	if len(violations) > 0 {
		t.Errorf("the frozen leader renewed a lease the majority then expired within its TTL (%d of %d successes):\n  %s",
			len(violations), ok, strings.Join(violations, "\n  "))
	}

	select {
	case err := <-slow:
		framework.RequireGRPCError(t, err, codes.Unknown, "not a primary lessor")
	case <-time.After(20 * time.Second):
		t.Fatal("a keep-alive on the frozen leader got no answer within 20 s")
	}

	// Thaw: the old leader rejoins and agrees with the majority.
	if err := leader.FreezeRaft(0); err != nil {
		t.Fatal(err)
	}
	thawed = true
	if _, err := c.WaitLeader(20 * time.Second); err != nil {
		t.Fatalf("after the thaw: %v", err)
	}
	waitKeys(t, lcli, "frz/", 20*time.Second)
	_, err = lcli.KeepAliveOnce(ctx(t), g.ID)
	framework.RequireClientError(t, err, rpctypes.ErrLeaseNotFound)
	rev := mustPut(t, mcli, "frz/after", "v").Header.Revision
	c.RequireHashKVEqual(t, rev)
}
