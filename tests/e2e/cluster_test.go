package e2e

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

// Bounds of the cluster tests.
const (
	// clElectionBound bounds the election of a new leader after the
	// leader was killed (election timeout is 500 ms).
	clElectionBound = 10 * time.Second
	// clWriteTimeout bounds every single write of a write stream.
	clWriteTimeout = 2 * time.Second
	// clCatchUpBound bounds how long a restarted member may take to serve
	// linearizable reads that include every acknowledged write.
	clCatchUpBound = 20 * time.Second
)

func startCluster(t *testing.T, n int) *framework.Cluster {
	t.Helper()
	begin := time.Now()
	c := framework.StartCluster(t, n, framework.Options{})
	t.Logf("%d-member cluster ready with a leader in %v", n, time.Since(begin).Round(time.Millisecond))
	return c
}

// clStatus returns the member's Status, failing the test on error.
func clStatus(t *testing.T, m *framework.Member) *clientv3.StatusResponse {
	t.Helper()
	st, err := m.Status()
	if err != nil {
		t.Fatalf("%s: Status: %v", m.Name, err)
	}
	return st
}

// clWaitAgree waits (bounded) until every running member reports the same
// non-zero Leader and RaftTerm in Status, and returns them.
func clWaitAgree(t *testing.T, c *framework.Cluster) (leader, term uint64) {
	t.Helper()
	var last []string
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 200; i++ {
		last = last[:0]
		agree := true
		leader, term = 0, 0
		for j, m := range c.Running() {
			st, err := m.Status()
			if err != nil {
				last = append(last, fmt.Sprintf("%s: %v", m.Name, err))
				agree = false
				continue
			}
			last = append(last, fmt.Sprintf("%s: leader=%x term=%d", m.Name, st.Leader, st.RaftTerm))
			if j == 0 {
				leader, term = st.Leader, st.RaftTerm
			}
			if st.Leader == 0 || st.RaftTerm == 0 || st.Leader != leader || st.RaftTerm != term {
				agree = false
			}
		}
		if agree {
			return leader, term
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("members do not agree on leader and raft term within 10s: %s", strings.Join(last, "; "))
	return 0, 0
}

// writeStream writes prefix%06d keys through cli until stopped, recording
// every acknowledged write.
type writeStream struct {
	mu     sync.Mutex
	acked  map[string]string
	errs   map[string]int // error text -> count
	stop   chan struct{}
	done   chan struct{}
	prefix string
}

func startWriteStream(cli *clientv3.Client, prefix string, workers, max int) *writeStream {
	w := &writeStream{acked: map[string]string{}, errs: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{}), prefix: prefix}
	var wg sync.WaitGroup
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < max; i++ {
				select {
				case <-w.stop:
					return
				default:
				}
				key := fmt.Sprintf("%sw%d-%06d", prefix, g, i)
				val := "val-" + key
				c, cancel := context.WithTimeout(context.Background(), clWriteTimeout)
				_, err := cli.Put(c, key, val)
				cancel()
				w.mu.Lock()
				if err == nil {
					w.acked[key] = val
				} else {
					w.errs[err.Error()]++
				}
				w.mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	go func() { wg.Wait(); close(w.done) }()
	return w
}

func (w *writeStream) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// waitCount waits until at least n writes are acknowledged.
func (w *writeStream) waitCount(t *testing.T, n int, bound time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for w.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d writes acknowledged after %v, want >= %d (errors: %v)", what, w.count(), bound, n, w.errors())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *writeStream) halt(t *testing.T) map[string]string {
	t.Helper()
	close(w.stop)
	select {
	case <-w.done:
	case <-time.After(3 * clWriteTimeout):
		t.Fatal("write stream did not stop")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]string, len(w.acked))
	for k, v := range w.acked {
		out[k] = v
	}
	return out
}

func (w *writeStream) errors() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for k, v := range w.errs {
		out[k] = v
	}
	return out
}

