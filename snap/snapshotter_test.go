package snap

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"
)

func testSnap(index, term uint64) *raftpb.Snapshot {
	return &raftpb.Snapshot{
		Data: []byte("state"),
		Metadata: &raftpb.SnapshotMetadata{
			Index:     proto.Uint64(index),
			Term:      proto.Uint64(term),
			ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}},
		},
	}
}

func newTest(t *testing.T) (*Snapshotter, string) {
	t.Helper()
	dir := t.TempDir()
	return New(zaptest.NewLogger(t), dir), dir
}

func mustSave(t *testing.T, s *Snapshotter, snaps ...*raftpb.Snapshot) {
	t.Helper()
	for _, sn := range snaps {
		if err := s.Save(sn); err != nil {
			t.Fatalf("Save: %v", err)
		}
	}
}

func checkLoaded(t *testing.T, got *raftpb.Snapshot, err error, want *raftpb.Snapshot) {
	t.Helper()
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("loaded %v, want %v", got, want)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	sort.Strings(names)
	return names
}

func TestSaveLoadRoundTrip(t *testing.T) {
	s, dir := newTest(t)
	want := testSnap(10, 2)
	mustSave(t, s, want)
	if names := dirNames(t, dir); len(names) != 1 || names[0] != "0000000000000002-000000000000000a.snap" {
		t.Fatalf("files %v", names)
	}
	got, err := s.Load()
	checkLoaded(t, got, err, want)
	// A fresh Snapshotter (a restart) reads the same.
	got, err = New(nil, dir).Load()
	checkLoaded(t, got, err, want)
}

func TestSaveSkipsEmpty(t *testing.T) {
	s, dir := newTest(t)
	mustSave(t, s, &raftpb.Snapshot{}, nil, testSnap(0, 0))
	if names := dirNames(t, dir); len(names) != 0 {
		t.Fatalf("empty snapshots wrote %v", names)
	}
	if _, err := s.Load(); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("got %v, want ErrNoSnapshot", err)
	}
}

func TestSaveCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "member", "snap")
	s := New(zaptest.NewLogger(t), dir)
	mustSave(t, s, testSnap(1, 1))
	got, err := s.Load()
	checkLoaded(t, got, err, testSnap(1, 1))
}

func TestLoadNewest(t *testing.T) {
	s, _ := newTest(t)
	// Saved out of order, and with a higher term at a lower index sorting first by name.
	mustSave(t, s, testSnap(30, 3), testSnap(5, 1), testSnap(100, 4), testSnap(20, 2))
	got, err := s.Load()
	checkLoaded(t, got, err, testSnap(100, 4))
}

func TestLoadEmptyDir(t *testing.T) {
	s, dir := newTest(t)
	if _, err := s.Load(); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("empty dir: got %v, want ErrNoSnapshot", err)
	}
	// Only non-snapshot files.
	for _, name := range []string{"db", "0000000000000001-0000000000000001.snap.db", "x.snap", "0000000000000001-0000000000000001.snap.broken"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("junk"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Load(); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("dir without snapshots: got %v, want ErrNoSnapshot", err)
	}
	if _, err := New(nil, filepath.Join(dir, "missing")).Load(); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("missing dir: got %v, want ErrNoSnapshot", err)
	}
}

func TestCorruptNewestFallsBack(t *testing.T) {
	damage := map[string]func(b []byte) []byte{
		"flipped-payload": func(b []byte) []byte { b[len(b)-2] ^= 0x40; return b },
		"flipped-crc":     func(b []byte) []byte { b[5] ^= 0x01; return b },
		"truncated":       func(b []byte) []byte { return b[:len(b)-1] },
		"short-header":    func(b []byte) []byte { return b[:7] },
		"empty":           func(b []byte) []byte { return nil },
		"appended":        func(b []byte) []byte { return append(b, 0) },
		"bad-magic":       func(b []byte) []byte { b[0] = 'X'; return b },
	}
	for name, f := range damage {
		t.Run(name, func(t *testing.T) {
			s, dir := newTest(t)
			mustSave(t, s, testSnap(10, 1), testSnap(20, 1), testSnap(30, 2))
			newest := filepath.Join(dir, fileName(2, 30))
			b, err := os.ReadFile(newest)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(newest, f(b), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := s.Load()
			checkLoaded(t, got, err, testSnap(20, 1))
			if _, err := os.Stat(newest); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("corrupt file still in place: %v", err)
			}
			if _, err := os.Stat(newest + ".broken"); err != nil {
				t.Fatalf("corrupt file not set aside: %v", err)
			}
			// Loading again goes straight to the good one.
			got, err = s.Load()
			checkLoaded(t, got, err, testSnap(20, 1))
		})
	}
}

