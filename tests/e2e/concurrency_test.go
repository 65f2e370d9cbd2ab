package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"google.golang.org/grpc/codes"
)

// The Lock and Election services (etcd's v3lock and v3election), called through etcd's
// own generated stubs (so Cairn's protos are checked for wire compatibility against
// etcd's; Cairn's proto packages cannot be linked here, their message names clash with
// etcd's api module in the global protobuf registry), and etcdctl lock / elect, which
// run clientv3/concurrency on the client side against the same keys.

// blockedFor is how long a call that must keep waiting is given to (wrongly) return.
const blockedFor = 700 * time.Millisecond

func lockClient(m *framework.Member) v3lockpb.LockClient {
	return v3lockpb.NewLockClient(m.Client().ActiveConnection())
}

func electionClient(m *framework.Member) v3electionpb.ElectionClient {
	return v3electionpb.NewElectionClient(m.Client().ActiveConnection())
}

func grant(t *testing.T, cli *clientv3.Client, ttl int64) clientv3.LeaseID {
	t.Helper()
	resp, err := cli.Grant(ctx(t), ttl)
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	return resp.ID
}

// async runs f in a goroutine and delivers its outcome.
func async[T any](f func() (T, error)) <-chan result[T] {
	ch := make(chan result[T], 1)
	go func() {
		v, err := f()
		ch <- result[T]{v, err}
	}()
	return ch
}

type result[T any] struct {
	v   T
	err error
}

func requireBlocked[T any](t *testing.T, ch <-chan result[T], what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s returned while it should wait: %v, %v", what, r.v, r.err)
	case <-time.After(blockedFor):
	}
}

func await[T any](t *testing.T, ch <-chan result[T], what string) T {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%s: %v", what, r.err)
		}
		return r.v
	case <-time.After(opTimeout):
		t.Fatalf("%s did not return within %v", what, opTimeout)
	}
	panic("unreachable")
}

func lockKey(name string, lease clientv3.LeaseID) string {
	return fmt.Sprintf("%s/%x", name, int64(lease))
}

func TestLockServiceTwoLockers(t *testing.T) {
	m := start(t)
	cli := m.Client()
	lc := lockClient(m)
	l1, l2 := grant(t, cli, 60), grant(t, cli, 60)

	r1, err := lc.Lock(ctx(t), &v3lockpb.LockRequest{Name: []byte("mylock"), Lease: int64(l1)})
	if err != nil {
		t.Fatalf("lock 1: %v", err)
	}
	if got, want := string(r1.Key), lockKey("mylock", l1); got != want {
		t.Fatalf("lock 1 key %q, want %q", got, want)
	}
	kv := mustGet(t, cli, string(r1.Key))
	if len(kv.Kvs) != 1 || kv.Kvs[0].Lease != int64(l1) || len(kv.Kvs[0].Value) != 0 {
		t.Fatalf("lock key: %v", kv.Kvs)
	}
	if r1.Header.GetRevision() != kv.Kvs[0].CreateRevision {
		t.Fatalf("lock 1 header revision %d, key created at %d", r1.Header.GetRevision(), kv.Kvs[0].CreateRevision)
	}

	// Locking again with the same lease is a no-op: the same key, not re-created.
	again, err := lc.Lock(ctx(t), &v3lockpb.LockRequest{Name: []byte("mylock"), Lease: int64(l1)})
	if err != nil || string(again.Key) != string(r1.Key) {
		t.Fatalf("relock: %v %v", again, err)
	}
	if kv2 := mustGet(t, cli, string(r1.Key)); kv2.Kvs[0].ModRevision != kv.Kvs[0].ModRevision {
		t.Fatalf("relock rewrote the key: %v", kv2.Kvs)
	}

	// clientv3/concurrency sees the service's lock.
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(60))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := concurrency.NewMutex(s, "mylock").TryLock(ctx(t)); !errors.Is(err, concurrency.ErrLocked) {
		t.Fatalf("TryLock while held: %v, want ErrLocked", err)
	}

	second := async(func() (*v3lockpb.LockResponse, error) {
		return lc.Lock(ctx(t), &v3lockpb.LockRequest{Name: []byte("mylock"), Lease: int64(l2)})
	})
	requireBlocked(t, second, "second Lock")

	ur, err := lc.Unlock(ctx(t), &v3lockpb.UnlockRequest{Key: r1.Key})
	if err != nil {
		t.Fatalf("unlock: %v", err)
	}
	r2 := await(t, second, "second Lock")
	if got, want := string(r2.Key), lockKey("mylock", l2); got != want {
		t.Fatalf("lock 2 key %q, want %q", got, want)
	}
	if r2.Header.GetRevision() < ur.Header.GetRevision() {
		t.Fatalf("lock 2 header revision %d before the unlock's %d", r2.Header.GetRevision(), ur.Header.GetRevision())
	}
	if _, err := lc.Unlock(ctx(t), &v3lockpb.UnlockRequest{Key: r2.Key}); err != nil {
		t.Fatalf("unlock 2: %v", err)
	}
	if got := mustGet(t, cli, "mylock/", clientv3.WithPrefix()); len(got.Kvs) != 0 {
		t.Fatalf("keys left after unlocks: %v", got.Kvs)
	}

	// Errors as etcd sends them: the in-process client's error, as codes.Unknown.
	_, err = lc.Lock(ctx(t), &v3lockpb.LockRequest{Name: []byte("mylock"), Lease: 12345})
	framework.RequireGRPCError(t, err, codes.Unknown, "etcdserver: requested lease not found")
	_, err = lc.Unlock(ctx(t), &v3lockpb.UnlockRequest{})
	framework.RequireGRPCError(t, err, codes.Unknown, "etcdserver: key is not provided")
}

