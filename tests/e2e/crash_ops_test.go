package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// killWhenExists SIGKILLs m as soon as a file matching pattern exists (polled for up to
// 10 s) and reports whether it caught one.
func killWhenExists(t *testing.T, m *framework.Member, pattern string) bool {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if found, _ := filepath.Glob(pattern); len(found) > 0 {
			m.Kill()
			return true
		}
		time.Sleep(time.Millisecond)
	}
	m.Kill()
	return false
}

// kill -9 in the middle of a defragmentation and in the middle of a built-in backup: the
// member restarts with every acknowledged write, drops the unfinished copy and the
// unfinished backup, and no file under a backup's name is anything but a whole,
// checksummed backup. Cairn-only: it watches Cairn's own temporary files.
func TestKill9DuringDefragAndBackup(t *testing.T) {
	framework.CairnOnly(t, "watches Cairn's temporary files to time the kills")
	backups := t.TempDir()
	m := framework.StartMember(t, framework.Options{Binary: framework.BinaryCairn,
		Flags: []string{"--backup-dir=" + backups, "--backup-interval=200ms", "--backup-retention=3"}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cli := m.Client()
	val := strings.Repeat("v", 10240)
	rev := fillThenFree(t, ctx, cli, 4000, val)

	requireIntact := func(when string) {
		t.Helper()
		m.Restart()
		c := m.Client()
		r, err := c.Get(ctx, "k", clientv3.WithPrefix())
		if err != nil || len(r.Kvs) != 2000 || r.Header.Revision != rev {
			t.Fatalf("%s: %d keys at revision %d (%v), want 2000 at %d", when, len(r.Kvs), r.Header.Revision, err, rev)
		}
		for _, kv := range r.Kvs {
			if string(kv.Value) != val {
				t.Fatalf("%s: %s has a %d-byte value", when, kv.Key, len(kv.Value))
			}
		}
		if left, _ := filepath.Glob(filepath.Join(m.DataDir, "member", "snap", "db.defrag")); len(left) > 0 {
			t.Fatalf("%s: unfinished defragmentation copy left: %v", when, left)
		}
		// Give the backup loop a moment to clear what a crash left, then check every file.
		waitFor(t, when+": no unfinished backup", func() bool {
			parts, _ := filepath.Glob(filepath.Join(backups, "*.part"))
			return len(parts) == 0
		})
		files, _ := filepath.Glob(filepath.Join(backups, "cairn-*.db"))
		for _, f := range files {
			r := framework.Run(t, 30*time.Second, "", nil, framework.EtcdutlBin(t), "snapshot", "status", f, "-w", "json")
			var st snapshotStatus
			if r.Err != nil || json.Unmarshal([]byte(r.Stdout), &st) != nil || st.TotalSize == 0 {
				t.Fatalf("%s: backup %s unreadable: %v %s", when, f, r.Err, r.Combined())
			}
		}
	}

	caughtDefrag := false
	for attempt := 0; attempt < 3 && !caughtDefrag; attempt++ {
		defrag := exec.Command(framework.EtcdctlBin(t), "--endpoints="+m.ClientURL, "defrag")
		if err := defrag.Start(); err != nil {
			t.Fatal(err)
		}
		caughtDefrag = killWhenExists(t, m, filepath.Join(m.DataDir, "member", "snap", "db.defrag"))
		_ = defrag.Wait()
		requireIntact(fmt.Sprintf("after kill -9 during defrag (attempt %d)", attempt+1))
	}
	if !caughtDefrag {
		t.Fatal("never caught a defragmentation in progress")
	}
	if !killWhenExists(t, m, filepath.Join(backups, "*.part")) {
		t.Fatal("never caught a backup in progress")
	}
	requireIntact("after kill -9 during a backup")
}