// clRequireAcked asserts (bounded) that a linearizable prefix read on the
// member, through a fresh client, holds every acknowledged write with its
// value and no value that was never written.
func clRequireAcked(t *testing.T, m *framework.Member, prefix string, acked map[string]string, valueOf func(string) string) {
	t.Helper()
	cli := m.NewClient()
	deadline := time.Now().Add(clCatchUpBound)
	var why string
	for i := 0; i < 1000; i++ {
		c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		g, err := cli.Get(c, prefix, clientv3.WithPrefix())
		cancel()
		if err != nil {
			why = fmt.Sprintf("linearizable Get: %v", err)
		} else {
			got := map[string]string{}
			for _, kv := range g.Kvs {
				got[string(kv.Key)] = string(kv.Value)
			}
			var missing []string
			for k, v := range acked {
				if got[k] != v {
					missing = append(missing, k)
				}
			}
			for k, v := range got {
				if v != valueOf(k) {
					t.Fatalf("%s: key %s has value %q, never written", m.Name, k, v)
				}
			}
			if len(missing) == 0 {
				t.Logf("%s: all %d acknowledged writes present (%d keys, revision %d)", m.Name, len(acked), len(got), g.Header.Revision)
				return
			}
			sort.Strings(missing)
			why = fmt.Sprintf("%d of %d acknowledged writes missing, e.g. %q", len(missing), len(acked), missing[0])
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: after %v: %s", m.Name, clCatchUpBound, why)
}

func clLinearizableRev(t *testing.T, c *framework.Cluster) int64 {
	t.Helper()
	return currentRev(t, c.NewClient())
}

// TestCluster3Basic: in a 3-member cluster, a write through any member is
// visible to linearizable reads on every other member; all members agree on
// leader and raft term; MemberList has the 3 members with their names and
// URLs; HashKV is equal on all members at the same revision.
func TestCluster3Basic(t *testing.T) {
	c := startCluster(t, 3)
	ids := map[string]uint64{}
	seen := map[uint64]bool{}
	for _, m := range c.Members {
		st := clStatus(t, m)
		if st.Header.MemberId == 0 || seen[st.Header.MemberId] {
			t.Fatalf("%s: Status header member_id %x is zero or not unique (%v)", m.Name, st.Header.MemberId, ids)
		}
		seen[st.Header.MemberId] = true
		ids[m.Name] = st.Header.MemberId
	}

	for i, w := range c.Members {
		key, val := fmt.Sprintf("basic/from-%s", w.Name), fmt.Sprintf("v%d", i)
		pr := mustPut(t, w.Client(), key, val)
		for _, r := range c.Members {
			if r == w {
				continue
			}
			g := mustGet(t, r.Client(), key) // linearizable
			if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != val {
				t.Fatalf("write %s=%s through %s (revision %d) not visible on %s: %v", key, val, w.Name, pr.Header.Revision, r.Name, g.Kvs)
			}
			if g.Kvs[0].ModRevision != pr.Header.Revision || g.Header.Revision < pr.Header.Revision {
				t.Fatalf("%s: %s mod_revision %d header revision %d, put revision %d", r.Name, key, g.Kvs[0].ModRevision, g.Header.Revision, pr.Header.Revision)
			}
			if g.Header.MemberId != ids[r.Name] {
				t.Fatalf("%s: Get header member_id %x, Status says %x", r.Name, g.Header.MemberId, ids[r.Name])
			}
		}
	}

	leader, term := clWaitAgree(t, c)
	l := c.Leader()
	if ids[l.Name] != leader {
		t.Fatalf("Status leader %x is not the member that says it is leader (%s=%x)", leader, l.Name, ids[l.Name])
	}
	t.Logf("leader %s (%x), term %d", l.Name, leader, term)

	for _, m := range c.Members {
		ml, err := m.Client().MemberList(ctx(t))
		if err != nil {
			t.Fatalf("%s: MemberList: %v", m.Name, err)
		}
		if len(ml.Members) != 3 {
			t.Fatalf("%s: MemberList has %d members, want 3: %v", m.Name, len(ml.Members), ml.Members)
		}
		byName := map[string]bool{}
		for _, mm := range ml.Members {
			var want *framework.Member
			for _, cm := range c.Members {
				if cm.Name == mm.Name {
					want = cm
				}
			}
			if want == nil || byName[mm.Name] {
				t.Fatalf("%s: MemberList has unexpected or duplicate member %q: %v", m.Name, mm.Name, ml.Members)
			}
			byName[mm.Name] = true
			if mm.ID != ids[mm.Name] {
				t.Fatalf("%s: MemberList %s ID %x, its Status says %x", m.Name, mm.Name, mm.ID, ids[mm.Name])
			}
			if !eqStrings(mm.PeerURLs, []string{want.PeerURL}) || !eqStrings(mm.ClientURLs, []string{want.ClientURL}) || mm.IsLearner {
				t.Fatalf("%s: MemberList %s peer %v client %v learner %v, want peer [%s] client [%s] learner false",
					m.Name, mm.Name, mm.PeerURLs, mm.ClientURLs, mm.IsLearner, want.PeerURL, want.ClientURL)
			}
		}
	}

	c.RequireHashKVEqual(t, clLinearizableRev(t, c))
}

// TestCluster3KillLeader: kill -9 the leader during a stream of writes from
// a client with all endpoints; a new leader is elected within a bound and
// writes continue; the restarted old leader catches up; every acknowledged
// write is on every member; HashKV is equal on all.
func TestCluster3KillLeader(t *testing.T) {
	c := startCluster(t, 3)
	const prefix = "kl/"
	w := startWriteStream(c.Client(), prefix, 2, 5000)
	w.waitCount(t, 50, 15*time.Second, "before the kill")

	old := c.Leader()
	_, oldTerm := clWaitAgree(t, c)
	old.Kill()
	killed := time.Now()
	atKill := w.count()
	nl, err := c.WaitLeader(clElectionBound)
	if err != nil {
		t.Fatalf("after killing leader %s: %v", old.Name, err)
	}
	_, newTerm := clWaitAgree(t, c)
	t.Logf("killed leader %s with %d writes acknowledged; new leader %s (term %d -> %d) after %v",
		old.Name, atKill, nl.Name, oldTerm, newTerm, time.Since(killed).Round(time.Millisecond))
	if newTerm <= oldTerm {
		t.Fatalf("raft term %d after the election, was %d", newTerm, oldTerm)
	}
	w.waitCount(t, atKill+50, 15*time.Second, "after the new election")

	old.Restart()
	w.waitCount(t, w.count()+20, 15*time.Second, "after restarting the old leader")
	acked := w.halt(t)
	t.Logf("%d writes acknowledged in total; errors seen: %v", len(acked), w.errors())

	valueOf := func(k string) string { return "val-" + k }
	for _, m := range c.Members {
		clRequireAcked(t, m, prefix, acked, valueOf)
	}
	clWaitAgree(t, c)
	c.RequireHashKVEqual(t, clLinearizableRev(t, c))
}

// etcdQuorumLossError reports whether err is one of the errors etcd gives a
// write that cannot commit: the client's deadline, or one of etcd's
// timeout / no-leader / dropped-proposal errors.
func etcdQuorumLossError(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	for _, e := range []error{
		rpctypes.ErrTimeout,                    // etcdserver: request timed out
		rpctypes.ErrNoLeader,                   // etcdserver: no leader
		rpctypes.ErrTimeoutDueToLeaderFail,     // etcdserver: request timed out, possibly due to previous leader failure
		rpctypes.ErrTimeoutDueToConnectionLost, // etcdserver: request timed out, possibly due to connection lost
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	code, msg := framework.StatusOf(err)
	// raft.ErrProposalDropped, which etcd passes through as codes.Unknown.
	return code == codes.Unknown && msg == "raft proposal dropped"
}

// TestCluster3QuorumLoss: with 2 of 3 members killed, a write fails with
// one of etcd's errors (and with "etcdserver: no leader" when the client
// requires a leader); after restarting one member writes resume.
func TestCluster3QuorumLoss(t *testing.T) {
	c := startCluster(t, 3)
	mustPut(t, c.Client(), "ql/before", "1")
	l := c.Leader()
	fs := c.Followers()
	survivor := fs[1]
	l.Kill()
	fs[0].Kill()
	scli := survivor.Client()

	// A write while the survivor may still believe in the dead leader.
	c1, cancel := context.WithTimeout(context.Background(), time.Second)
	_, err := scli.Put(c1, "ql/during", "x")
	cancel()
	if !etcdQuorumLossError(err) {
		t.Fatalf("write without quorum: got %T %v, want context deadline exceeded or an etcd timeout/no-leader error", err, err)
	}
	t.Logf("write without quorum (immediately): %v", err)

	// The survivor notices it has no leader (Status leader 0) within a
	// bound, and then writes fail the same way; with WithRequireLeader
	// they fail with exactly "etcdserver: no leader".
	deadline := time.Now().Add(clElectionBound)
	for {
		st, err := survivor.Status()
		if err == nil && st.Leader == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: Status still reports a leader %v after %v without quorum (err %v)", survivor.Name, st, clElectionBound, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c2, cancel := context.WithTimeout(context.Background(), time.Second)
	_, err = scli.Put(c2, "ql/during", "x")
	cancel()
	if !etcdQuorumLossError(err) {
		t.Fatalf("write without leader: got %T %v, want context deadline exceeded or an etcd timeout/no-leader error", err, err)
	}
	t.Logf("write without leader: %v", err)
	c3, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	_, err = scli.Put(clientv3.WithRequireLeader(c3), "ql/during", "x")
	cancel()
	framework.RequireClientError(t, err, rpctypes.ErrNoLeader)

	fs[0].Restart()
	var ok bool
	var lastErr error
	deadline = time.Now().Add(20 * time.Second)
	for i := 0; i < 200 && time.Now().Before(deadline); i++ {
		c4, cancel := context.WithTimeout(context.Background(), clWriteTimeout)
		_, lastErr = scli.Put(c4, "ql/after", "2")
		cancel()
		if lastErr == nil {
			ok = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !ok {
		t.Fatalf("writes did not resume within 20s of restarting %s: %v", fs[0].Name, lastErr)
	}
	g := mustGet(t, fs[0].NewClient(), "ql/", clientv3.WithPrefix())
	requireKeys(t, "after quorum is back", g.Kvs, "ql/after", "ql/before")
	c.Leader()
}

// TestCluster5MinorityLoss: with 2 of 5 followers killed, writes continue;
// after restarting them every member has every write and HashKV is equal.
func TestCluster5MinorityLoss(t *testing.T) {
	c := startCluster(t, 5)
	const prefix = "ml/"
	cli := c.Client()
	fs := c.Followers()
	down := fs[:2]
	for _, m := range down {
		m.Kill()
	}
	if _, err := c.WaitLeader(clElectionBound); err != nil {
		t.Fatal(err)
	}
	acked := map[string]string{}
	var failures []string
	begin := time.Now()
	for i := 0; i < 200; i++ {
		key := fmt.Sprintf("%s%04d", prefix, i)
		val := "val-" + key
		var err error
		for attempt := 0; attempt < 5; attempt++ {
			cc, cancel := context.WithTimeout(context.Background(), clWriteTimeout)
			_, err = cli.Put(cc, key, val)
			cancel()
			if err == nil {
				break
			}
			failures = append(failures, err.Error())
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("write %s with 2 of 5 members down failed 5 times: %v", key, err)
		}
		acked[key] = val
	}
	t.Logf("200 writes with %s and %s down in %v (%d retried errors: %.200q)", down[0].Name, down[1].Name,
		time.Since(begin).Round(time.Millisecond), len(failures), failures)
	if len(failures) > 20 {
		t.Fatalf("%d errors for 200 writes with a quorum up", len(failures))
	}
	for _, m := range down {
		m.Restart()
	}
	valueOf := func(k string) string { return "val-" + k }
	for _, m := range c.Members {
		clRequireAcked(t, m, prefix, acked, valueOf)
	}
	clWaitAgree(t, c)
	c.RequireHashKVEqual(t, clLinearizableRev(t, c))
}