func TestLockServiceLeaseRevoke(t *testing.T) {
	m := start(t)
	cli := m.Client()
	lc := lockClient(m)
	l1, l2 := grant(t, cli, 60), grant(t, cli, 60)

	if _, err := lc.Lock(ctx(t), &v3lockpb.LockRequest{Name: []byte("rl"), Lease: int64(l1)}); err != nil {
		t.Fatalf("lock 1: %v", err)
	}
	second := async(func() (*v3lockpb.LockResponse, error) {
		return lc.Lock(ctx(t), &v3lockpb.LockRequest{Name: []byte("rl"), Lease: int64(l2)})
	})
	requireBlocked(t, second, "second Lock")
	if _, err := cli.Revoke(ctx(t), l1); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	r2 := await(t, second, "second Lock after revoke")
	if got, want := string(r2.Key), lockKey("rl", l2); got != want {
		t.Fatalf("lock 2 key %q, want %q", got, want)
	}

	// A waiter whose own lease goes while it waits gets concurrency's error once the
	// holder is gone.
	l3 := grant(t, cli, 60)
	third := async(func() (*v3lockpb.LockResponse, error) {
		return lc.Lock(ctx(t), &v3lockpb.LockRequest{Name: []byte("rl"), Lease: int64(l3)})
	})
	requireBlocked(t, third, "third Lock")
	if _, err := cli.Revoke(ctx(t), l3); err != nil {
		t.Fatalf("revoke 3: %v", err)
	}
	if _, err := cli.Revoke(ctx(t), l2); err != nil {
		t.Fatalf("revoke 2: %v", err)
	}
	select {
	case r := <-third:
		framework.RequireGRPCError(t, r.err, codes.Unknown, "mutex: session is expired")
	case <-time.After(opTimeout):
		t.Fatal("third Lock did not return")
	}

	// Lease 0: the service grants a lease of its own (concurrency's 60 s session).
	r0, err := lc.Lock(ctx(t), &v3lockpb.LockRequest{Name: []byte("rl")})
	if err != nil {
		t.Fatalf("lock with lease 0: %v", err)
	}
	kv := mustGet(t, cli, string(r0.Key))
	if len(kv.Kvs) != 1 || kv.Kvs[0].Lease == 0 || string(r0.Key) != lockKey("rl", clientv3.LeaseID(kv.Kvs[0].Lease)) {
		t.Fatalf("lease-0 lock key %q: %v", r0.Key, kv.Kvs)
	}
	ttl, err := cli.TimeToLive(ctx(t), clientv3.LeaseID(kv.Kvs[0].Lease))
	if err != nil || ttl.GrantedTTL != 60 {
		t.Fatalf("lease-0 lock's lease: %v %v", ttl, err)
	}
}

