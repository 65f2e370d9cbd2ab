package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Small snapshot settings, so a member that misses a few hundred entries is
// behind the leader's retained log and can only catch up from a snapshot.
var snapshotFlags = []string{"--snapshot-count=100", "--snapshot-catchup-entries=20"}

// snBound bounds how long a member may take to catch up from a snapshot.
const snBound = 30 * time.Second

// metricSum adds up every sample of the named metric (all label sets) on m's
// /metrics.
func metricSum(t *testing.T, m *framework.Member, name string) float64 {
	t.Helper()
	code, body, err := m.HTTPGet("/metrics")
	if err != nil || code != 200 {
		t.Fatalf("%s /metrics: %d %v", m.Name, code, err)
	}
	var sum float64
	for _, l := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(l, name)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		var v float64
		if _, err := fmt.Sscanf(rest[strings.LastIndexByte(rest, ' ')+1:], "%g", &v); err == nil {
			sum += v
		}
	}
	return sum
}

// snWaitKeys waits (bounded) until a serializable read of prefix on m, which
// answers from m's own store, returns n keys at revision rev or later.
func snWaitKeys(t *testing.T, m *framework.Member, prefix string, n int, rev int64) {
	t.Helper()
	cli := m.NewClient()
	deadline := time.Now().Add(snBound)
	var last string
	for i := 0; i < 600 && time.Now().Before(deadline); i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSerializable(), clientv3.WithCountOnly())
		cancel()
		if err == nil && r.Count == int64(n) && r.Header.Revision >= rev {
			return
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("%d keys at revision %d", r.Count, r.Header.Revision)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: want %d keys under %q at revision >= %d within %v; last: %s", m.Name, n, prefix, rev, snBound, last)
}

// A follower cut off while the others move far past the leader's retained log
// catches up from a snapshot (the db streamed from the leader): afterwards it
// has every key, the leases, the compaction, the watch it had open gets every
// event it missed, and it survives kill -9 with all of it. HashKV is equal on
// all members at the end.
func TestClusterFollowerCatchesUpBySnapshot(t *testing.T) {
	c, pn := framework.StartProxiedCluster(t, 3, framework.Options{Flags: snapshotFlags})
	lead := c.Leader()
	if lead == nil {
		t.Fatal("no leader")
	}
	f := c.Followers()[0]
	lcli := lead.NewClient()
	for i := 0; i < 20; i++ {
		mustPut(t, lcli, fmt.Sprintf("pre/%02d", i), "v")
	}
	mustPut(t, lcli, "pre/00", "v2")
	compactRev := currentRev(t, lcli)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if _, err := lcli.Compact(ctx, compactRev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	cancel()
	snWaitKeys(t, f, "pre/", 20, compactRev)

	// A watch on the follower, open across the partition.
	fcli := f.NewClient()
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	wch := fcli.Watch(wctx, "snap/", clientv3.WithPrefix(), clientv3.WithRev(compactRev+1))
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	if err := fcli.RequestProgress(ctx); err != nil { // the watch is registered once this answers
		t.Fatalf("RequestProgress: %v", err)
	}
	cancel()

	sentBefore := metricSum(t, lead, "etcd_network_snapshot_send_success")
	// Cut off (connections dropped, so raft's messages in flight are lost too).
	pn.Partition(framework.PartitionDrop, f)
	const n = 400
	for i := 0; i < n; i++ {
		mustPut(t, lcli, fmt.Sprintf("snap/%03d", i), fmt.Sprint(i))
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	lg, err := lcli.Grant(ctx, 600)
	cancel()
	if err != nil {
		t.Fatalf("Grant: %v", err)
	}
	mustPut(t, lcli, "snap/leased", "x", clientv3.WithLease(lg.ID))
	rev := currentRev(t, lcli)
	pn.Heal()
	snWaitKeys(t, f, "snap/", n+1, rev)
	if sent := metricSum(t, lead, "etcd_network_snapshot_send_success"); sent <= sentBefore {
		t.Fatalf("the leader sent no snapshot (etcd_network_snapshot_send_success %v -> %v): the follower did not need one", sentBefore, sent)
	}
	if got := metricSum(t, f, "etcd_network_snapshot_receive_success"); got < 1 {
		t.Fatalf("%s received no snapshot (etcd_network_snapshot_receive_success %v)", f.Name, got)
	}

	// Every event the follower's watcher missed, in order.
	var got []string
	deadline := time.After(snBound)
	for len(got) < n+1 {
		select {
		case wr, ok := <-wch:
			if !ok || wr.Err() != nil {
				t.Fatalf("watch on %s ended after %d events: %v", f.Name, len(got), wr.Err())
			}
			for _, ev := range wr.Events {
				got = append(got, fmt.Sprintf("%s %s=%s", ev.Type, ev.Kv.Key, ev.Kv.Value))
			}
		case <-deadline:
			t.Fatalf("watch on %s: %d of %d events within %v", f.Name, len(got), n+1, snBound)
		}
	}
	for i := 0; i < n; i++ {
		if want := fmt.Sprintf("PUT snap/%03d=%d", i, i); got[i] != want {
			t.Fatalf("watch event %d = %q, want %q", i, got[i], want)
		}
	}
	if got[n] != "PUT snap/leased=x" || len(got) != n+1 {
		t.Fatalf("watch events after the puts: %v", got[n:])
	}

	// The follower's lessor has the lease the snapshot carried; its store the compaction.
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	ls, err := fcli.Leases(ctx)
	cancel()
	if err != nil || len(ls.Leases) != 1 || ls.Leases[0].ID != lg.ID {
		t.Fatalf("%s Leases = %+v, %v; want lease %x", f.Name, ls, err, lg.ID)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	_, err = fcli.Get(ctx, "pre/00", clientv3.WithRev(compactRev-1), clientv3.WithSerializable())
	cancel()
	if err == nil || !strings.Contains(err.Error(), "required revision has been compacted") {
		t.Fatalf("%s read below the compaction: %v, want 'required revision has been compacted'", f.Name, err)
	}

	// The installed snapshot is durable: kill -9 and restart.
	f.Kill()
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	if err := f.WaitReady(snBound); err != nil {
		t.Fatalf("%s not ready after restart: %v", f.Name, err)
	}
	snWaitKeys(t, f, "snap/", n+1, rev)
	mustPut(t, lcli, "post", "1")
	final := currentRev(t, lcli)
	snWaitKeys(t, f, "post", 1, final)
	c.RequireHashKVEqual(t, final)
}
