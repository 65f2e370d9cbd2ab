package e2e

import (
	"context"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	bolt "go.etcd.io/bbolt"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestMaxLearners: --max-learners bounds how many learners member add accepts (etcd's
// default is 1, tested in TestClusterMembershipChanges); 0 accepts none.
func TestMaxLearners(t *testing.T) {
	t.Parallel()
	addLearner := func(m *framework.Member) error {
		return mbWhileUnhealthy(func(ctx context.Context) error {
			_, err := m.Client().MemberAddAsLearner(ctx, []string{fmt.Sprintf("http://127.0.0.1:%d", framework.FreePort(t))})
			return err
		})
	}
	two := start(t, "--max-learners=2")
	for i := 1; i <= 2; i++ {
		if err := addLearner(two); err != nil {
			t.Fatalf("--max-learners=2: learner %d: %v", i, err)
		}
	}
	mbExpectErr(t, "--max-learners=2: a third learner", addLearner(two), rpctypes.ErrTooManyLearners)

	none := start(t, "--max-learners=0")
	mbExpectErr(t, "--max-learners=0: a learner", addLearner(none), rpctypes.ErrTooManyLearners)
}

// dbFileHash is etcd's Maintenance.Hash computed from a stopped member's db file: a
// crc32 (Castagnoli) over every bucket in name order, its name then its keys and values,
// without meta's term, consistent_index and storageVersion.
func dbFileHash(t *testing.T, path string) uint32 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer db.Close()
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			h.Write(name)
			return b.ForEach(func(k, v []byte) error {
				if string(name) == "meta" {
					switch string(k) {
					case "term", "consistent_index", "storageVersion":
						return nil
					}
				}
				h.Write(k)
				h.Write(v)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return h.Sum32()
}

// TestMaintenanceHash: Maintenance.Hash hashes the whole db as etcd's does (checked
// against the stopped member's file), with the current revision in the header; it is
// stable while nothing is written and changes with a write. Runs against etcd too.
func TestMaintenanceHash(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	mc := pb.NewMaintenanceClient(cli.ActiveConnection())
	for i := 0; i < 5; i++ {
		mustPut(t, cli, fmt.Sprint("h", i), "v")
	}
	if _, err := cli.Compact(ctx(t), 3, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	h1, err := mc.Hash(ctx(t), &pb.HashRequest{})
	if err != nil {
		t.Fatalf("Hash: %v", err)
	}
	if h1.Header.Revision != 6 || h1.Header.ClusterId == 0 || h1.Header.MemberId == 0 || h1.Header.RaftTerm == 0 || h1.Hash == 0 {
		t.Fatalf("Hash answered %v", h1)
	}
	if again, err := mc.Hash(ctx(t), &pb.HashRequest{}); err != nil || again.Hash != h1.Hash {
		t.Fatalf("Hash again: %v, %v; want %d", again, err, h1.Hash)
	}
	mustPut(t, cli, "h0", "changed")
	h2, err := mc.Hash(ctx(t), &pb.HashRequest{})
	if err != nil || h2.Hash == h1.Hash || h2.Header.Revision != 7 {
		t.Fatalf("Hash after a put: %v, %v (before: %d)", h2, err, h1.Hash)
	}

	// etcdctl endpoint hashkv (HashKV, what etcdctl offers) prints endpoint, hash, revision.
	out, _, err := m.Etcdctl("endpoint", "hashkv")
	if err != nil || !regexp.MustCompile(`^`+regexp.QuoteMeta(m.Endpoint())+`, \d+, 7\n$`).MatchString(out) {
		t.Fatalf("etcdctl endpoint hashkv: %q, %v", out, err)
	}

	m.Stop()
	if got := dbFileHash(t, filepath.Join(m.DataDir, "member", "snap", "db")); got != h2.Hash {
		t.Fatalf("db file hash %d, Maintenance.Hash said %d", got, h2.Hash)
	}
}

// TestMaintenanceHashCluster: the members of a cluster that applied the same entries
// answer the same Hash at the same revision. Runs against etcd too.
func TestMaintenanceHashCluster(t *testing.T) {
	t.Parallel()
	c := framework.StartCluster(t, 3, framework.Options{})
	cli := c.Client()
	for i := 0; i < 20; i++ {
		mustPut(t, cli, fmt.Sprint("hc", i), "v")
	}
	if _, err := cli.Compact(ctx(t), 10, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	var last string
	waitFor(t, "equal Hash on every member", func() bool {
		var hashes []string
		for _, m := range c.Members {
			r, err := pb.NewMaintenanceClient(m.Client().ActiveConnection()).Hash(ctx(t), &pb.HashRequest{})
			if err != nil {
				last = err.Error()
				return false
			}
			hashes = append(hashes, fmt.Sprintf("%d@%d", r.Hash, r.Header.Revision))
		}
		last = fmt.Sprint(hashes)
		return hashes[0] == hashes[1] && hashes[1] == hashes[2]
	})
	t.Logf("hashes: %s", last)
}
