package e2e

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// corruptValue rewrites, in a stopped member's bbolt file, the value of every
// stored revision of key: silent corruption the member itself cannot notice.
func corruptValue(t *testing.T, m *framework.Member, key string) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(m.DataDir, "member", "snap", "db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open %s's db: %v", m.Name, err)
	}
	defer db.Close()
	n := 0
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("key"))
		type kv struct{ k, v []byte }
		var changed []kv
		err := b.ForEach(func(k, v []byte) error {
			var e mvccpb.KeyValue
			if err := e.Unmarshal(v); err != nil {
				return err
			}
			if string(e.Key) != key {
				return nil
			}
			e.Value = []byte("corrupted")
			nv, err := e.Marshal()
			if err != nil {
				return err
			}
			changed = append(changed, kv{append([]byte(nil), k...), nv})
			return nil
		})
		if err != nil {
			return err
		}
		for _, c := range changed {
			if err := b.Put(c.k, c.v); err != nil {
				return err
			}
		}
		n = len(changed)
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("corrupt %q in %s's db: %d revisions changed, %v", key, m.Name, n, err)
	}
}

// A member whose db was silently changed is refused at boot by the initial
// corruption check; started without it, the leader's compaction hash check
// finds it at the next compaction and raises CORRUPT for exactly that member,
// after which the cluster refuses writes with etcd's "corrupt cluster".
func TestClusterCorruptionChecks(t *testing.T) {
	c := framework.StartCluster(t, 3, framework.Options{Flags: []string{
		"--feature-gates=InitialCorruptCheck=true,CompactHashCheck=true", "--compact-hash-check-time=1s",
	}})
	cli := c.Client()
	for i := 0; i < 20; i++ {
		mustPut(t, cli, fmt.Sprintf("k%02d", i), "v")
	}
	mustPut(t, cli, "victim", "good")
	rev := currentRev(t, cli)
	if _, err := cli.Compact(ctx(t), rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	c.RequireHashKVEqual(t, rev)
	// Writes after the compaction: etcd answers a hash at exactly a compaction revision
	// from what it stored when compacting, which the initial check does not compare.
	for i := 0; i < 5; i++ {
		mustPut(t, cli, fmt.Sprintf("later%d", i), "v")
	}

	f := c.Followers()[0]
	fID, err := f.MemberID()
	if err != nil {
		t.Fatal(err)
	}
	f.Stop()
	corruptValue(t, f, "victim")

	// The initial check refuses to serve the changed data.
	if err := f.Start(); err != nil {
		t.Fatalf("start %s: %v", f.Name, err)
	}
	exitErr, exited := f.WaitExit(snBound)
	if !exited || exitErr == nil || !f.LogContains("found data inconsistency with peers") {
		t.Fatalf("%s with changed data: exited=%v (%v); log tail:\n%s", f.Name, exited, exitErr, f.LogTail(20))
	}

	// Without it the member starts; the next compaction's hash check catches it.
	f.AddFlags("--feature-gates=InitialCorruptCheck=false")
	if err := f.Start(); err != nil {
		t.Fatalf("restart %s: %v", f.Name, err)
	}
	if err := f.WaitReady(snBound); err != nil {
		t.Fatalf("%s not ready: %v", f.Name, err)
	}
	// Cairn's leader may already have caught it: f answered the hash check of the
	// first compaction once it was back. Otherwise a new compaction gets checked. The
	// alarm may also come in between: a write or compaction refused for it is fine.
	if r, err := cli.AlarmList(ctx(t)); err != nil {
		t.Fatalf("AlarmList: %v", err)
	} else if len(r.Alarms) == 0 {
		_, err := cli.Put(ctx(t), "after", "1")
		if err == nil {
			rev = currentRev(t, cli)
			_, err = cli.Compact(ctx(t), rev, clientv3.WithCompactPhysical())
		}
		if err != nil && !errors.Is(err, rpctypes.ErrCorrupt) {
			t.Fatalf("write and compaction after the restart: %v", err)
		}
	}
	deadline := time.Now().Add(snBound)
	var alarms []*etcdserverpb.AlarmMember
	for len(alarms) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no CORRUPT alarm within %v of the compaction", snBound)
		}
		time.Sleep(200 * time.Millisecond)
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := cli.AlarmList(cctx)
		cancel()
		if err == nil {
			alarms = r.Alarms
		}
	}
	if len(alarms) != 1 || alarms[0].Alarm != etcdserverpb.AlarmType_CORRUPT || alarms[0].MemberID != fID {
		t.Fatalf("alarms = %v, want CORRUPT for %s (%x) only", alarms, f.Name, fID)
	}
	// The alarm is committed, so a write proposed now comes after it in the log.
	if _, err := cli.Put(ctx(t), "blocked", "x"); !errors.Is(err, rpctypes.ErrCorrupt) {
		t.Fatalf("Put with CORRUPT raised = %v, want %v", err, rpctypes.ErrCorrupt)
	}
}
