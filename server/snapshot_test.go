package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-kv/cairn/mvcc"
	"github.com/cairn-kv/cairn/raftnode"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"
)

// storeAt opens a store at path holding key=val applied up to index.
func storeAt(t *testing.T, path, key, val string, index uint64) *mvcc.Store {
	t.Helper()
	s, err := mvcc.Open(zaptest.NewLogger(t), path, mvcc.Config{})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(index, 2, func(tx *mvcc.WriteTxn) error {
		tx.Put([]byte(key), []byte(val), 0)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A member that crashed after raft saved a leader's snapshot but before the store took
// the db received with it installs that db at boot; without the db file it refuses to
// start rather than serve a store that lacks the snapshot's entries.
func TestRecoverSnapshotDBAtBoot(t *testing.T) {
	dir := t.TempDir()
	snapDir := filepath.Join(dir, "snap")
	if err := os.MkdirAll(snapDir, 0o700); err != nil {
		t.Fatal(err)
	}
	leader := storeAt(t, filepath.Join(dir, "leader.db"), "k", "leader", 50)
	sn, err := leader.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	dbFile := filepath.Join(snapDir, "0000000000000028.snap.db")
	f, err := os.Create(dbFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sn.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sn.Close()
	leader.Close()

	p := &raftnode.Persisted{Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(40), Term: proto.Uint64(2)}}}
	follower := storeAt(t, filepath.Join(snapDir, "db"), "k", "stale", 5)
	defer follower.Close()
	err = recoverSnapshotDB(zaptest.NewLogger(t), follower, p)
	if err == nil || !strings.Contains(err.Error(), "db file received with it is missing") {
		t.Fatalf("recover without the db file = %v, want a refusal", err)
	}

	p.SnapshotDB = dbFile
	if err := recoverSnapshotDB(zaptest.NewLogger(t), follower, p); err != nil {
		t.Fatalf("recover: %v", err)
	}
	if ci, _ := follower.ConsistentIndex(); ci != 50 {
		t.Fatalf("consistent index after recovery = %d, want 50", ci)
	}
	rt := follower.Read()
	rr, err := rt.Range([]byte("k"), nil, mvcc.RangeOptions{})
	if err != nil || len(rr.KVs) != 1 || string(rr.KVs[0].Value) != "leader" {
		t.Fatalf("k after recovery = %v, %v", rr, err)
	}
	// A store already past the snapshot is left alone.
	p.SnapshotDB = filepath.Join(snapDir, "missing.snap.db")
	if err := recoverSnapshotDB(zaptest.NewLogger(t), follower, p); err != nil {
		t.Fatalf("recover of an up-to-date store: %v", err)
	}
}
