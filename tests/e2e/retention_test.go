package e2e

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// memberFiles lists a member's snapshot files and WAL segments.
func memberFiles(t *testing.T, m *framework.Member) (snaps, wals []string) {
	t.Helper()
	snaps, err := filepath.Glob(filepath.Join(m.DataDir, "member", "snap", "*.snap"))
	if err != nil {
		t.Fatal(err)
	}
	wals, err = filepath.Glob(filepath.Join(m.DataDir, "member", "wal", "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	return snaps, wals
}

// TestFileRetention: with --snapshot-count=20 --max-snapshots=2 --max-wals=2, after
// ~200 MB of writes (more than three 64 MB WAL segments, about ten snapshots) the member
// keeps at most 2 snapshot files and 2 WAL segments, and restarts with every write.
// etcd purges every 30 s, so the bound is waited for up to 45 s. Runs against etcd too.
func TestFileRetention(t *testing.T) {
	m := start(t, "--snapshot-count=20", "--max-snapshots=2", "--max-wals=2")
	cli := m.Client()
	value := bytes.Repeat([]byte("r"), 1<<20)
	var last *clientv3.PutResponse
	for i := 0; i < 200; i++ {
		value[0] = byte('a' + i%26)
		last = mustPut(t, cli, fmt.Sprint("big", i%4), string(value))
		if i%20 == 19 { // keep the db small
			if _, err := cli.Compact(ctx(t), last.Header.Revision); err != nil {
				t.Fatalf("compact: %v", err)
			}
		}
	}
	_, wals := memberFiles(t, m)
	var lastSeq int
	if _, err := fmt.Sscanf(filepath.Base(wals[len(wals)-1]), "%016x-", &lastSeq); err != nil || lastSeq < 2 {
		t.Fatalf("newest WAL segment %s: only %d segments were cut (%v)", wals[len(wals)-1], lastSeq+1, err)
	}
	deadline := time.Now().Add(45 * time.Second)
	for i := 0; ; i++ {
		snaps, wals := memberFiles(t, m)
		if len(snaps) <= 2 && len(wals) <= 2 && len(snaps) > 0 {
			break
		}
		if time.Now().After(deadline) || i > 500 {
			t.Fatalf("still %d snapshot files %v and %d WAL segments %v", len(snaps), snaps, len(wals), wals)
		}
		time.Sleep(100 * time.Millisecond)
	}

	m.Restart()
	cli = m.Client()
	g := mustGet(t, cli, "big", clientv3.WithPrefix())
	if g.Header.Revision != last.Header.Revision || len(g.Kvs) != 4 {
		t.Fatalf("after restart: revision %d (want %d), %d keys", g.Header.Revision, last.Header.Revision, len(g.Kvs))
	}
	for _, kv := range g.Kvs {
		if len(kv.Value) != 1<<20 {
			t.Fatalf("%s: %d bytes", kv.Key, len(kv.Value))
		}
	}
	mustPut(t, cli, "after", "restart")
}
