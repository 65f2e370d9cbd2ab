package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// snapshotStatus is `etcdutl snapshot status -w json`.
type snapshotStatus struct {
	Hash      uint32 `json:"hash"`
	Revision  int64  `json:"revision"`
	TotalKey  int    `json:"totalKey"`
	TotalSize int64  `json:"totalSize"`
	Version   string `json:"version"`
}

// `etcdctl snapshot save` against the member writes a db file that the real etcdutl reads
// (`snapshot status`) and restores, and a real etcd started from the restored data dir
// serves every key, revision, lease and the compaction of the source: a Cairn → etcd
// migration path.
func TestSnapshotSaveRestoresIntoEtcd(t *testing.T) {
	src := framework.StartMember(t, framework.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fx := fillForSnapshot(t, ctx, src)

	db := filepath.Join(t.TempDir(), "backup.db")
	out, stderr, err := src.Etcdctl("snapshot", "save", db)
	if err != nil || !strings.Contains(out, "Snapshot saved at "+db) {
		t.Fatalf("etcdctl snapshot save: %v\n%s%s", err, out, stderr)
	}

	st := framework.Run(t, 30*time.Second, "", nil, framework.EtcdutlBin(t), "snapshot", "status", db, "-w", "json")
	if st.Err != nil {
		t.Fatalf("etcdutl snapshot status: %v\n%s", st.Err, st.Combined())
	}
	var status snapshotStatus
	if err := json.Unmarshal([]byte(st.Stdout), &status); err != nil {
		t.Fatalf("snapshot status output %q: %v", st.Stdout, err)
	}
	// Every revision the compaction kept: 101 live keys' values, the deleted keys'
	// tombstones after 50, the lease's key.
	if status.Revision != fx.rev || status.TotalKey == 0 || status.TotalSize == 0 || status.Version != "3.6.0" {
		t.Fatalf("snapshot status %+v, want revision %d and version 3.6.0", status, fx.rev)
	}

	dst := framework.NewMember(t, framework.Options{Name: "restored", Binary: framework.BinaryEtcd})
	rs := framework.Run(t, 60*time.Second, "", nil, framework.EtcdutlBin(t), "snapshot", "restore", db,
		"--name", dst.Name, "--data-dir", dst.DataDir,
		"--initial-cluster", dst.Name+"="+dst.PeerURL, "--initial-advertise-peer-urls", dst.PeerURL,
		"--initial-cluster-token", "cairn-e2e")
	if rs.Err != nil {
		t.Fatalf("etcdutl snapshot restore: %v\n%s", rs.Err, rs.Combined())
	}
	if err := dst.Start(); err != nil {
		t.Fatal(err)
	}
	if err := dst.WaitReady(framework.DefaultReadyTimeout); err != nil {
		t.Fatalf("etcd from the restored dir: %v\n%s", err, dst.Log())
	}
	requireRestored(t, ctx, dst, fx)
}

// snapshotFixture is what fillForSnapshot wrote: every key-value, the revision, the
// lease holding key "leased" and the HashKV at that revision.
type snapshotFixture struct {
	kvs     []*mvccpb.KeyValue
	rev     int64
	leaseID clientv3.LeaseID
	hash    *clientv3.HashKVResponse
}

// fillForSnapshot writes a history with live, deleted and leased keys and a physical
// compaction at 50, the things a snapshot must carry.
func fillForSnapshot(t *testing.T, ctx context.Context, m *framework.Member) snapshotFixture {
	t.Helper()
	cli := m.Client()
	for i := 0; i < 200; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("k%03d", i), strings.Repeat("v", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Delete(ctx, "k1", clientv3.WithPrefix()); err != nil { // k1, k10..k199
		t.Fatal(err)
	}
	lg, err := cli.Grant(ctx, 3600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "leased", "x", clientv3.WithLease(lg.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, 50, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	all, err := cli.Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	hash, err := cli.HashKV(ctx, m.ClientURL, all.Header.Revision)
	if err != nil {
		t.Fatal(err)
	}
	return snapshotFixture{kvs: all.Kvs, rev: all.Header.Revision, leaseID: lg.ID, hash: hash}
}

// requireRestored checks that m serves exactly the fixture's data: keys, revision, the
// lease with its key, the compaction and the HashKV.
func requireRestored(t *testing.T, ctx context.Context, m *framework.Member, fx snapshotFixture) {
	t.Helper()
	cli := m.Client()
	after, err := cli.Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := kvStrings(after.Kvs), kvStrings(fx.kvs); got != want {
		t.Fatalf("%s: restored keys:\n%s\nwant\n%s", m.Name, got, want)
	}
	if after.Header.Revision != fx.rev {
		t.Fatalf("%s: restored revision %d, want %d", m.Name, after.Header.Revision, fx.rev)
	}
	ttl, err := cli.TimeToLive(ctx, fx.leaseID, clientv3.WithAttachedKeys())
	if err != nil || ttl.TTL <= 0 || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "leased" {
		t.Fatalf("%s: restored lease: %+v, %v", m.Name, ttl, err)
	}
	if _, err := cli.Get(ctx, "k000", clientv3.WithRev(49)); err == nil || !strings.Contains(err.Error(), "compacted") {
		t.Fatalf("%s: read below the compaction: %v", m.Name, err)
	}
	h, err := cli.HashKV(ctx, m.ClientURL, fx.rev)
	if err != nil {
		t.Fatal(err)
	}
	if h.Hash != fx.hash.Hash || h.CompactRevision != fx.hash.CompactRevision {
		t.Fatalf("%s: restored HashKV %d (compacted %d), source %d (compacted %d)", m.Name, h.Hash, h.CompactRevision, fx.hash.Hash, fx.hash.CompactRevision)
	}
}

// kvStrings renders key-values with their revisions and leases, one per line.
func kvStrings(kvs []*mvccpb.KeyValue) string {
	var b strings.Builder
	for _, kv := range kvs {
		fmt.Fprintf(&b, "%s=%q c%d m%d v%d l%x\n", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease)
	}
	return b.String()
}

// cairnctl restores what it saved from a real etcd into Cairn data dirs (etcd → Cairn
// migration): cairnctl snapshot status prints what etcdutl prints for the file, a lone
// Cairn member and a 3-member Cairn cluster started from restored dirs serve every key,
// revision, lease and the compaction of the etcd source with its HashKV, and
// --bump-revision with --mark-compacted moves the revision on as etcdutl's does.
func TestCairnctlSnapshotFromEtcdIntoCairn(t *testing.T) {
	framework.CairnOnly(t, "restores into Cairn data dirs with cairnctl")
	src := framework.StartMember(t, framework.Options{Binary: framework.BinaryEtcd})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fx := fillForSnapshot(t, ctx, src)
	ctl := framework.CairnctlBin(t)

	db := filepath.Join(t.TempDir(), "etcd.db")
	save := framework.Run(t, time.Minute, "", nil, ctl, "snapshot", "save", db, "--endpoints", src.ClientURL)
	if save.Err != nil || !strings.Contains(save.Stdout, "Snapshot saved at "+db) {
		t.Fatalf("cairnctl snapshot save: %v\n%s", save.Err, save.Combined())
	}
	for _, format := range []string{"json", "simple", "table"} {
		ours := framework.Run(t, 30*time.Second, "", nil, ctl, "snapshot", "status", db, "-w", format)
		theirs := framework.Run(t, 30*time.Second, "", nil, framework.EtcdutlBin(t), "snapshot", "status", db, "-w", format)
		if ours.Err != nil || theirs.Err != nil || ours.Stdout != theirs.Stdout {
			t.Fatalf("snapshot status -w %s: cairnctl %v %q, etcdutl %v %q", format, ours.Err, ours.Stdout, theirs.Err, theirs.Stdout)
		}
	}

	restore := func(m *framework.Member, initialCluster, token string, extra ...string) {
		t.Helper()
		args := append([]string{"snapshot", "restore", db, "--name", m.Name, "--data-dir", m.DataDir,
			"--initial-cluster", initialCluster, "--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster-token", token}, extra...)
		if r := framework.Run(t, time.Minute, "", nil, ctl, args...); r.Err != nil {
			t.Fatalf("cairnctl %v: %v\n%s", args, r.Err, r.Combined())
		}
	}

	one := framework.NewMember(t, framework.Options{Name: "one", Binary: framework.BinaryCairn})
	restore(one, one.Name+"="+one.PeerURL, "cairn-e2e")
	if err := one.Start(); err != nil {
		t.Fatal(err)
	}
	if err := one.WaitReady(framework.DefaultReadyTimeout); err != nil {
		t.Fatalf("cairn from the restored dir: %v\n%s", err, one.Log())
	}
	requireRestored(t, ctx, one, fx)
	if r := mustPut(t, one.Client(), "after", "restore"); r.Header.Revision != fx.rev+1 {
		t.Fatalf("first write after restore at %d, want %d", r.Header.Revision, fx.rev+1)
	}

	c := framework.NewCluster(t, 3, framework.Options{Binary: framework.BinaryCairn})
	for _, m := range c.Members {
		restore(m, c.InitialCluster, c.Token)
	}
	if err := c.Start(); err != nil {
		t.Fatalf("restored 3-member cluster: %v", err)
	}
	for _, m := range c.Members {
		requireRestored(t, ctx, m, fx)
	}
	if r := mustPut(t, c.Client(), "after", "restore"); r.Header.Revision != fx.rev+1 {
		t.Fatalf("first write to the restored cluster at %d, want %d", r.Header.Revision, fx.rev+1)
	}
	c.RequireHashKVEqual(t, 0)

	bumped := framework.NewMember(t, framework.Options{Name: "bumped", Binary: framework.BinaryCairn})
	restore(bumped, bumped.Name+"="+bumped.PeerURL, "cairn-e2e", "--bump-revision", "1000", "--mark-compacted")
	if err := bumped.Start(); err != nil {
		t.Fatal(err)
	}
	if err := bumped.WaitReady(framework.DefaultReadyTimeout); err != nil {
		t.Fatalf("cairn from the bumped restore: %v\n%s", err, bumped.Log())
	}
	bcli := bumped.Client()
	if _, err := bcli.Get(ctx, "k000", clientv3.WithRev(fx.rev)); err == nil || !strings.Contains(err.Error(), "compacted") {
		t.Fatalf("read at the old revision after a bumped restore: %v, want compacted", err)
	}
	if r := mustPut(t, bcli, "after", "bump"); r.Header.Revision != fx.rev+1001 {
		t.Fatalf("first write after a bumped restore at %d, want %d", r.Header.Revision, fx.rev+1001)
	}
	if r := mustGet(t, bcli, "k000"); len(r.Kvs) != 1 {
		t.Fatalf("k000 after a bumped restore: %v", r.Kvs)
	}

	// etcdutl's restore with the same flags leaves etcd at the same revision.
	ref := framework.NewMember(t, framework.Options{Name: "ref", Binary: framework.BinaryEtcd})
	rs := framework.Run(t, time.Minute, "", nil, framework.EtcdutlBin(t), "snapshot", "restore", db, "--name", ref.Name,
		"--data-dir", ref.DataDir, "--initial-cluster", ref.Name+"="+ref.PeerURL, "--initial-advertise-peer-urls", ref.PeerURL,
		"--initial-cluster-token", "cairn-e2e", "--bump-revision", "1000", "--mark-compacted")
	if rs.Err != nil {
		t.Fatalf("etcdutl snapshot restore: %v\n%s", rs.Err, rs.Combined())
	}
	if err := ref.Start(); err != nil {
		t.Fatal(err)
	}
	if err := ref.WaitReady(framework.DefaultReadyTimeout); err != nil {
		t.Fatalf("etcd from the bumped restore: %v\n%s", err, ref.Log())
	}
	if r := mustPut(t, ref.Client(), "after", "bump"); r.Header.Revision != fx.rev+1001 {
		t.Fatalf("etcd: first write after a bumped restore at %d, want %d", r.Header.Revision, fx.rev+1001)
	}
}

// --backup-dir: the member saves backups on its own; /metrics reports the last success,
// the newest --backup-retention files are kept, and one of them restores (cairnctl) into
// a member serving the data. Cairn-only: etcd has no built-in backups.
func TestBuiltInBackups(t *testing.T) {
	framework.CairnOnly(t, "built-in backups are Cairn's own")
	dir := t.TempDir()
	m := framework.StartMember(t, framework.Options{Binary: framework.BinaryCairn,
		Flags: []string{"--backup-dir=" + dir, "--backup-interval=300ms", "--backup-retention=2"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fx := fillForSnapshot(t, ctx, m)
	var files []string
	waitFor(t, "two backups after the writes", func() bool {
		files, _ = filepath.Glob(filepath.Join(dir, "cairn-*.db"))
		if len(files) != 2 {
			return false
		}
		r := framework.Run(t, 30*time.Second, "", nil, framework.EtcdutlBin(t), "snapshot", "status", files[0], "-w", "json")
		var st snapshotStatus
		return r.Err == nil && json.Unmarshal([]byte(r.Stdout), &st) == nil && st.Revision == fx.rev
	})
	_, body, err := m.HTTPGet("/metrics")
	if err != nil || !strings.Contains(body, "cairn_backup_last_success_timestamp_seconds") || !strings.Contains(body, "cairn_backup_failures_total 0") {
		t.Fatalf("/metrics: %v\n%s", err, body)
	}
	r := framework.Run(t, 30*time.Second, "", nil, framework.EtcdutlBin(t), "snapshot", "status", files[1], "-w", "json")
	if r.Err != nil || !strings.Contains(r.Stdout, fmt.Sprintf(`"revision":%d`, fx.rev)) {
		t.Fatalf("etcdutl snapshot status %s: %v %s", files[1], r.Err, r.Combined())
	}
	restored := framework.NewMember(t, framework.Options{Name: "restored", Binary: framework.BinaryCairn})
	rs := framework.Run(t, time.Minute, "", nil, framework.CairnctlBin(t), "snapshot", "restore", files[1],
		"--name", restored.Name, "--data-dir", restored.DataDir, "--initial-cluster", restored.Name+"="+restored.PeerURL,
		"--initial-advertise-peer-urls", restored.PeerURL)
	if rs.Err != nil {
		t.Fatalf("cairnctl snapshot restore: %v\n%s", rs.Err, rs.Combined())
	}
	if err := restored.Start(); err != nil {
		t.Fatal(err)
	}
	if err := restored.WaitReady(framework.DefaultReadyTimeout); err != nil {
		t.Fatalf("cairn from a backup: %v\n%s", err, restored.Log())
	}
	requireRestored(t, ctx, restored, fx)
}
