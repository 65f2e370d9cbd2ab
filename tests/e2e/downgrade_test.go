package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	bolt "go.etcd.io/bbolt"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// downgradeMoveTimeout bounds the wait for a cluster version to move after an enable or a
// cancel: etcd's leader checks it every 4 s, and a check may be skipped while a member is
// not reachable yet.
const downgradeMoveTimeout = 15 * time.Second

// downgradeAnswer is a Downgrade response or error, as compared between servers.
func downgradeAnswer(t *testing.T, m *framework.Member, action pb.DowngradeRequest_DowngradeAction, v string) string {
	mc := pb.NewMaintenanceClient(m.Client().ActiveConnection())
	resp, err := mc.Downgrade(ctx(t), &pb.DowngradeRequest{Action: action, Version: v})
	if err != nil {
		code, msg := framework.StatusOf(err)
		return fmt.Sprintf("error %v %q", code, msg)
	}
	if resp.Header == nil || resp.Header.ClusterId == 0 || resp.Header.MemberId == 0 {
		return fmt.Sprintf("bad header %v", resp.Header)
	}
	return fmt.Sprintf("version %q", resp.Version)
}

// bothSides runs script against the Cairn side and the etcd side concurrently and fails
// the test unless both transcripts are equal line for line. script reports through
// its transcript, never fails the test itself: etcd's side shows what Cairn must
// answer.
func bothSides[T any](t *testing.T, cairn, etcd T, script func(side T) []string) {
	t.Helper()
	var wg sync.WaitGroup
	var got [2][]string
	for i, side := range []T{cairn, etcd} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = script(side)
		}()
	}
	wg.Wait()
	c, e := got[0], got[1]
	for i := 0; i < max(len(c), len(e)); i++ {
		var cl, el string
		if i < len(c) {
			cl = c[i]
		}
		if i < len(e) {
			el = e[i]
		}
		if cl != el {
			t.Errorf("step %d differs:\n  cairn: %s\n  etcd:  %s", i, cl, el)
		} else {
			t.Logf("step %d: %s", i, cl)
		}
	}
}

// downgradeView is what a member shows of the cluster and storage version and the
// downgrade job: Status (raw gRPC), `etcdctl endpoint status -w json` and /version.
func downgradeView(m *framework.Member) string {
	st, err := m.Status()
	if err != nil {
		return "status: " + err.Error()
	}
	out, stderr, err := m.Etcdctl("endpoint", "status", "-w", "json")
	if err != nil {
		return fmt.Sprintf("etcdctl endpoint status: %v %s", err, stderr)
	}
	fields := regexp.MustCompile(`"(version|storageVersion)":"[^"]*"|"downgradeInfo":\{[^}]*\}`).FindAllString(out, -1)
	_, body, err := m.HTTPGet("/version")
	if err != nil {
		return "/version: " + err.Error()
	}
	return fmt.Sprintf("status version=%s storage=%s downgrade=%v/%q; etcdctl %s; /version %s",
		st.Version, st.StorageVersion, st.DowngradeInfo.GetEnabled(), st.DowngradeInfo.GetTargetVersion(),
		strings.Join(fields, ","), strings.TrimSpace(body))
}

// downgradeInfo is the Status' downgrade job alone.
func downgradeInfo(m *framework.Member) string {
	st, err := m.Status()
	if err != nil {
		return "status: " + err.Error()
	}
	return fmt.Sprintf("downgrade info enabled=%v target=%q", st.DowngradeInfo.GetEnabled(), st.DowngradeInfo.GetTargetVersion())
}

