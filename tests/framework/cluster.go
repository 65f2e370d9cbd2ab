package framework

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Cluster timeouts.
const (
	// DefaultLeaderTimeout bounds Cluster.Leader and the leader wait of
	// StartCluster.
	DefaultLeaderTimeout = 15 * time.Second
	// DefaultHashKVTimeout bounds Cluster.RequireHashKVEqual.
	DefaultHashKVTimeout = 20 * time.Second
	// ClusterHeartbeatMs and ClusterElectionMs are the raft timings a
	// cluster is started with unless Options.Flags set them.
	ClusterHeartbeatMs = 50
	ClusterElectionMs  = 500
	statusCallTimeout  = 2 * time.Second
)

// Cluster is n server processes (Cairn or, under CAIRN_TEST_AGAINST=etcd,
// the reference etcd) forming one raft cluster on 127.0.0.1, killed and
// cleaned up when the test ends.
type Cluster struct {
	t testing.TB
	// Members are m1..mn, in --initial-cluster order.
	Members []*Member
	// Token is the --initial-cluster-token.
	Token string
	// InitialCluster is the --initial-cluster value.
	InitialCluster string

	opts Options

	mu     sync.Mutex
	client *clientv3.Client
}

var clusterSeq struct {
	sync.Mutex
	n int
}

// StartCluster starts an n-member cluster (names m1..mn, --initial-cluster
// listing all, --initial-cluster-state new, one --initial-cluster-token,
// --heartbeat-interval 50 and --election-timeout 500 unless opts.Flags set
// them), all members concurrently, and waits until every member is ready
// (see Member.WaitReady) and a leader all members agree on exists. opts.Name
// is ignored; opts.Flags, Env, Binary, OmitFlags and ReadyTimeout apply to
// every member, and opts.ForMember adjusts each member's options.
func StartCluster(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("StartCluster: n=%d", n)
	}
	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		c := newCluster(t, n, opts)
		err := c.start()
		if err == nil {
			if _, err = c.WaitLeader(DefaultLeaderTimeout); err == nil {
				return c
			}
		}
		lastErr = err
		portRace := false
		for _, m := range c.Members {
			m.Kill()
			if m.LogContains("address already in use") {
				portRace = true
			}
		}
		if !portRace {
			break
		}
		t.Logf("cluster: port race (%v); retrying with new ports", err)
	}
	t.Fatalf("cluster of %d did not become ready: %v", n, lastErr)
	return nil
}

// NewCluster prepares a cluster as StartCluster does without starting it, for tests
// that lay out the members' data dirs first (a restored snapshot); Start starts it.
func NewCluster(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	return newCluster(t, n, opts)
}

// Start starts a cluster from NewCluster and waits for its members and a leader.
func (c *Cluster) Start() error {
	if err := c.start(); err != nil {
		return err
	}
	_, err := c.WaitLeader(DefaultLeaderTimeout)
	return err
}

// raftTimingFlags are the cluster's --heartbeat-interval and --election-timeout,
// unless flags set them.
func raftTimingFlags(flags []string) []string {
	var out []string
	if !hasFlag(flags, "--heartbeat-interval") {
		out = append(out, fmt.Sprintf("--heartbeat-interval=%d", ClusterHeartbeatMs))
	}
	if !hasFlag(flags, "--election-timeout") {
		out = append(out, fmt.Sprintf("--election-timeout=%d", ClusterElectionMs))
	}
	return out
}

func hasFlag(flags []string, name string) bool {
	for _, f := range flags {
		if f == name || strings.HasPrefix(f, name+"=") {
			return true
		}
	}
	return false
}

func newCluster(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	clusterSeq.Lock()
	clusterSeq.n++
	seq := clusterSeq.n
	clusterSeq.Unlock()
	c := &Cluster{t: t, Token: fmt.Sprintf("cairn-e2e-cluster-%d", seq), opts: opts}
	var peers []string
	for i := 1; i <= n; i++ {
		o := opts
		o.Name = fmt.Sprintf("m%d", i)
		if opts.ForMember != nil {
			opts.ForMember(i-1, &o)
		}
		m := NewMember(t, o)
		c.Members = append(c.Members, m)
		peers = append(peers, m.Name+"="+m.PeerURL)
	}
	c.InitialCluster = strings.Join(peers, ",")
	var extra []string
	extra = append(extra, "--initial-cluster="+c.InitialCluster, "--initial-cluster-token="+c.Token)
	extra = append(extra, raftTimingFlags(opts.Flags)...)
	for _, m := range c.Members {
		o := m.opts
		o.OmitFlags = append(append([]string(nil), opts.OmitFlags...), "--initial-cluster", "--initial-cluster-token")
		// Generated cluster flags first, so that opts.Flags (and ForMember's) can override.
		o.Flags = append(append([]string(nil), extra...), o.Flags...)
		m.mu.Lock()
		m.opts = o
		m.mu.Unlock()
	}
	return c
}

