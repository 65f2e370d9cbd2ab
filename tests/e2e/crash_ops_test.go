package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// killWhenExists SIGKILLs m as soon as a file matching pattern exists (polled for up to
// 10 s) and reports whether it caught one.
func killWhenExists(t *testing.T, m *framework.Member, pattern string) bool {
	t.Helper()
	return killWhenWritten(pattern, 0, m.Kill) >= 0
}

// killWhenWritten calls kill as soon as a file matching pattern holds at least minBytes
// (polled every millisecond for up to 10 s; kill is called then anyway) and returns the
// size it saw, -1 if it never saw one that big.
func killWhenWritten(pattern string, minBytes int64, kill func()) int64 {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		found, _ := filepath.Glob(pattern)
		for _, f := range found {
			if fi, err := os.Stat(f); err == nil && fi.Size() >= minBytes {
				kill()
				return fi.Size()
			}
		}
		time.Sleep(time.Millisecond)
	}
	kill()
	return -1
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

// The db the snapshot kill tests save and restore: ~40 MB, so that a save or a restore
// takes long enough to be killed midway.
const (
	bigKeys       = 1200
	bigValueBytes = 32 << 10
)

// startTool starts bin with args as framework.Run does, without waiting (stdout and
// stderr collected, read them after Wait), killed after a minute or with the test binary.
func startTool(t *testing.T, bin string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = framework.ToolEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s %v: %v", filepath.Base(bin), args, err)
	}
	return cmd, &out
}

// ackedWriter puts keys prefix000000.. through cli, one at a time, until the returned
// stop is called; stop returns the keys whose put was acknowledged.
func ackedWriter(cli *clientv3.Client, prefix string) (stop func() []string) {
	var acked []string
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for i := 0; i < 1_000_000; i++ {
			select {
			case <-quit:
				return
			default:
			}
			key := fmt.Sprintf("%s%06d", prefix, i)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := cli.Put(ctx, key, "x")
			cancel()
			if err != nil {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			acked = append(acked, key)
		}
	}()
	return func() []string {
		close(quit)
		<-finished
		return acked
	}
}

// requireKeysKept checks that m serves every acknowledged key under prefix and the
// bigKeys k0000.. keys.
func requireKeysKept(t *testing.T, ctx context.Context, m *framework.Member, when, prefix string, acked []string) {
	t.Helper()
	cli := m.Client()
	r, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatalf("%s: get %s*: %v", when, prefix, err)
	}
	have := map[string]bool{}
	for _, kv := range r.Kvs {
		have[string(kv.Key)] = true
	}
	for _, k := range acked {
		if !have[k] {
			t.Fatalf("%s: acknowledged write %s lost (%d of %d acknowledged keys kept)", when, k, len(r.Kvs), len(acked))
		}
	}
	n, err := cli.Get(ctx, "k", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || n.Count != bigKeys {
		t.Fatalf("%s: %v keys k*, want %d (%v)", when, n, bigKeys, err)
	}
}

// requireSnapshotWhole checks that etcdutl and cairnctl snapshot status both read path
// and print the same thing, and returns it.
func requireSnapshotWhole(t *testing.T, path string) snapshotStatus {
	t.Helper()
	theirs := framework.Run(t, 30*time.Second, "", nil, framework.EtcdutlBin(t), "snapshot", "status", path, "-w", "json")
	ours := framework.Run(t, 30*time.Second, "", nil, framework.CairnctlBin(t), "snapshot", "status", path, "-w", "json")
	var st snapshotStatus
	if theirs.Err != nil || ours.Err != nil || ours.Stdout != theirs.Stdout || json.Unmarshal([]byte(theirs.Stdout), &st) != nil {
		t.Fatalf("snapshot status %s: etcdutl %v %q, cairnctl %v %q", path, theirs.Err, theirs.Combined(), ours.Err, ours.Combined())
	}
	return st
}