// waitVersions waits until every member's /version reports cluster and storage version
// v and its Status storage version v.
func waitVersions(ms []*framework.Member, v string) string {
	start := time.Now()
	want := fmt.Sprintf(`"etcdcluster":%q,"storage":%q`, v, v)
	for {
		ok := true
		for _, m := range ms {
			_, body, err := m.HTTPGet("/version")
			st, serr := m.Status()
			if err != nil || serr != nil || !strings.Contains(body, want) || st.StorageVersion != v {
				ok = false
				break
			}
		}
		if ok {
			return fmt.Sprintf("cluster and storage version %s on %d member(s)", v, len(ms))
		}
		if time.Since(start) > downgradeMoveTimeout {
			return fmt.Sprintf("cluster and storage version not %s after %v", v, downgradeMoveTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// etcdctlLine runs etcdctl and returns its stdout, or its last stderr line on failure.
func etcdctlLine(m *framework.Member, args ...string) string {
	out, stderr, err := m.Etcdctl(args...)
	if err != nil {
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		return fmt.Sprintf("etcdctl %s: %s", strings.Join(args, " "), lines[len(lines)-1])
	}
	return fmt.Sprintf("etcdctl %s: %q", strings.Join(args, " "), out)
}

// snapshotView saves a snapshot with etcdctl and shows what etcdutl's snapshot status
// reports as its version, and what its "cluster" bucket and "meta" storage version hold.
func snapshotView(t *testing.T, m *framework.Member) string {
	db := filepath.Join(t.TempDir(), "snap.db")
	if out, stderr, err := m.Etcdctl("snapshot", "save", db); err != nil {
		return fmt.Sprintf("snapshot save: %v %s %s", err, out, stderr)
	}
	r := framework.Run(t, 30*time.Second, "", nil, framework.EtcdutlBin(t), "snapshot", "status", db, "-w", "json")
	if r.Err != nil {
		return fmt.Sprintf("etcdutl snapshot status: %v %s", r.Err, r.Combined())
	}
	var st struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		return fmt.Sprintf("etcdutl snapshot status %q: %v", r.Stdout, err)
	}
	bdb, err := bolt.Open(db, 0o400, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return "open snapshot: " + err.Error()
	}
	defer bdb.Close()
	var cluster, storage string
	_ = bdb.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte("cluster")); b != nil {
			cluster = fmt.Sprintf("clusterVersion=%q downgrade=%q", b.Get([]byte("clusterVersion")), b.Get([]byte("downgrade")))
		}
		if b := tx.Bucket([]byte("meta")); b != nil {
			if v := b.Get([]byte("storageVersion")); v != nil {
				storage = fmt.Sprintf("meta storageVersion=%q", v)
			} else {
				storage = "meta without storageVersion"
			}
		}
		return nil
	})
	return fmt.Sprintf("snapshot: etcdutl version %q; %s; %s", st.Version, cluster, storage)
}

// TestDowngradeValidateCancel: Maintenance.Downgrade's validate and cancel without a job
// answer as etcd 3.6's do (raw gRPC and etcdctl, the same table on Cairn and etcd): 3.5
// (any patch, with or without pre-release) is the one valid target of a 3.6 cluster,
// other versions are invalid targets, malformed ones a wrong format; cancel without a
// downgrade job succeeds (etcd only logs "no inflight downgrade job"); enable of an
// invalid or malformed target gets the same errors.
func TestDowngradeValidateCancel(t *testing.T) {
	t.Parallel()
	p := framework.StartPair(t)
	const (
		ok        = `version "3.6"`
		badFormat = `error InvalidArgument "etcdserver: wrong downgrade target version format"`
		badTarget = `error InvalidArgument "etcdserver: invalid downgrade target version"`
	)
	validate := pb.DowngradeRequest_VALIDATE
	cases := []struct {
		action pb.DowngradeRequest_DowngradeAction
		v      string
		want   string
	}{
		{validate, "3.5", ok},
		{validate, "3.5.0", ok},
		{validate, "3.5.9", ok},
		{validate, "3.5.0-alpha.1+meta", ok},
		{validate, "3.4", badTarget},
		{validate, "3.6", badTarget},
		{validate, "3.6.16", badTarget},
		{validate, "3.7", badTarget},
		{validate, "2.5", badTarget},
		{validate, "v3.5", badFormat},
		{validate, "3", badFormat},
		{validate, "", badFormat},
		{validate, "abc", badFormat},
		{validate, "3.5.x", badFormat},
		{validate, "3.5.0-", ok}, // an empty pre-release is none
		{validate, "3.5.0-a..b", badFormat},
		{pb.DowngradeRequest_CANCEL, "", ok},
		{pb.DowngradeRequest_CANCEL, "3.5", ok},
		{pb.DowngradeRequest_ENABLE, "3.4", badTarget},
		{pb.DowngradeRequest_ENABLE, "abc", badFormat},
		{pb.DowngradeRequest_DowngradeAction(7), "3.5", `error Unknown "etcdserver: unknown method"`},
	}
	bothSides(t, p.Cairn, p.Etcd, func(m *framework.Member) []string {
		var out []string
		for _, tc := range cases {
			out = append(out, fmt.Sprintf("%v %q: %s", tc.action, tc.v, downgradeAnswer(t, m, tc.action, tc.v)))
		}
		out = append(out, downgradeView(m),
			etcdctlLine(m, "downgrade", "validate", "3.5"),
			etcdctlLine(m, "downgrade", "cancel"),
			etcdctlLine(m, "downgrade", "validate", "3.4"))
		return out
	})
	for _, tc := range cases {
		if got := downgradeAnswer(t, p.Cairn, tc.action, tc.v); got != tc.want {
			t.Errorf("%v %q: %s, want %s", tc.action, tc.v, got, tc.want)
		}
	}
}

