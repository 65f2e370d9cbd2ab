package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/mvcc"
)

// snapshotFile writes a db with one key and, if withHash, the sha256 trailer a saved
// snapshot carries.
func snapshotFile(t *testing.T, withHash bool) string {
	t.Helper()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "db")
	s, err := mvcc.Open(zap.NewNop(), dbPath, mvcc.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(1, 1, func(tx *mvcc.WriteTxn) error { tx.Put([]byte("k"), []byte("v"), 0); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if withHash {
		sum := sha256.Sum256(b)
		b = append(b, sum[:]...)
	}
	p := filepath.Join(dir, "snap.db")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func restoreArgs(snap, dataDir string, extra ...string) []string {
	return append([]string{"snapshot", "restore", snap, "--name", "m1", "--data-dir", dataDir,
		"--initial-cluster", "m1=http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380"}, extra...)
}

// Bad snapshots and bad flags get etcdutl's errors, exit 1 (2 for a bad command line),
// and leave no data dir behind.
func TestSnapshotRestoreRefusals(t *testing.T) {
	good := snapshotFile(t, true)
	corrupt := snapshotFile(t, true)
	b, _ := os.ReadFile(corrupt)
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(corrupt, b, 0o600); err != nil {
		t.Fatal(err)
	}
	noHash := snapshotFile(t, false)
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"corrupt", restoreArgs(corrupt, filepath.Join(t.TempDir(), "d")), exitFail, "expected sha256"},
		{"no hash", restoreArgs(noHash, filepath.Join(t.TempDir(), "d")), exitFail, "snapshot missing hash but --skip-hash-check=false"},
		{"not empty", restoreArgs(good, full), exitFail, "not empty or could not be read"},
		{"bump alone", restoreArgs(good, filepath.Join(t.TempDir(), "d"), "--bump-revision", "5"), exitFail, "--mark-compacted required if --bump-revision > 0"},
		{"not in cluster", append(restoreArgs(good, filepath.Join(t.TempDir(), "d")), "--name", "m2"), exitFail, `couldn't find local name "m2"`},
		{"no file", []string{"snapshot", "restore"}, exitUsage, "accepts 1 arg(s)"},
	} {
		var out, errb bytes.Buffer
		if code := run(tc.args, &out, &errb); code != tc.code || !strings.Contains(errb.String(), tc.msg) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tc.name, code, errb.String(), tc.code, tc.msg)
		}
		if tc.name != "not empty" && len(tc.args) > 6 {
			if _, err := os.Stat(tc.args[6]); err == nil {
				t.Errorf("%s: data dir %s left behind", tc.name, tc.args[6])
			}
		}
	}

	// The good file restores, and --skip-hash-check takes a db without a trailer.
	for _, snap := range []string{good, noHash} {
		dir := filepath.Join(t.TempDir(), "d")
		var out, errb bytes.Buffer
		if code := run(restoreArgs(snap, dir, "--skip-hash-check"), &out, &errb); code != exitOK {
			t.Fatalf("restore %s: exit %d: %s", snap, code, errb.String())
		}
		st, err := mvcc.ReadSnapshotStatus(filepath.Join(dir, "member", "snap", "db"))
		if err != nil || st.TotalKey != 1 || st.Revision != 2 {
			t.Fatalf("restored db: %+v, %v", st, err)
		}
	}
}

// A snapshot cut short, as the .part file a save killed midway leaves, is refused by
// status and by restore --skip-hash-check with an error naming the truncation (reading
// its missing pages used to kill cairnctl with SIGBUS), and restore leaves no data dir.
func TestSnapshotTruncatedRefused(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "db")
	s, err := mvcc.Open(zap.NewNop(), dbPath, mvcc.Config{})
	if err != nil {
		t.Fatal(err)
	}
	val := bytes.Repeat([]byte("v"), 4096)
	for i := 0; i < 300; i++ {
		key := []byte(fmt.Sprintf("k%04d", i))
		if err := s.Update(uint64(i+1), 1, func(tx *mvcc.WriteTxn) error { tx.Put(key, val, 0); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := mvcc.ReadSnapshotStatus(dbPath)
	if err != nil || st.TotalKey != 300 {
		t.Fatalf("whole db: %+v, %v", st, err)
	}
	b, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "snap.db.part")
	if err := os.WriteFile(cut, b[:st.TotalSize/2], 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"snapshot", "status", cut}, &out, &errb); code != exitFail || !strings.Contains(errb.String(), "truncated") {
		t.Fatalf("status of a truncated file: exit %d, stdout %q, stderr %q; want %d and \"truncated\"", code, out.String(), errb.String(), exitFail)
	}
	data := filepath.Join(t.TempDir(), "d")
	out.Reset()
	errb.Reset()
	if code := run(restoreArgs(cut, data, "--skip-hash-check"), &out, &errb); code != exitFail || !strings.Contains(errb.String(), "truncated") {
		t.Fatalf("restore of a truncated file: exit %d, stderr %q; want %d and \"truncated\"", code, errb.String(), exitFail)
	}
	for _, p := range []string{data, data + ".restoring"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left behind by a refused restore", p)
		}
	}
}

// A restore makes every new directory entry durable before the rename publishes the data
// dir (db in snap, snap in member, member in the temporary dir: a crash of the machine
// after the rename must not leave a data dir without its db), then the rename itself.
func TestSnapshotRestoreSyncsTheTreeBeforeTheRename(t *testing.T) {
	var synced []string
	orig := syncDir
	t.Cleanup(func() { syncDir = orig })
	syncDir = func(dir string) error {
		synced = append(synced, dir)
		return orig(dir) // fails on a dir that is gone (synced after the rename)
	}
	data := filepath.Join(t.TempDir(), "d")
	var out, errb bytes.Buffer
	if code := run(restoreArgs(snapshotFile(t, true), data), &out, &errb); code != exitOK {
		t.Fatalf("restore: exit %d: %s", code, errb.String())
	}
	tmp := data + ".restoring"
	want := []string{filepath.Join(tmp, "member", "snap"), filepath.Join(tmp, "member"), tmp, filepath.Dir(data)}
	if strings.Join(synced, "\n") != strings.Join(want, "\n") {
		t.Fatalf("synced dirs:\n  %s\nwant, in this order:\n  %s", strings.Join(synced, "\n  "), strings.Join(want, "\n  "))
	}
}