// requirePartRefused checks that no tool takes the partial file a killed save left for a
// snapshot: etcdutl and cairnctl snapshot status fail on it (cairnctl with an error, not
// a crash), and cairnctl snapshot restore refuses it and makes no data dir.
func requirePartRefused(t *testing.T, part string) {
	t.Helper()
	theirs := framework.Run(t, 30*time.Second, "", nil, framework.EtcdutlBin(t), "snapshot", "status", part, "-w", "json")
	if theirs.Err == nil {
		t.Fatalf("etcdutl snapshot status took the partial %s for a snapshot: %s", part, theirs.Stdout)
	}
	ours := framework.Run(t, 30*time.Second, "", nil, framework.CairnctlBin(t), "snapshot", "status", part)
	if ours.ExitCode != 1 || strings.Contains(ours.Stderr, "fatal error") {
		t.Fatalf("cairnctl snapshot status %s: exit %d (%v), want 1 and an error:\n%s", part, ours.ExitCode, ours.Err, framework.Tail(ours.Combined(), 5))
	}
	data := filepath.Join(t.TempDir(), "from-part")
	rs := framework.Run(t, 30*time.Second, "", nil, framework.CairnctlBin(t), "snapshot", "restore", part, "--data-dir", data)
	if rs.Err == nil {
		t.Fatalf("cairnctl snapshot restore took the partial %s: %s", part, rs.Combined())
	}
	if _, err := os.Stat(data); err == nil {
		t.Fatalf("cairnctl snapshot restore of the partial %s left %s", part, data)
	}
	t.Logf("partial %s refused: etcdutl status exit %d (%s), cairnctl status %q, cairnctl restore %q", filepath.Base(part),
		theirs.ExitCode, firstLine(theirs.Stderr), strings.TrimSpace(ours.Stderr), strings.TrimSpace(rs.Stderr))
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// kill -9 during a snapshot save, of the member and of the saving client. The member,
// killed while `etcdctl snapshot save` streams its ~40 MB db (at three points, with a
// writer going), restarts with every acknowledged write and saves whole snapshots again;
// etcdctl fails and leaves nothing under the snapshot's name (nor its .part). etcdctl
// and cairnctl killed during their own save (both write <name>.part and rename it) leave
// the .part and nothing under the name; etcdutl and cairnctl snapshot status and
// cairnctl snapshot restore refuse that .part, and the next save over it succeeds.
func TestKill9DuringSnapshotSave(t *testing.T) {
	m := framework.StartMember(t, framework.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	putKeys(t, ctx, m.Client(), bigKeys, strings.Repeat("v", bigValueBytes))
	dir := t.TempDir()
	etcdctl := framework.EtcdctlBin(t)
	whole := filepath.Join(dir, "whole.db")
	if r := framework.Run(t, time.Minute, "", nil, etcdctl, "--endpoints="+m.ClientURL, "snapshot", "save", whole); r.Err != nil {
		t.Fatalf("etcdctl snapshot save: %v\n%s", r.Err, r.Combined())
	}
	requireSnapshotWhole(t, whole)
	fi, err := os.Stat(whole)
	if err != nil {
		t.Fatal(err)
	}
	dbSize := fi.Size()

	cut := 0
	for i, frac := range []float64{0, 0.4, 0.8} {
		when := fmt.Sprintf("member killed at %.0f%% of a save", frac*100)
		prefix := fmt.Sprintf("w%d/", i)
		stopWriter := ackedWriter(m.NewClient(), prefix)
		out := filepath.Join(dir, fmt.Sprintf("member-killed-%d.db", i))
		save, log := startTool(t, etcdctl, "--endpoints="+m.ClientURL, "snapshot", "save", out)
		seen := killWhenWritten(out+".part", int64(frac*float64(dbSize)), m.Kill)
		acked := stopWriter()
		// etcdctl retries a snapshot stream that broke before its first message (it then
		// waits for the member to come back), so the member restarts before etcdctl ends.
		m.Restart()
		saveErr := save.Wait()
		if seen < 0 {
			t.Fatalf("%s: %s.part never reached %.0f%% of %d bytes; etcdctl: %v %s", when, out, frac*100, dbSize, saveErr, log)
		}
		if saveErr == nil {
			// The member had sent everything before it died, or etcdctl saved again from the
			// restarted member: the file must be whole.
			st := requireSnapshotWhole(t, out)
			t.Logf("%s (%d of %d bytes written): etcdctl still saved a whole snapshot (revision %d)", when, seen, dbSize, st.Revision)
		} else {
			cut++
			for _, p := range []string{out, out + ".part"} {
				if _, err := os.Stat(p); err == nil {
					t.Fatalf("%s: etcdctl failed (%v) but left %s", when, saveErr, p)
				}
			}
			t.Logf("%s (%d of %d bytes written): etcdctl failed, left no file: %s", when, seen, dbSize, strings.TrimSpace(framework.Tail(log.String(), 1)))
		}
		requireKeysKept(t, ctx, m, when, prefix, acked)
		t.Logf("%s: restarted with all %d acknowledged writes", when, len(acked))
	}
	if cut == 0 {
		t.Fatal("no kill landed before the member had sent its whole db")
	}
	after := filepath.Join(dir, "after-restarts.db")
	if r := framework.Run(t, time.Minute, "", nil, etcdctl, "--endpoints="+m.ClientURL, "snapshot", "save", after); r.Err != nil {
		t.Fatalf("etcdctl snapshot save after the restarts: %v\n%s", r.Err, r.Combined())
	}
	if st, rev := requireSnapshotWhole(t, after), currentRev(t, m.Client()); st.Revision != rev {
		t.Fatalf("snapshot after the restarts at revision %d, member at %d", st.Revision, rev)
	}

	for _, tool := range []struct {
		name, bin string
		args      []string
	}{
		{"etcdctl", etcdctl, []string{"--endpoints=" + m.ClientURL, "snapshot", "save"}},
		{"cairnctl", framework.CairnctlBin(t), []string{"snapshot", "save", "--endpoints", m.ClientURL}},
	} {
		out := filepath.Join(dir, tool.name+"-killed.db")
		cmd, log := startTool(t, tool.bin, append(tool.args, out)...)
		seen := killWhenWritten(out+".part", dbSize/2, func() { _ = cmd.Process.Kill() })
		err := cmd.Wait()
		if seen < 0 || err == nil {
			t.Fatalf("%s snapshot save not killed midway (saw %d bytes of %d): %v %s", tool.name, seen, dbSize, err, log)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("%s killed during its save left a file under the snapshot's name", tool.name)
		}
		fi, err := os.Stat(out + ".part")
		if err != nil {
			t.Fatalf("%s killed during its save: no %s.part (%v)", tool.name, out, err)
		}
		t.Logf("%s killed at %d bytes: left %d bytes in %s.part, nothing under the name", tool.name, seen, fi.Size(), filepath.Base(out))
		requirePartRefused(t, out+".part")
		if r := framework.Run(t, time.Minute, "", nil, tool.bin, append(tool.args, out)...); r.Err != nil {
			t.Fatalf("%s snapshot save over the leftover .part: %v\n%s", tool.name, r.Err, r.Combined())
		}
		requireSnapshotWhole(t, out)
		if _, err := os.Stat(out + ".part"); err == nil {
			t.Fatalf("%s: %s.part still there after a successful save", tool.name, out)
		}
	}
}

// kill -9 of `cairnctl snapshot restore` of a ~40 MB snapshot at five points (as the
// db copy starts, at 30% and 70% of it, once copied while it is checked, prepared and
// renamed, and once the data dir has its name, by when the restore has usually exited:
// the rename is its last step): the data dir is either absent (the
// restore builds it under <data-dir>.restoring) or complete; a second restore into it
// succeeds when it is absent and is refused with etcdutl's "not empty" error when it is
// there, leaving no temporary dir; Cairn started from it serves every key with the
// source's HashKV. etcdutl, killed at 30%, leaves its partial data dir under the final
// name, and the second restore of both tools is refused with the same error.
// Cairn-only: it restores into Cairn with cairnctl.
func TestKill9DuringCairnctlRestore(t *testing.T) {
	framework.CairnOnly(t, "restores into Cairn data dirs with cairnctl")
	src := framework.StartMember(t, framework.Options{Binary: framework.BinaryCairn})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cli := src.Client()
	putKeys(t, ctx, cli, bigKeys, strings.Repeat("v", bigValueBytes))
	want, err := cli.HashKV(ctx, src.ClientURL, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctl := framework.CairnctlBin(t)
	db := filepath.Join(t.TempDir(), "big.db")
	if r := framework.Run(t, time.Minute, "", nil, ctl, "snapshot", "save", db, "--endpoints", src.ClientURL); r.Err != nil {
		t.Fatalf("cairnctl snapshot save: %v\n%s", r.Err, r.Combined())
	}
	src.Stop()
	fi, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	dbBytes := fi.Size() - sha256.Size

	restoreArgs := func(name, dataDir, peerURL string) []string {
		return []string{"snapshot", "restore", db, "--name", name, "--data-dir", dataDir,
			"--initial-cluster", name + "=" + peerURL, "--initial-advertise-peer-urls", peerURL, "--initial-cluster-token", "cairn-e2e"}
	}
	tmpDB := func(dataDir string) string { return filepath.Join(dataDir+".restoring", "member", "snap", "db") }
	points := []struct {
		what     string
		file     func(dataDir string) string
		minBytes int64
	}{
		{"as the db copy starts", tmpDB, 0},
		{"at 30% of the db copy", tmpDB, dbBytes * 3 / 10},
		{"at 70% of the db copy", tmpDB, dbBytes * 7 / 10},
		{"once the db is copied", tmpDB, dbBytes},
		{"once the data dir has its name", func(d string) string { return filepath.Join(d, "member", "snap", "db") }, 0},
	}
	for i, p := range points {
		m := framework.NewMember(t, framework.Options{Name: fmt.Sprintf("r%d", i), Binary: framework.BinaryCairn})
		args := restoreArgs(m.Name, m.DataDir, m.PeerURL)
		cmd, log := startTool(t, ctl, args...)
		seen := killWhenWritten(p.file(m.DataDir), p.minBytes, func() { _ = cmd.Process.Kill() })
		exitErr := cmd.Wait()
		if seen < 0 {
			t.Fatalf("kill %s: never saw it (restore: %v %s)", p.what, exitErr, log)
		}
		_, statErr := os.Stat(m.DataDir)
		second := framework.Run(t, time.Minute, "", nil, ctl, args...)
		outcome := "data dir absent, second restore done"
		if statErr == nil {
			// Named only once complete: refused as etcdutl refuses a dir that is not empty.
			if second.Err == nil || !strings.Contains(second.Stderr, fmt.Sprintf("data-dir %q not empty or could not be read", m.DataDir)) {
				t.Fatalf("kill %s: second restore into the existing data dir: %v\n%s", p.what, second.Err, second.Combined())
			}
			outcome = "data dir complete, second restore refused (not empty)"
		} else if second.Err != nil {
			t.Fatalf("kill %s: second restore: %v\n%s", p.what, second.Err, second.Combined())
		}
		if _, err := os.Stat(m.DataDir + ".restoring"); err == nil {
			t.Fatalf("kill %s: %s.restoring left after the second restore", p.what, m.DataDir)
		}
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		if err := m.WaitReady(framework.DefaultReadyTimeout); err != nil {
			t.Fatalf("kill %s: cairn from the data dir: %v", p.what, err)
		}
		n, err := m.Client().Get(ctx, "k", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil || n.Count != bigKeys {
			t.Fatalf("kill %s: restored member has %v keys (%v), want %d", p.what, n, err, bigKeys)
		}
		h, err := m.Client().HashKV(ctx, m.ClientURL, want.Header.Revision)
		if err != nil || h.Hash != want.Hash {
			t.Fatalf("kill %s: restored HashKV %v (%v), source %d", p.what, h, err, want.Hash)
		}
		m.Stop()
		t.Logf("kill %s (file at %d of %d bytes, restore exit: %v): %s; cairn served all %d keys", p.what, seen, dbBytes, exitErr, outcome, bigKeys)
	}

	etcdDir := filepath.Join(t.TempDir(), "etcd.data")
	args := []string{"snapshot", "restore", db, "--data-dir", etcdDir}
	cmd, log := startTool(t, framework.EtcdutlBin(t), args...)
	seen := killWhenWritten(filepath.Join(etcdDir, "member", "snap", "db"), dbBytes*3/10, func() { _ = cmd.Process.Kill() })
	if err := cmd.Wait(); seen < 0 || err == nil {
		t.Fatalf("etcdutl snapshot restore not killed midway (saw %d bytes): %v %s", seen, err, log)
	}
	if _, err := os.Stat(etcdDir); err != nil {
		t.Fatalf("etcdutl killed midway left no data dir: %v", err)
	}
	notEmpty := fmt.Sprintf("data-dir %q not empty or could not be read", etcdDir)
	for _, bin := range []string{framework.EtcdutlBin(t), ctl} {
		r := framework.Run(t, time.Minute, "", nil, bin, args...)
		if r.Err == nil || !strings.Contains(r.Stderr, notEmpty) {
			t.Fatalf("%s snapshot restore into etcdutl's partial dir: %v, want %q\n%s", filepath.Base(bin), r.Err, notEmpty, r.Combined())
		}
	}
	t.Logf("etcdutl killed at %d bytes left its partial data dir; etcdutl and cairnctl both refuse it: %s", seen, notEmpty)
}