// TestDowngradeEnableCancel: one member, Cairn and etcd side by side. A fresh member's
// snapshot records cluster version 3.6.0 and storage version 3.6.0. enable 3.5 answers
// "3.6" and records the job (Status' downgrade info at once); the cluster version and
// the storage version move to 3.5.0 within the leader's next version check (etcd: every
// 4 s); then enabling 3.5 again is an invalid target and 3.4 a job in progress; a
// snapshot saved meanwhile has 3.5's schema (no storage version: etcdutl shows ""),
// cluster version 3.5.0 and the job in its "cluster" bucket; all of it survives a
// restart; cancel answers "3.5", ends the job at once, and both versions go back to
// 3.6.0; a second cancel answers "3.6"; a restart keeps 3.6.0.
func TestDowngradeEnableCancel(t *testing.T) {
	t.Parallel()
	p := framework.StartPair(t)
	bothSides(t, p.Cairn, p.Etcd, func(m *framework.Member) []string {
		ms := []*framework.Member{m}
		out := []string{
			// etcd sets its storage version a moment after it is ready: the fresh view
			// is taken once both versions settled.
			"settled: " + waitVersions(ms, "3.6.0"),
			"fresh: " + downgradeView(m),
			snapshotView(t, m),
			"enable 3.5: " + downgradeAnswer(t, m, pb.DowngradeRequest_ENABLE, "3.5"),
			"right after: " + downgradeInfo(m),
		}
		start := time.Now()
		out = append(out, waitVersions(ms, "3.5.0"))
		t.Logf("%s: cluster version 3.5.0 after %v", m.Name, time.Since(start).Round(time.Millisecond))
		out = append(out, "downgraded: "+downgradeView(m))
		for _, tc := range []struct {
			a pb.DowngradeRequest_DowngradeAction
			v string
		}{
			{pb.DowngradeRequest_ENABLE, "3.5"},
			{pb.DowngradeRequest_ENABLE, "3.5.0"},
			{pb.DowngradeRequest_ENABLE, "3.4"},
			{pb.DowngradeRequest_VALIDATE, "3.5"},
			{pb.DowngradeRequest_VALIDATE, "3.4"},
			{pb.DowngradeRequest_ENABLE, "abc"},
		} {
			out = append(out, fmt.Sprintf("during: %v %q: %s", tc.a, tc.v, downgradeAnswer(t, m, tc.a, tc.v)))
		}
		out = append(out, etcdctlLine(m, "downgrade", "enable", "3.5"), snapshotView(t, m))
		m.Restart()
		out = append(out, "restarted: "+downgradeView(m),
			etcdctlLine(m, "downgrade", "cancel"),
			"right after cancel: "+downgradeInfo(m))
		start = time.Now()
		out = append(out, waitVersions(ms, "3.6.0"))
		t.Logf("%s: cluster version 3.6.0 after %v", m.Name, time.Since(start).Round(time.Millisecond))
		out = append(out, "cancelled: "+downgradeView(m),
			etcdctlLine(m, "downgrade", "cancel"),
			snapshotView(t, m))
		m.Restart()
		out = append(out, "restarted: "+downgradeView(m))
		return out
	})
}

// downgradeCluster is one side of TestDowngradeCluster.
type downgradeCluster struct {
	c         *framework.Cluster
	followers []*framework.Member
}

