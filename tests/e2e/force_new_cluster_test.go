package e2e

import (
	"fmt"
	"testing"

	"github.com/cairn-kv/cairn/tests/framework"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestForceNewCluster: a member of a 3-member cluster, restarted alone with
// --force-new-cluster after all three stopped, becomes the leader of a one-member
// cluster with all its data (keys, revision, compaction), lists itself as the only
// member, takes writes, and restarts so. Runs against etcd too.
func TestForceNewCluster(t *testing.T) {
	// Small snapshots: the forced member restarts from one, past which the log goes on.
	c := framework.StartCluster(t, 3, framework.Options{Flags: []string{"--snapshot-count=20"}})
	cli := c.Client()
	var rev int64
	for i := 0; i < 50; i++ {
		rev = mustPut(t, cli, fmt.Sprintf("fnc/%02d", i), fmt.Sprint(i)).Header.Revision
	}
	if _, err := cli.Compact(ctx(t), 10); err != nil {
		t.Fatal(err)
	}
	m := c.Members[2]
	id, err := m.MemberID()
	if err != nil {
		t.Fatal(err)
	}
	// Every member has every write before they stop.
	waitFor(t, "all members at the last revision", func() bool {
		for _, x := range c.Members {
			st, err := x.Status()
			if err != nil || st.Header.Revision != rev {
				return false
			}
		}
		return true
	})
	for _, x := range c.Members {
		x.Stop()
	}

	m.AddFlags("--force-new-cluster")
	check := func(when string) {
		t.Helper()
		mc := m.Client()
		ml, err := mc.MemberList(ctx(t))
		if err != nil {
			t.Fatalf("%s: member list: %v", when, err)
		}
		if len(ml.Members) != 1 || ml.Members[0].ID != id || ml.Members[0].IsLearner {
			t.Fatalf("%s: member list %v; want only %x", when, ml.Members, id)
		}
		waitFor(t, when+": leader of its own", func() bool {
			st, err := m.Status()
			return err == nil && st.Leader == id
		})
		g := mustGet(t, mc, "fnc/", clientv3.WithPrefix())
		if len(g.Kvs) != 50 || g.Header.Revision < rev {
			t.Fatalf("%s: %d keys at revision %d, want 50 at >= %d", when, len(g.Kvs), g.Header.Revision, rev)
		}
		_, err = mc.Get(ctx(t), "fnc/00", clientv3.WithRev(5))
		_, rawErr := raw(m).Range(ctx(t), &pb.RangeRequest{Key: []byte("fnc/00"), Revision: 5})
		errCompacted.check(t, err, rawErr)
	}
	m.Restart()
	check("forced restart")
	p := mustPut(t, m.Client(), "after", "x")
	if p.Header.Revision != rev+1 {
		t.Fatalf("put after the forced restart at revision %d, want %d", p.Header.Revision, rev+1)
	}
	rev = p.Header.Revision
	m.Restart()
	check("second restart")
	if g := mustGet(t, m.Client(), "after"); len(g.Kvs) != 1 || g.Kvs[0].ModRevision != rev {
		t.Fatalf("write after the forced restart lost: %v", g.Kvs)
	}
}
