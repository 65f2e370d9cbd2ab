package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Bounds of the membership tests.
const (
	// mbCatchUpBound bounds how long a new member may take to catch up
	// (promotion refused until then) or a removed member to stop.
	mbCatchUpBound = 30 * time.Second
	mbCallTimeout  = 5 * time.Second
)

func mbCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), mbCallTimeout)
}

// mbMemberID is the id of the member named name in a member list.
func mbMemberID(t *testing.T, cli *clientv3.Client, name string) uint64 {
	t.Helper()
	ctx, cancel := mbCtx()
	defer cancel()
	ml, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatalf("MemberList: %v", err)
	}
	for _, m := range ml.Members {
		if m.Name == name {
			return m.ID
		}
	}
	t.Fatalf("no member named %s in %v", name, ml.Members)
	return 0
}

// mbWaitMembers waits (bounded) until the member list has exactly the names
// in want, all published, with the learner flags of want.
func mbWaitMembers(t *testing.T, cli *clientv3.Client, want map[string]bool) {
	t.Helper()
	deadline := time.Now().Add(mbCatchUpBound)
	var last string
	for i := 0; i < 300; i++ {
		ctx, cancel := mbCtx()
		ml, err := cli.MemberList(ctx)
		cancel()
		if err == nil {
			got := map[string]bool{}
			var parts []string
			for _, m := range ml.Members {
				got[m.Name] = m.IsLearner
				parts = append(parts, fmt.Sprintf("%s(learner=%v,clientURLs=%v)", m.Name, m.IsLearner, m.ClientURLs))
			}
			last = strings.Join(parts, " ")
			if len(got) == len(want) && len(ml.Members) == len(want) {
				ok := true
				for n, l := range want {
					if gl, found := got[n]; !found || gl != l {
						ok = false
					}
				}
				if ok {
					return
				}
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("member list never became %v; last: %s", want, last)
}

// mbFollowerVoter is a running voter that is not the leader.
func mbFollowerVoter(t *testing.T, c *framework.Cluster) *framework.Member {
	t.Helper()
	for _, m := range c.Followers() {
		if st, err := m.Status(); err == nil && !st.IsLearner {
			return m
		}
	}
	t.Fatal("no voter follows the leader")
	return nil
}

// mbPromote promotes a learner through a voter that is not the leader (which
// forwards it to the leader), retrying (bounded) while it is refused for not
// having caught up yet.
func mbPromote(t *testing.T, c *framework.Cluster, id uint64) {
	t.Helper()
	deadline := time.Now().Add(mbCatchUpBound)
	var last error
	for i := 0; i < 300; i++ {
		via := mbFollowerVoter(t, c)
		ctx, cancel := mbCtx()
		_, err := via.Client().MemberPromote(ctx, id)
		cancel()
		if err == nil {
			return
		}
		last = err
		if !errors.Is(err, rpctypes.ErrMemberLearnerNotReady) &&
			!strings.Contains(err.Error(), "in sync with leader") {
			t.Fatalf("MemberPromote(%x): %v", id, err)
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("learner %x not promoted within %v: %v", id, mbCatchUpBound, last)
}

// mbWhileUnhealthy calls f until it fails with something else than "unhealthy
// cluster" (bounded): members refuse additions until each has reached every voter
// for 5 s, and each member gets there at its own time.
func mbWhileUnhealthy(f func(ctx context.Context) error) error {
	var err error
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; i < 100; i++ {
		ctx, cancel := mbCtx()
		err = f(ctx)
		cancel()
		if !errors.Is(err, rpctypes.ErrUnhealthy) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
	return err
}

func mbExpectErr(t *testing.T, what string, err error, want error) {
	t.Helper()
	if err == nil || err.Error() != want.Error() {
		t.Fatalf("%s: got %v, want %v", what, err, want)
	}
}

// Add a learner under write load, let it catch up from a snapshot, promote it, remove an
// original member (which stops itself), move an existing member to a new peer
// URL and move the leadership: no acknowledged write is lost and every member
// ends with the same HashKV.
func TestClusterMembershipChanges(t *testing.T) {
	// Small snapshots, so the learner can only catch up from one.
	c := framework.StartCluster(t, 3, framework.Options{Flags: snapshotFlags})
	cli := c.Client()
	ws := startWriteStream(cli, "/mb/", 2, 100000)
	ws.waitCount(t, 50, 10*time.Second, "before membership changes")

	// Refusals, with etcd's errors. A member is only added once every voter
	// has been reachable for 5 s: "unhealthy cluster" before that.
	m1ID := mbMemberID(t, cli, "m1")
	err := mbWhileUnhealthy(func(ctx context.Context) error {
		_, err := cli.MemberAddAsLearner(ctx, []string{c.Members[0].PeerURL})
		return err
	})
	mbExpectErr(t, "MemberAdd with a taken peer URL", err, rpctypes.ErrPeerURLExist)
	ctx, cancel := mbCtx()
	_, err = cli.MemberRemove(ctx, 0x1234)
	cancel()
	mbExpectErr(t, "MemberRemove of an unknown id", err, rpctypes.ErrMemberNotFound)
	ctx, cancel = mbCtx()
	_, err = c.Leader().Client().MemberPromote(ctx, m1ID)
	cancel()
	mbExpectErr(t, "MemberPromote of a voter", err, rpctypes.ErrMemberNotLearner)

	// A learner joins and catches up while writes flow.
	m4 := c.NewJoiningMember("m4")
	var added *clientv3.MemberAddResponse
	err = mbWhileUnhealthy(func(ctx context.Context) (err error) {
		added, err = cli.MemberAddAsLearner(ctx, []string{m4.PeerURL})
		return err
	})
	if err != nil {
		t.Fatalf("MemberAddAsLearner: %v", err)
	}
	if !added.Member.IsLearner || len(added.Members) != 4 {
		t.Fatalf("MemberAddAsLearner answered %v", added)
	}
	err = mbWhileUnhealthy(func(ctx context.Context) error {
		_, err := cli.MemberAddAsLearner(ctx, []string{fmt.Sprintf("http://127.0.0.1:%d", framework.FreePort(t))})
		return err
	})
	mbExpectErr(t, "a second learner", err, rpctypes.ErrTooManyLearners)
	ctx, cancel = mbCtx()
	_, err = mbFollowerVoter(t, c).Client().MemberPromote(ctx, added.Member.ID)
	cancel()
	mbExpectErr(t, "promoting a learner that never started, through a follower", err, rpctypes.ErrMemberLearnerNotReady)

	// The leader's log moves well past its last snapshot's retained entries.
	ws.waitCount(t, ws.count()+300, 20*time.Second, "before starting m4")
	if err := m4.Start(); err != nil {
		t.Fatalf("start m4: %v", err)
	}
	if err := m4.WaitReady(mbCatchUpBound); err != nil {
		t.Fatalf("m4 not ready: %v", err)
	}
	st, err := m4.Status()
	if err != nil || !st.IsLearner {
		t.Fatalf("m4 Status = %+v, %v; want a learner", st, err)
	}
	if got := metricSum(t, m4, "etcd_network_snapshot_receive_success"); got < 1 {
		t.Fatalf("m4 caught up without a snapshot (etcd_network_snapshot_receive_success %v)", got)
	}
	mbWaitMembers(t, cli, map[string]bool{"m1": false, "m2": false, "m3": false, "m4": true})
	mbPromote(t, c, added.Member.ID)
	mbWaitMembers(t, cli, map[string]bool{"m1": false, "m2": false, "m3": false, "m4": false})
	t.Logf("m4 promoted with %d writes acknowledged", ws.count())

	// Removing m1 (whatever its role) stops it; the rest carries on.
	m1 := c.Members[0]
	ctx, cancel = mbCtx()
	_, err = c.Members[1].Client().MemberRemove(ctx, m1ID)
	cancel()
	if err != nil {
		t.Fatalf("MemberRemove(m1): %v", err)
	}
	if _, exited := m1.WaitExit(mbCatchUpBound); !exited {
		t.Fatalf("m1 still running %v after its removal; log tail:\n%s", mbCatchUpBound, m1.LogTail(20))
	}
	if !m1.IsEtcd && !m1.LogContains("the member has been permanently removed from the cluster") {
		t.Fatalf("m1 stopped without saying it was removed; log tail:\n%s", m1.LogTail(20))
	}
	cli2 := c.Members[1].NewClient()
	mbWaitMembers(t, cli2, map[string]bool{"m2": false, "m3": false, "m4": false})
	ctx, cancel = mbCtx()
	_, err = cli2.MemberRemove(ctx, m1ID)
	cancel()
	mbExpectErr(t, "removing a removed member", err, rpctypes.ErrMemberNotFound)
	ws.waitCount(t, ws.count()+50, 15*time.Second, "after removing m1")

	// m2 moves to another peer port.
	m2 := c.Members[1]
	m2ID := mbMemberID(t, cli2, "m2")
	newURL := fmt.Sprintf("http://127.0.0.1:%d", framework.FreePort(t))
	ctx, cancel = mbCtx()
	_, err = c.Members[2].Client().MemberUpdate(ctx, m2ID, []string{newURL})
	cancel()
	if err != nil {
		t.Fatalf("MemberUpdate(m2): %v", err)
	}
	m2.Stop()
	m2.PeerURL = newURL
	if err := m2.Start(); err != nil {
		t.Fatalf("restart m2 on %s: %v", newURL, err)
	}
	if err := m2.WaitReady(mbCatchUpBound); err != nil {
		t.Fatalf("m2 not ready on its new peer URL: %v", err)
	}
	ws.waitCount(t, ws.count()+50, 15*time.Second, "after moving m2")

	// Leadership moves to a chosen follower; a follower cannot move it.
	lead := c.Leader()
	var target *framework.Member
	for _, m := range c.Running() {
		if m != lead {
			target = m
		}
	}
	targetID := mbMemberID(t, cli2, target.Name)
	ctx, cancel = mbCtx()
	_, err = target.Client().MoveLeader(ctx, targetID)
	cancel()
	mbExpectErr(t, "MoveLeader on a follower", err, rpctypes.ErrNotLeader)
	if out, stderr, err := lead.Etcdctl("move-leader", fmt.Sprintf("%x", targetID)); err != nil {
		t.Fatalf("etcdctl move-leader: %v\n%s%s", err, out, stderr)
	}
	if got := c.Leader(); got != target {
		t.Fatalf("leader after move-leader is %s, want %s", got.Name, target.Name)
	}

	acked := ws.halt(t)
	t.Logf("%d writes acknowledged across the membership changes (errors: %v)", len(acked), ws.errors())
	clRequireAcked(t, m4, "/mb/", acked, mbValueOf)
	clRequireAcked(t, m2, "/mb/", acked, mbValueOf)
	c.RequireHashKVEqual(t, 0)
}

// mbValueOf is the value the write stream puts under key.
func mbValueOf(key string) string { return "val-" + key }

// A member joining with an --initial-cluster that does not name the cluster's
// members (here: one of them is missing) is refused with etcd's error, before
// it ever talks raft to the cluster, which keeps its 3 members.
func TestClusterJoinRefusedWithWrongInitialCluster(t *testing.T) {
	c := startCluster(t, 3)
	cli := c.Client()
	bad := framework.NewMember(t, framework.Options{Name: "m4"})
	err := mbWhileUnhealthy(func(ctx context.Context) error {
		_, err := cli.MemberAddAsLearner(ctx, []string{bad.PeerURL})
		return err
	})
	if err != nil {
		t.Fatalf("MemberAddAsLearner: %v", err)
	}
	bad = framework.NewMember(t, framework.Options{Name: "m4", Flags: []string{
		"--initial-advertise-peer-urls=" + bad.PeerURL, "--listen-peer-urls=" + bad.PeerURL,
		"--initial-cluster=m1=" + c.Members[0].PeerURL + ",m2=" + c.Members[1].PeerURL + ",m4=" + bad.PeerURL,
		"--initial-cluster-state=existing", "--initial-cluster-token=" + c.Token,
	}})
	if err := bad.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	exitErr, exited := bad.WaitExit(mbCatchUpBound)
	if !exited || exitErr == nil {
		t.Fatalf("m4 with a wrong --initial-cluster still running or exited cleanly (%v); log tail:\n%s", exitErr, bad.LogTail(20))
	}
	if !bad.LogContains("member count is unequal") {
		t.Fatalf("m4 exited without etcd's reason; log tail:\n%s", bad.LogTail(20))
	}
	mbWaitMembers(t, cli, map[string]bool{"m1": false, "m2": false, "m3": false, "": true})
}

// A member restarted with the data dir of a cluster its peers no longer
// belong to (they were re-created as another cluster on the same addresses)
// stops with a clear error instead of running cut off on stale data. etcd
// keeps such a member running, refused by its peers; Cairn-only.
func TestClusterStaleDataDirOfAnotherClusterStops(t *testing.T) {
	framework.CairnOnly(t, "etcd keeps a member whose peers are in another cluster running")
	c := startCluster(t, 3)
	mustPut(t, c.Client(), "old", "1")
	for _, m := range c.Members {
		m.Stop()
	}
	// m1 and m2 start afresh as a new cluster (another token); m3 keeps its data.
	for _, m := range c.Members[:2] {
		if err := os.RemoveAll(m.DataDir); err != nil {
			t.Fatal(err)
		}
		m.AddFlags("--initial-cluster-token=another-cluster")
		if err := m.Start(); err != nil {
			t.Fatalf("start %s: %v", m.Name, err)
		}
	}
	stale := c.Members[2]
	if err := stale.Start(); err != nil {
		t.Fatalf("start %s: %v", stale.Name, err)
	}
	exitErr, exited := stale.WaitExit(mbCatchUpBound)
	if !exited || exitErr == nil || !stale.LogContains("cluster ID mismatch: this data dir belongs to cluster") {
		t.Fatalf("%s with another cluster's data dir: exited=%v (%v); log tail:\n%s", stale.Name, exited, exitErr, stale.LogTail(20))
	}
}

// A voter can be added to a single-member cluster (etcd's special case of its started
// quorum check: the way to grow a one-node cluster); a second one then is refused, the
// new member not having started. Cairn and etcd alike.
func TestMemberAddVoterToSingleMember(t *testing.T) {
	t.Parallel()
	p := framework.StartPair(t)
	var got [2]string
	for i, m := range p.Members() {
		ctx, cancel := mbCtx()
		added, err := m.Client().MemberAdd(ctx, []string{"http://127.0.0.1:1"})
		cancel()
		if err != nil {
			got[i] = "add: " + err.Error()
			continue
		}
		got[i] = fmt.Sprintf("add: %d members, new one learner=%v peers=%v", len(added.Members), added.Member.IsLearner, added.Member.PeerURLs)
		ctx, cancel = mbCtx()
		_, err = m.Client().MemberAdd(ctx, []string{"http://127.0.0.1:2"})
		cancel()
		got[i] += fmt.Sprintf("; second add: %v", err)
	}
	t.Logf("etcd: %s", got[1])
	if got[0] != got[1] {
		t.Fatalf("member add on a single-member cluster:\n  %s: %s\n  etcd: %s", binName(p.Cairn), got[0], got[1])
	}
	if !strings.HasPrefix(got[1], "add: 2 members") {
		t.Fatalf("etcd refused the first voter: %s", got[1])
	}
}
