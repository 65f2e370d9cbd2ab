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
	cli := src.Client()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
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
	before, err := cli.Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	rev := before.Header.Revision
	hash, err := cli.HashKV(ctx, src.ClientURL, rev)
	if err != nil {
		t.Fatal(err)
	}

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
	if status.Revision != rev || status.TotalKey == 0 || status.TotalSize == 0 || status.Version != "3.6.0" {
		t.Fatalf("snapshot status %+v, want revision %d and version 3.6.0", status, rev)
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
	dcli := dst.Client()
	after, err := dcli.Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := kvStrings(after.Kvs), kvStrings(before.Kvs); got != want {
		t.Fatalf("restored keys:\n%s\nwant\n%s", got, want)
	}
	if after.Header.Revision != rev {
		t.Fatalf("restored revision %d, want %d", after.Header.Revision, rev)
	}
	ttl, err := dcli.TimeToLive(ctx, lg.ID, clientv3.WithAttachedKeys())
	if err != nil || ttl.TTL <= 0 || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "leased" {
		t.Fatalf("restored lease: %+v, %v", ttl, err)
	}
	if _, err := dcli.Get(ctx, "k000", clientv3.WithRev(49)); err == nil || !strings.Contains(err.Error(), "compacted") {
		t.Fatalf("read below the compaction on the restored etcd: %v", err)
	}
	dhash, err := dcli.HashKV(ctx, dst.ClientURL, rev)
	if err != nil {
		t.Fatal(err)
	}
	if dhash.Hash != hash.Hash || dhash.CompactRevision != hash.CompactRevision {
		t.Fatalf("restored HashKV %d (compacted %d), source %d (compacted %d)", dhash.Hash, dhash.CompactRevision, hash.Hash, hash.CompactRevision)
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