func TestLockServiceCancelWaiting(t *testing.T) {
	m := start(t)
	cli := m.Client()
	lc := lockClient(m)
	l1, l2 := grant(t, cli, 60), grant(t, cli, 60)

	r1, err := lc.Lock(ctx(t), &v3lockpb.LockRequest{Name: []byte("cl"), Lease: int64(l1)})
	if err != nil {
		t.Fatalf("lock 1: %v", err)
	}
	wctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = lc.Lock(wctx, &v3lockpb.LockRequest{Name: []byte("cl"), Lease: int64(l2)})
	if c, _ := framework.StatusOf(err); c != codes.DeadlineExceeded {
		t.Fatalf("waiting Lock past its deadline: %v, want DeadlineExceeded", err)
	}
	// The abandoned waiter's key is removed, as concurrency.Mutex does.
	waitFor(t, "the canceled waiter's key to go", func() bool {
		return len(mustGet(t, cli, lockKey("cl", l2)).Kvs) == 0
	})
	// The holder is unaffected, and a new waiter gets the lock once it is released.
	if got := mustGet(t, cli, string(r1.Key)); len(got.Kvs) != 1 {
		t.Fatalf("holder's key gone: %v", got.Kvs)
	}
	third := async(func() (*v3lockpb.LockResponse, error) {
		return lc.Lock(ctx(t), &v3lockpb.LockRequest{Name: []byte("cl"), Lease: int64(l2)})
	})
	requireBlocked(t, third, "Lock after the canceled one")
	if _, err := lc.Unlock(ctx(t), &v3lockpb.UnlockRequest{Key: r1.Key}); err != nil {
		t.Fatal(err)
	}
	await(t, third, "Lock after unlock")
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(opTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestElectionService(t *testing.T) {
	m := start(t)
	cli := m.Client()
	ec := electionClient(m)
	la, lb := grant(t, cli, 60), grant(t, cli, 60)
	name := []byte("el")

	_, err := ec.Leader(ctx(t), &v3electionpb.LeaderRequest{Name: name})
	framework.RequireGRPCError(t, err, codes.Unknown, "election: no leader")

	ca, err := ec.Campaign(ctx(t), &v3electionpb.CampaignRequest{Name: name, Lease: int64(la), Value: []byte("a")})
	if err != nil {
		t.Fatalf("campaign a: %v", err)
	}
	la1 := ca.Leader
	if string(la1.Name) != "el" || string(la1.Key) != lockKey("el", la) || la1.Lease != int64(la) || la1.Rev != ca.Header.GetRevision() {
		t.Fatalf("campaign a leader %v header %v", la1, ca.Header)
	}
	lr, err := ec.Leader(ctx(t), &v3electionpb.LeaderRequest{Name: name})
	if err != nil || string(lr.Kv.Value) != "a" || lr.Kv.CreateRevision != la1.Rev || lr.Kv.Lease != int64(la) {
		t.Fatalf("leader: %v %v", lr, err)
	}

	octx, ocancel := context.WithCancel(context.Background())
	defer ocancel()
	obs, err := ec.Observe(octx, &v3electionpb.LeaderRequest{Name: name})
	if err != nil {
		t.Fatalf("observe: %v", err)
	}
	observed := make(chan *v3electionpb.LeaderResponse, 16)
	go func() {
		defer close(observed)
		for {
			r, err := obs.Recv()
			if err != nil {
				return
			}
			observed <- r
		}
	}()
	expectObserved := func(val string) {
		t.Helper()
		select {
		case r, ok := <-observed:
			if !ok {
				t.Fatalf("observe ended, want %q", val)
			}
			if string(r.Kv.Value) != val || r.Header.GetRevision() < r.Kv.ModRevision {
				t.Fatalf("observed %v, want value %q", r, val)
			}
		case <-time.After(opTimeout):
			t.Fatalf("nothing observed, want %q", val)
		}
	}
	expectObserved("a")

	cb := async(func() (*v3electionpb.CampaignResponse, error) {
		return ec.Campaign(ctx(t), &v3electionpb.CampaignRequest{Name: name, Lease: int64(lb), Value: []byte("b")})
	})
	requireBlocked(t, cb, "campaign b")

	if _, err := ec.Proclaim(ctx(t), &v3electionpb.ProclaimRequest{Leader: la1, Value: []byte("a2")}); err != nil {
		t.Fatalf("proclaim a2: %v", err)
	}
	expectObserved("a2")
	if lr, err := ec.Leader(ctx(t), &v3electionpb.LeaderRequest{Name: name}); err != nil || string(lr.Kv.Value) != "a2" {
		t.Fatalf("leader after proclaim: %v %v", lr, err)
	}

	// b's key exists but is not the leader's; a wrong revision is not the leader.
	notLeader := &v3electionpb.LeaderKey{Name: name, Key: []byte(lockKey("el", lb)), Rev: la1.Rev, Lease: int64(lb)}
	_, err = ec.Proclaim(ctx(t), &v3electionpb.ProclaimRequest{Leader: notLeader, Value: []byte("x")})
	framework.RequireGRPCError(t, err, codes.Unknown, "election: not leader")
	_, err = ec.Proclaim(ctx(t), &v3electionpb.ProclaimRequest{Value: []byte("x")})
	framework.RequireGRPCError(t, err, codes.Unknown, `"leader" field must be provided`)
	_, err = ec.Resign(ctx(t), &v3electionpb.ResignRequest{})
	framework.RequireGRPCError(t, err, codes.Unknown, `"leader" field must be provided`)
	// Resigning as a non-leader is no error and changes nothing.
	if _, err := ec.Resign(ctx(t), &v3electionpb.ResignRequest{Leader: notLeader}); err != nil {
		t.Fatalf("resign as non-leader: %v", err)
	}
	requireBlocked(t, cb, "campaign b")

	if _, err := ec.Resign(ctx(t), &v3electionpb.ResignRequest{Leader: la1}); err != nil {
		t.Fatalf("resign a: %v", err)
	}
	lb1 := await(t, cb, "campaign b after a resigned").Leader
	if string(lb1.Key) != lockKey("el", lb) || lb1.Lease != int64(lb) {
		t.Fatalf("campaign b leader %v", lb1)
	}
	expectObserved("b")
	if lr, err := ec.Leader(ctx(t), &v3electionpb.LeaderRequest{Name: name}); err != nil || string(lr.Kv.Value) != "b" {
		t.Fatalf("leader b: %v %v", lr, err)
	}
	// The old leader key no longer proclaims.
	_, err = ec.Proclaim(ctx(t), &v3electionpb.ProclaimRequest{Leader: la1, Value: []byte("late")})
	framework.RequireGRPCError(t, err, codes.Unknown, "election: not leader")

	// Campaigning again with the leader's lease and a new value proclaims it.
	again, err := ec.Campaign(ctx(t), &v3electionpb.CampaignRequest{Name: name, Lease: int64(lb), Value: []byte("b2")})
	if err != nil || again.Leader.Rev != lb1.Rev {
		t.Fatalf("re-campaign b: %v %v", again, err)
	}
	expectObserved("b2")

	if _, err := ec.Resign(ctx(t), &v3electionpb.ResignRequest{Leader: lb1}); err != nil {
		t.Fatalf("resign b: %v", err)
	}
	_, err = ec.Leader(ctx(t), &v3electionpb.LeaderRequest{Name: name})
	framework.RequireGRPCError(t, err, codes.Unknown, "election: no leader")

	// With no leader, Observe waits for the next candidate.
	cc, err := ec.Campaign(ctx(t), &v3electionpb.CampaignRequest{Name: name, Lease: int64(la), Value: []byte("c")})
	if err != nil {
		t.Fatalf("campaign c: %v", err)
	}
	expectObserved("c")
	// Revoking the leader's lease ends its leadership.
	if _, err := cli.Revoke(ctx(t), la); err != nil {
		t.Fatal(err)
	}
	_, err = ec.Proclaim(ctx(t), &v3electionpb.ProclaimRequest{Leader: cc.Leader, Value: []byte("c2")})
	framework.RequireGRPCError(t, err, codes.Unknown, "election: not leader")
}

// TestEtcdctlLockElect runs etcdctl lock and elect (clientv3/concurrency, which needs
// Watch) against the services' keys.
func TestEtcdctlLockElect(t *testing.T) {
	m := start(t)
	cli := m.Client()
	lc := lockClient(m)
	ec := electionClient(m)
	l1 := grant(t, cli, 60)

	// etcdctl lock waits for the service's holder, then runs its command.
	r1, err := lc.Lock(ctx(t), &v3lockpb.LockRequest{Name: []byte("ctl"), Lease: int64(l1)})
	if err != nil {
		t.Fatal(err)
	}
	ctl := async(func() (framework.Result, error) {
		r := framework.Run(t, 30*time.Second, "", nil, framework.EtcdctlBin(t),
			"--endpoints="+m.ClientURL, "lock", "ctl", "--", "sh", "-c", "echo held $ETCD_LOCK_KEY")
		return r, r.Err
	})
	requireBlocked(t, ctl, "etcdctl lock")
	if _, err := lc.Unlock(ctx(t), &v3lockpb.UnlockRequest{Key: r1.Key}); err != nil {
		t.Fatal(err)
	}
	res := await(t, ctl, "etcdctl lock")
	if !strings.HasPrefix(res.Stdout, "held ctl/") {
		t.Fatalf("etcdctl lock printed %q (stderr %q)", res.Stdout, res.Stderr)
	}
	// etcdctl unlocked after its command: the service locks at once.
	if _, err := lc.Lock(ctx(t), &v3lockpb.LockRequest{Name: []byte("ctl"), Lease: int64(l1)}); err != nil {
		t.Fatal(err)
	}

	// etcdctl elect wins an empty election; the service reports it as leader.
	p := startCtl(t, m, "elect", "ctlel", "p1")
	key := p.line(t)
	if !strings.HasPrefix(key, "ctlel/") || p.line(t) != "p1" {
		t.Fatalf("etcdctl elect printed key %q", key)
	}
	lr, err := ec.Leader(ctx(t), &v3electionpb.LeaderRequest{Name: []byte("ctlel")})
	if err != nil || string(lr.Kv.Key) != key || string(lr.Kv.Value) != "p1" {
		t.Fatalf("leader: %v %v", lr, err)
	}
	// A service campaign waits for it; SIGINT makes etcdctl resign.
	l2 := grant(t, cli, 60)
	camp := async(func() (*v3electionpb.CampaignResponse, error) {
		return ec.Campaign(ctx(t), &v3electionpb.CampaignRequest{Name: []byte("ctlel"), Lease: int64(l2), Value: []byte("svc")})
	})
	requireBlocked(t, camp, "campaign behind etcdctl elect")

	// etcdctl elect -l observes the leader.
	obs := startCtl(t, m, "elect", "-l", "ctlel")
	if k, v := obs.line(t), obs.line(t); k != key || v != "p1" {
		t.Fatalf("etcdctl elect -l printed %q %q", k, v)
	}
	p.stop(t)
	await(t, camp, "campaign after etcdctl resigned")
	if k, v := obs.line(t), obs.line(t); k != lockKey("ctlel", l2) || v != "svc" {
		t.Fatalf("etcdctl elect -l printed %q %q after the change", k, v)
	}
	obs.stop(t)
}

// ctlProc is a long-running etcdctl whose stdout is read line by line.
type ctlProc struct {
	cmd   *exec.Cmd
	lines chan string
	done  chan struct{}
}

func startCtl(t *testing.T, m *framework.Member, args ...string) *ctlProc {
	t.Helper()
	cctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(cctx, framework.EtcdctlBin(t), append([]string{"--endpoints=" + m.ClientURL}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &ctlProc{cmd: cmd, lines: make(chan string, 64), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, out)
		close(p.lines)
	}()
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
		if t.Failed() {
			t.Logf("etcdctl %v stderr: %s", args, stderr.String())
		}
	})
	return p
}

func (p *ctlProc) line(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatalf("%v: output ended", p.cmd.Args)
		}
		return l
	case <-time.After(opTimeout):
		t.Fatalf("%v: no output line within %v", p.cmd.Args, opTimeout)
	}
	return ""
}

// stop sends SIGINT and waits for a clean exit.
func (p *ctlProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		if !p.cmd.ProcessState.Success() {
			t.Fatalf("%v exited %v", p.cmd.Args, p.cmd.ProcessState)
		}
	case <-time.After(opTimeout):
		t.Fatalf("%v did not exit on SIGINT", p.cmd.Args)
	}
}