// NewJoiningMember prepares (without starting) a member that joins the running cluster
// once added to it (etcdctl member add / clientv3 MemberAdd with its PeerURL): it starts
// with --initial-cluster-state existing and an --initial-cluster of the members that are
// running plus itself, as `etcdctl member add` tells an operator to. It is appended to
// c.Members.
func (c *Cluster) NewJoiningMember(name string) *Member {
	c.t.Helper()
	o := c.opts
	o.Name = name
	if c.opts.ForMember != nil {
		c.opts.ForMember(len(c.Members), &o)
	}
	m := NewMember(c.t, o)
	var peers []string
	for _, r := range c.Running() {
		peers = append(peers, r.Name+"="+r.PeerURL)
	}
	peers = append(peers, m.Name+"="+m.PeerURL)
	flags := []string{"--initial-cluster=" + strings.Join(peers, ","), "--initial-cluster-token=" + c.Token,
		"--initial-cluster-state=existing"}
	flags = append(flags, raftTimingFlags(c.opts.Flags)...)
	o.OmitFlags = append(append([]string(nil), c.opts.OmitFlags...), "--initial-cluster", "--initial-cluster-token", "--initial-cluster-state")
	o.Flags = append(flags, c.opts.Flags...)
	m.mu.Lock()
	m.opts = o
	m.mu.Unlock()
	c.Members = append(c.Members, m)
	return m
}

// start starts every member and waits (concurrently) until each is ready.
func (c *Cluster) start() error {
	for _, m := range c.Members {
		if err := m.Start(); err != nil {
			return fmt.Errorf("start %s: %w", m.Name, err)
		}
	}
	errs := make([]error, len(c.Members))
	var wg sync.WaitGroup
	for i, m := range c.Members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.WaitReady(m.readyTimeout())
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Endpoints returns the client URLs of all members (running or not).
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// Client returns a shared clientv3 client with all endpoints, closed when
// the test ends.
func (c *Cluster) Client() *clientv3.Client {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client == nil {
		c.client = c.newClientLocked()
	}
	return c.client
}

// NewClient returns a new clientv3 client with all endpoints, closed when
// the test ends.
func (c *Cluster) NewClient() *clientv3.Client {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.newClientLocked()
}

func (c *Cluster) newClientLocked() *clientv3.Client {
	c.t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.Endpoints(),
		DialTimeout: DefaultDialTimeout,
		TLS:         c.Members[0].ClientTLSConfig(),
		Logger:      zap.NewNop(),
	})
	if err != nil {
		c.t.Fatalf("clientv3.New(%v): %v", c.Endpoints(), err)
	}
	c.t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// Running returns the members whose process is running.
func (c *Cluster) Running() []*Member {
	var out []*Member
	for _, m := range c.Members {
		if m.Running() {
			out = append(out, m)
		}
	}
	return out
}

// Status calls Maintenance.Status on the member's own endpoint over a fresh
// connection (so a restarted member is reached at once), bounded by 2 s.
func (m *Member) Status() (*clientv3.StatusResponse, error) {
	cli, err := m.newClient(DefaultDialTimeout)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), statusCallTimeout)
	defer cancel()
	return cli.Status(ctx, m.ClientURL)
}