// TestDowngradeCluster: 3 members, a Cairn and an etcd cluster side by side, with
// --snapshot-count=100 --snapshot-catchup-entries=10. A follower stops; enable through
// the other follower records the job, but the cluster version does not move while a
// member is down. Once it is back (caught up from a leader snapshot after 300 writes)
// every member moves to 3.5.0, cluster and storage version; every member reports the
// job. The other follower then misses 300 writes and catches up from a snapshot of the
// 3.5 db, and reports 3.5.0 too. A cancel through a follower moves all back to 3.6.0.
func TestDowngradeCluster(t *testing.T) {
	t.Parallel()
	opts := framework.Options{Flags: []string{"--snapshot-count=100", "--snapshot-catchup-entries=10"}}
	co, eo := opts, opts
	co.Binary, eo.Binary = framework.BinaryDefault, framework.BinaryEtcd
	sides := [2]*downgradeCluster{}
	for i, o := range []framework.Options{co, eo} {
		c := framework.StartCluster(t, 3, o)
		sides[i] = &downgradeCluster{c: c, followers: c.Followers()}
	}
	bothSides(t, sides[0], sides[1], func(d *downgradeCluster) []string {
		f0, f1 := d.followers[0], d.followers[1]
		var out []string
		views := func(what string) { // which members run differs between the sides
			for i, m := range d.c.Running() {
				out = append(out, fmt.Sprintf("%s: running member %d: %s", what, i, downgradeView(m)))
			}
		}
		f1.Stop()
		out = append(out, "enable 3.5 through a follower, one member down: "+downgradeAnswer(t, f0, pb.DowngradeRequest_ENABLE, "3.5"))
		time.Sleep(9 * time.Second) // two of etcd's version checks
		views("member down")
		cli := f0.NewClient()
		defer cli.Close()
		for i := 0; i < 300; i++ {
			if _, err := cli.Put(ctx(t), fmt.Sprintf("k%03d", i), "v"); err != nil {
				out = append(out, fmt.Sprintf("put %d: %v", i, err))
				return out
			}
		}
		if err := f1.Start(); err != nil {
			return append(out, "restart: "+err.Error())
		}
		if err := f1.WaitReady(framework.DefaultReadyTimeout); err != nil {
			return append(out, "restart: "+err.Error())
		}
		out = append(out, waitVersions(d.c.Members, "3.5.0"))
		views("downgraded")
		out = append(out, "validate 3.5 through the restarted follower: "+downgradeAnswer(t, f1, pb.DowngradeRequest_VALIDATE, "3.5"),
			"enable 3.4 through the leader: "+downgradeAnswer(t, d.c.Leader(), pb.DowngradeRequest_ENABLE, "3.4"),
			snapshotView(t, f1))
		gr, err := cli.Get(ctx(t), "k", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithSerializable())
		if err != nil {
			return append(out, "get: "+err.Error())
		}
		out = append(out, fmt.Sprintf("%d keys", gr.Count))

		// The other follower misses 300 writes while the cluster is at 3.5: the leader's
		// snapshot brings it the 3.5 db, job and versions.
		f0.Stop()
		cli1 := f1.NewClient()
		defer cli1.Close()
		for i := 0; i < 300; i++ {
			if _, err := cli1.Put(ctx(t), fmt.Sprintf("j%03d", i), "v"); err != nil {
				return append(out, fmt.Sprintf("put %d: %v", i, err))
			}
		}
		if err := f0.Start(); err != nil {
			return append(out, "restart: "+err.Error())
		}
		if err := f0.WaitReady(framework.DefaultReadyTimeout); err != nil {
			return append(out, "restart: "+err.Error())
		}
		if gr, err = f0.Client().Get(ctx(t), "j", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
			return append(out, "get: "+err.Error())
		}
		out = append(out, fmt.Sprintf("%d keys on the caught-up follower", gr.Count))
		views("caught up from a snapshot")
		out = append(out, "cancel through a follower: "+downgradeAnswer(t, f1, pb.DowngradeRequest_CANCEL, ""),
			waitVersions(d.c.Members, "3.6.0"))
		views("cancelled")
		return out
	})
	if !framework.AgainstEtcd() {
		sent := 0
		for _, m := range sides[0].c.Members {
			sent += strings.Count(m.Log(), "sending snapshot to a follower")
		}
		if sent < 2 {
			t.Errorf("Cairn's leader sent %d snapshots to followers, want the 2 catch-ups", sent)
		}
	}
}