func TestMisnamedFileIsCorrupt(t *testing.T) {
	// A valid file under another snapshot's name must not be loaded as that snapshot.
	s, dir := newTest(t)
	mustSave(t, s, testSnap(10, 1), testSnap(20, 1))
	if err := os.Rename(filepath.Join(dir, fileName(1, 20)), filepath.Join(dir, fileName(1, 40))); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load()
	checkLoaded(t, got, err, testSnap(10, 1))
	if _, err := os.Stat(filepath.Join(dir, fileName(1, 40)+".broken")); err != nil {
		t.Fatal(err)
	}
}

func TestAllCorrupt(t *testing.T) {
	s, dir := newTest(t)
	mustSave(t, s, testSnap(10, 1), testSnap(20, 1))
	for _, name := range []string{fileName(1, 10), fileName(1, 20)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("garbage garbage garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Load(); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("got %v, want ErrNoSnapshot", err)
	}
	want := []string{fileName(1, 10) + ".broken", fileName(1, 20) + ".broken"}
	if got := dirNames(t, dir); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("files %v, want %v", got, want)
	}
}

func TestLoadNewestAvailable(t *testing.T) {
	s, dir := newTest(t)
	mustSave(t, s, testSnap(10, 1), testSnap(20, 1), testSnap(30, 2), testSnap(40, 2))
	// As with WAL marks: only snapshots the log can continue from are acceptable.
	marks := map[[2]uint64]bool{{10, 1}: true, {30, 2}: true}
	var asked [][2]uint64
	got, err := s.LoadNewestAvailable(func(index, term uint64) bool {
		asked = append(asked, [2]uint64{index, term})
		return marks[[2]uint64{index, term}]
	})
	checkLoaded(t, got, err, testSnap(30, 2))
	if len(asked) != 2 || asked[0] != [2]uint64{40, 2} || asked[1] != [2]uint64{30, 2} {
		t.Fatalf("asked %v, want newest first stopping at the match", asked)
	}

	// A corrupt accepted file falls back to the next accepted one; a rejected file is
	// neither read nor renamed.
	if err := os.WriteFile(filepath.Join(dir, fileName(2, 30)), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err = s.LoadNewestAvailable(func(index, term uint64) bool { return marks[[2]uint64{index, term}] })
	checkLoaded(t, got, err, testSnap(10, 1))
	if _, err := os.Stat(filepath.Join(dir, fileName(2, 40))); err != nil {
		t.Fatalf("rejected snapshot touched: %v", err)
	}
	if _, err := s.LoadNewestAvailable(func(uint64, uint64) bool { return false }); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("nothing acceptable: got %v, want ErrNoSnapshot", err)
	}
}

func TestPurge(t *testing.T) {
	s, dir := newTest(t)
	for i := uint64(1); i <= 6; i++ {
		mustSave(t, s, testSnap(i*10, i))
	}
	others := []string{"db", fileName(6, 60) + ".db", fileName(1, 1) + ".broken", "notes.txt"}
	for _, name := range others {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("keep me"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A temp file left by a crash mid-Save goes too.
	stale := filepath.Join(dir, fileName(7, 70)+".tmp")
	if err := os.WriteFile(stale, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}

	if err := s.Purge(3); err != nil {
		t.Fatal(err)
	}
	want := append([]string{fileName(4, 40), fileName(5, 50), fileName(6, 60)}, others...)
	sort.Strings(want)
	got := dirNames(t, dir)
	if len(got) != len(want) {
		t.Fatalf("files %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("files %v, want %v", got, want)
		}
	}
	for _, name := range others {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != "keep me" {
			t.Fatalf("%s changed: %q %v", name, b, err)
		}
	}
	loaded, err := s.Load()
	checkLoaded(t, loaded, err, testSnap(60, 6))

	// Keeping more than exist removes nothing; zero removes every snapshot but not db.
	if err := s.Purge(10); err != nil {
		t.Fatal(err)
	}
	if n := len(dirNames(t, dir)); n != len(want) {
		t.Fatalf("Purge(10) left %d files, want %d", n, len(want))
	}
	if err := s.Purge(0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("after Purge(0): got %v, want ErrNoSnapshot", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "db")); err != nil {
		t.Fatalf("db removed: %v", err)
	}
	if err := s.Purge(-1); err == nil {
		t.Fatal("Purge(-1) succeeded")
	}
}

func TestParseName(t *testing.T) {
	name := fileName(2, 0x1f)
	if name != "0000000000000002-000000000000001f.snap" {
		t.Fatalf("name %q", name)
	}
	if term, index, ok := parseName(name); !ok || term != 2 || index != 0x1f {
		t.Fatalf("parse %q: %d %d %v", name, term, index, ok)
	}
	for _, bad := range []string{"db", "x.snap", name + ".db", name + ".broken", name + ".tmp", "0000000000000002-000000000000001F.snap"} {
		if _, _, ok := parseName(bad); ok {
			t.Fatalf("parsed %q", bad)
		}
	}
}