// MemberID returns the member's raft ID (Status Header.MemberId), bounded.
func (m *Member) MemberID() (uint64, error) {
	var lastErr error
	for i := 0; i < 20; i++ {
		st, err := m.Status()
		if err == nil {
			return st.Header.MemberId, nil
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s: Status: %w", m.Name, lastErr)
}

// Leader returns the member that is leader (see WaitLeader), failing the
// test after DefaultLeaderTimeout.
func (c *Cluster) Leader() *Member {
	c.t.Helper()
	l, err := c.WaitLeader(DefaultLeaderTimeout)
	if err != nil {
		c.t.Fatal(err)
	}
	return l
}

// Followers returns the running members other than the current leader.
func (c *Cluster) Followers() []*Member {
	c.t.Helper()
	l := c.Leader()
	var out []*Member
	for _, m := range c.Running() {
		if m != l {
			out = append(out, m)
		}
	}
	return out
}

// WaitLeader waits up to timeout until a running member's Status says it is
// leader (Leader == Header.MemberId) and every running member's Status
// answers with that Leader. It returns that member.
func (c *Cluster) WaitLeader(timeout time.Duration) (*Member, error) {
	deadline := time.Now().Add(timeout)
	var last string
	for i := 0; i < 10000; i++ {
		l, why := c.leaderOnce()
		if l != nil {
			return l, nil
		}
		last = why
		if !time.Now().Before(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, fmt.Errorf("no leader agreed on by all running members within %v: %s", timeout, last)
}

func (c *Cluster) leaderOnce() (*Member, string) {
	running := c.Running()
	if len(running) == 0 {
		return nil, "no member running"
	}
	type res struct {
		st  *clientv3.StatusResponse
		err error
	}
	out := make([]res, len(running))
	var wg sync.WaitGroup
	for i, m := range running {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := m.Status()
			out[i] = res{st, err}
		}()
	}
	wg.Wait()
	var leader *Member
	var leaderID uint64
	var desc []string
	for i, m := range running {
		if out[i].err != nil {
			desc = append(desc, fmt.Sprintf("%s: %v", m.Name, out[i].err))
			continue
		}
		st := out[i].st
		desc = append(desc, fmt.Sprintf("%s: id=%x leader=%x term=%d", m.Name, st.Header.MemberId, st.Leader, st.RaftTerm))
		if st.Leader != 0 && st.Leader == st.Header.MemberId {
			leader, leaderID = m, st.Leader
		}
	}
	why := strings.Join(desc, "; ")
	if leader == nil {
		return nil, why
	}
	for i := range running {
		if out[i].err != nil || out[i].st.Leader != leaderID {
			return nil, why
		}
	}
	return leader, why
}

// HashKVs waits (up to timeout) until every running member answers HashKV
// at rev and returns the responses, by member name. Members that have not
// applied rev yet ("mvcc: required revision is a future revision") are
// retried.
func (c *Cluster) HashKVs(rev int64, timeout time.Duration) (map[string]*clientv3.HashKVResponse, error) {
	deadline := time.Now().Add(timeout)
	out := map[string]*clientv3.HashKVResponse{}
	for _, m := range c.Running() {
		var lastErr error
		for i := 0; ; i++ {
			cli, err := m.newClient(DefaultDialTimeout)
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				var r *clientv3.HashKVResponse
				r, err = cli.HashKV(ctx, m.ClientURL, rev)
				cancel()
				_ = cli.Close()
				if err == nil {
					out[m.Name] = r
					break
				}
			}
			lastErr = err
			if !time.Now().Before(deadline) || i > 1000 {
				return out, fmt.Errorf("%s: HashKV(%d): %w", m.Name, rev, lastErr)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return out, nil
}

// RequireHashKVEqual asserts that every running member reports the same
// HashKV hash and compact revision at rev (within DefaultHashKVTimeout).
func (c *Cluster) RequireHashKVEqual(t testing.TB, rev int64) {
	t.Helper()
	hs, err := c.HashKVs(rev, DefaultHashKVTimeout)
	if err != nil {
		t.Fatal(err)
	}
	var first string
	var firstHash uint32
	var firstCompact int64
	var desc []string
	same := true
	for _, m := range c.Running() {
		r := hs[m.Name]
		desc = append(desc, fmt.Sprintf("%s: hash=%d compact_revision=%d header.revision=%d", m.Name, r.Hash, r.CompactRevision, r.Header.Revision))
		if first == "" {
			first, firstHash, firstCompact = m.Name, r.Hash, r.CompactRevision
			continue
		}
		if r.Hash != firstHash || r.CompactRevision != firstCompact {
			same = false
		}
	}
	if !same {
		t.Fatalf("HashKV at revision %d differs between members:\n  %s", rev, strings.Join(desc, "\n  "))
	}
	t.Logf("HashKV at revision %d equal on %d members (hash=%d)", rev, len(hs), firstHash)
}
