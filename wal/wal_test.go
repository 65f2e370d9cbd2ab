package wal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap/zaptest"
)

func TestRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	if Exist(dir) {
		t.Fatal("Exist on a missing dir")
	}
	w := mustCreate(t, dir, "member-1")
	if !Exist(dir) {
		t.Fatal("Exist after Create")
	}
	mustSave(t, w, hardState(1, 1, 0), entries(1, 5, 1))
	mustSave(t, w, hardState(2, 2, 4), entries(6, 10, 2))
	mustSave(t, w, nil, entries(11, 11, 2)) // entries without a new hard state
	mustClose(t, w)

	want := append(append(entries(1, 5, 1), entries(6, 10, 2)...), entries(11, 11, 2)...)
	w, meta, hs, ents := mustRead(t, dir, Snapshot{})
	if string(meta) != "member-1" {
		t.Fatalf("metadata %q", meta)
	}
	checkState(t, hs, hardState(2, 2, 4))
	checkEntries(t, ents, want)

	// Appending after ReadAll continues the same log.
	mustSave(t, w, hardState(3, 3, 12), entries(12, 12, 3))
	mustClose(t, w)
	_, _, hs, ents = mustRead(t, dir, Snapshot{})
	checkState(t, hs, hardState(3, 3, 12))
	checkEntries(t, ents, append(want, entries(12, 12, 3)...))
}

func TestCreateFailsWhenSegmentsExist(t *testing.T) {
	dir := t.TempDir()
	mustClose(t, mustCreate(t, dir, "m"))
	if _, err := Create(zaptest.NewLogger(t), dir, nil); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second Create: got %v, want os.ErrExist", err)
	}
}

func TestOpenWithoutSegments(t *testing.T) {
	if _, err := Open(zaptest.NewLogger(t), t.TempDir(), Snapshot{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v, want os.ErrNotExist", err)
	}
}

func TestSaveRules(t *testing.T) {
	dir := t.TempDir()
	w := mustCreate(t, dir, "m")
	path := lastSegmentPath(t, dir)
	before := fileSize(t, path)
	mustSave(t, w, &raftpb.HardState{}, nil)
	mustSave(t, w, nil, nil)
	if after := fileSize(t, path); after != before {
		t.Fatalf("empty Save wrote %d bytes", after-before)
	}
	if err := w.Save(nil, []*raftpb.Entry{nil}); err == nil {
		t.Fatal("Save of a nil entry succeeded")
	}
	mustClose(t, w)
	if err := w.Save(hardState(1, 1, 1), nil); err == nil {
		t.Fatal("Save after Close succeeded")
	}

	w, err := Open(zaptest.NewLogger(t), dir, Snapshot{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Save(hardState(1, 1, 1), nil); err == nil {
		t.Fatal("Save before ReadAll succeeded")
	}
}

func TestOverwriteSuffix(t *testing.T) {
	setSegmentSize(t, 512)
	dir := t.TempDir()
	w := mustCreate(t, dir, "m")
	mustSave(t, w, hardState(1, 1, 3), entries(1, 20, 1))
	// A new leader replaces the uncommitted tail from index 6.
	mustSave(t, w, hardState(2, 2, 3), entries(6, 8, 2))
	mustClose(t, w)

	want := append(entries(1, 5, 1), entries(6, 8, 2)...)
	w, _, hs, ents := mustRead(t, dir, Snapshot{})
	checkState(t, hs, hardState(2, 2, 3))
	checkEntries(t, ents, want)

	// And again after reopening, across a segment boundary.
	mustSave(t, w, nil, entries(7, 30, 3))
	mustClose(t, w)
	_, _, _, ents = mustRead(t, dir, Snapshot{})
	checkEntries(t, ents, append(want[:6], entries(7, 30, 3)...))
	if n := len(segmentFiles(t, dir)); n < 2 {
		t.Fatalf("expected several segments, got %d", n)
	}
}

func TestSegmentCutting(t *testing.T) {
	setSegmentSize(t, 1024)
	dir := t.TempDir()
	w := mustCreate(t, dir, "meta")
	const n = 300
	for i := uint64(1); i <= n; i++ {
		mustSave(t, w, hardState(1, 1, i-1), []*raftpb.Entry{entry(i, 1, strings.Repeat("x", 40))})
	}
	mustClose(t, w)

	segs := segmentFiles(t, dir)
	if len(segs) < 10 {
		t.Fatalf("expected many segments, got %d", len(segs))
	}
	for i, s := range segs {
		if s.seq != uint64(i) {
			t.Fatalf("segment %d has sequence %d", i, s.seq)
		}
		if i > 0 && s.index <= segs[i-1].index {
			t.Fatalf("segment %s does not advance the index", filepath.Base(s.path))
		}
		// Every record of a finished segment lies below its successor's starting index.
		if i > 0 && fileSize(t, segs[i-1].path) > 1024+200 {
			t.Fatalf("segment %s grew far past the limit", filepath.Base(segs[i-1].path))
		}
	}

	_, meta, hs, ents := mustRead(t, dir, Snapshot{})
	if string(meta) != "meta" {
		t.Fatalf("metadata %q", meta)
	}
	checkState(t, hs, hardState(1, 1, n-1))
	if len(ents) != n || ents[0].GetIndex() != 1 || ents[n-1].GetIndex() != n {
		t.Fatalf("read %d entries", len(ents))
	}
}

func TestOpenFromMark(t *testing.T) {
	setSegmentSize(t, 1024)
	dir := t.TempDir()
	w := mustCreate(t, dir, "m")
	for i := uint64(1); i <= 100; i++ {
		mustSave(t, w, hardState(1, 1, i), entries(i, i, 1))
	}
	// As in practice the mark is written after entries beyond it already exist.
	if err := w.SaveSnapshot(Snapshot{Index: 50, Term: 1}); err != nil {
		t.Fatal(err)
	}
	for i := uint64(101); i <= 150; i++ {
		mustSave(t, w, hardState(1, 1, i), entries(i, i, 1))
	}
	mustClose(t, w)

	w, _, hs, ents := mustRead(t, dir, Snapshot{Index: 50, Term: 1})
	checkState(t, hs, hardState(1, 1, 150))
	checkEntries(t, ents, entries(51, 150, 1))
	// The log stays locked while w is open, even against this process.
	if _, _, _, _, err := readWAL(t, dir, Snapshot{Index: 50, Term: 1}); !errors.Is(err, errLocked) {
		t.Fatalf("second Open while held: got %v, want errLocked", err)
	}
	mustClose(t, w)

	for _, bad := range []Snapshot{{Index: 50, Term: 2}, {Index: 999, Term: 1}, {Index: 70, Term: 1}} {
		if _, _, _, _, err := readWAL(t, dir, bad); !errors.Is(err, ErrSnapshotNotFound) {
			t.Fatalf("mark %+v: got %v, want ErrSnapshotNotFound", bad, err)
		}
	}
}

func TestReleaseTo(t *testing.T) {
	setSegmentSize(t, 1024)
	dir := t.TempDir()
	w := mustCreate(t, dir, "m")
	for i := uint64(1); i <= 200; i++ {
		mustSave(t, w, hardState(1, 1, i), entries(i, i, 1))
	}
	mark := Snapshot{Index: 120, Term: 1}
	if err := w.SaveSnapshot(mark); err != nil {
		t.Fatal(err)
	}
	for i := uint64(201); i <= 220; i++ {
		mustSave(t, w, hardState(1, 1, i), entries(i, i, 1))
	}
	before := len(segmentFiles(t, dir))
	if err := w.ReleaseTo(mark.Index); err != nil {
		t.Fatal(err)
	}
	after := segmentFiles(t, dir)
	if len(after) >= before {
		t.Fatalf("ReleaseTo removed nothing (%d segments)", before)
	}
	if after[0].index > mark.Index {
		t.Fatalf("first kept segment starts at %d, past the mark %d", after[0].index, mark.Index)
	}
	// Appending still works after a release.
	mustSave(t, w, hardState(1, 1, 221), entries(221, 221, 1))
	// Releasing far ahead keeps the segment being written.
	if err := w.ReleaseTo(1 << 40); err != nil {
		t.Fatal(err)
	}
	if n := len(segmentFiles(t, dir)); n != 1 {
		t.Fatalf("after releasing everything %d segments remain", n)
	}
	mustClose(t, w)

	// Restore the released-to state before the final release to check Open(mark).
	dir2 := t.TempDir()
	w = mustCreate(t, dir2, "m")
	for i := uint64(1); i <= 200; i++ {
		mustSave(t, w, hardState(1, 1, i), entries(i, i, 1))
	}
	if err := w.SaveSnapshot(mark); err != nil {
		t.Fatal(err)
	}
	mustSave(t, w, hardState(1, 1, 201), entries(201, 201, 1))
	if err := w.ReleaseTo(mark.Index); err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)
	w, _, hs, ents := mustRead(t, dir2, mark)
	checkState(t, hs, hardState(1, 1, 201))
	checkEntries(t, ents, entries(121, 201, 1))
	mustClose(t, w)
	if _, _, _, _, err := readWAL(t, dir2, Snapshot{}); !errors.Is(err, ErrSnapshotNotFound) {
		t.Fatalf("Open from the start after release: got %v, want ErrSnapshotNotFound", err)
	}
}

func TestSnapshotPastLastEntry(t *testing.T) {
	// A follower that receives a snapshot from the leader jumps ahead of its log.
	setSegmentSize(t, 256)
	dir := t.TempDir()
	w := mustCreate(t, dir, "m")
	mustSave(t, w, hardState(1, 1, 5), entries(1, 5, 1))
	if err := w.SaveSnapshot(Snapshot{Index: 100, Term: 3}); err != nil {
		t.Fatal(err)
	}
	mustSave(t, w, hardState(3, 2, 100), nil)
	mustSave(t, w, hardState(3, 2, 105), entries(101, 110, 3))
	mustClose(t, w)

	w, _, _, ents := mustRead(t, dir, Snapshot{Index: 100, Term: 3})
	checkEntries(t, ents, entries(101, 110, 3))
	mustClose(t, w)
	// From the start the entries cannot be contiguous; that is an error, not corruption.
	_, _, _, _, err := readWAL(t, dir, Snapshot{})
	if !errors.Is(err, errGap) || isCorrupt(err) {
		t.Fatalf("reading across the jump: got %v, want a non-corruption gap error", err)
	}
}

func TestLockExcludesSecondWriter(t *testing.T) {
	dir := t.TempDir()
	w := mustCreate(t, dir, "m")
	if _, err := Open(zaptest.NewLogger(t), dir, Snapshot{}); !errors.Is(err, errLocked) {
		t.Fatalf("second Open while the log is held: got %v, want errLocked", err)
	}
	mustClose(t, w)
	w2, err := Open(zaptest.NewLogger(t), dir, Snapshot{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	mustClose(t, w2)
}

func TestCutKeepsLock(t *testing.T) {
	setSegmentSize(t, 256)
	dir := t.TempDir()
	w := mustCreate(t, dir, "m")
	mustSave(t, w, hardState(1, 1, 1), entries(1, 20, 1))
	if len(segmentFiles(t, dir)) < 2 {
		t.Fatal("no cut happened")
	}
	if _, err := Open(zaptest.NewLogger(t), dir, Snapshot{}); err == nil {
		t.Fatal("Open succeeded on a cut segment still being written")
	}
	mustClose(t, w)
}

func TestStaleTempRemoved(t *testing.T) {
	dir := t.TempDir()
	mustClose(t, mustCreate(t, dir, "m"))
	tmp := filepath.Join(dir, segmentName(1, 5)+tmpExt)
	if err := os.WriteFile(tmp, []byte("half a header"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRead(t, dir, Snapshot{})
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale temp segment still there: %v", err)
	}
}

func TestSegmentNames(t *testing.T) {
	name := segmentName(3, 0x1f)
	if name != "0000000000000003-000000000000001f.wal" {
		t.Fatalf("name %q", name)
	}
	if seq, idx, ok := parseSegmentName(name); !ok || seq != 3 || idx != 0x1f {
		t.Fatalf("parse %q: %d %d %v", name, seq, idx, ok)
	}
	for _, bad := range []string{"x.wal", name + ".tmp", "0000000000000003-000000000000001F.wal", "+000000000000003-000000000000001f.wal"} {
		if _, _, ok := parseSegmentName(bad); ok {
			t.Fatalf("parsed %q", bad)
		}
	}
}

// TestOpenErrorsReleaseLock checks that a failed Open leaves no file or lock behind: flock
// locks belong to the open file description, so a leak would lock out this process too.
func TestOpenErrorsReleaseLock(t *testing.T) {
	setSegmentSize(t, 512)
	dir := t.TempDir()
	w := mustCreate(t, dir, "m")
	for i := uint64(1); i <= 60; i++ {
		mustSave(t, w, hardState(1, 1, i), entries(i, i, 1))
	}
	if err := w.SaveSnapshot(Snapshot{Index: 40, Term: 1}); err != nil {
		t.Fatal(err)
	}
	if err := w.ReleaseTo(40); err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)

	// Fails in Open: the mark lies before the first segment left.
	for i := 0; i < 3; i++ {
		if _, err := Open(zaptest.NewLogger(t), dir, Snapshot{}); !errors.Is(err, ErrSnapshotNotFound) {
			t.Fatalf("attempt %d: got %v, want ErrSnapshotNotFound", i, err)
		}
	}
	// Fails in ReadAll: the mark is not in the log; Close must free the lock.
	for i := 0; i < 3; i++ {
		if _, _, _, _, err := readWAL(t, dir, Snapshot{Index: 40, Term: 9}); !errors.Is(err, ErrSnapshotNotFound) {
			t.Fatalf("attempt %d: got %v, want ErrSnapshotNotFound", i, err)
		}
	}
	w, _, _, ents := mustRead(t, dir, Snapshot{Index: 40, Term: 1})
	checkEntries(t, ents, entries(41, 60, 1))
	mustClose(t, w)
}

func TestDataLen(t *testing.T) {
	for _, tc := range []struct {
		b    []byte
		want int
	}{
		{nil, 0},
		{make([]byte, 10000), 0},
		{[]byte{1, 0, 0}, 1},
		{append(append(make([]byte, 5000), 7), make([]byte, 9000)...), 5001},
		{append(make([]byte, 4096), 1), 4097},
	} {
		if got := dataLen(tc.b); got != tc.want {
			t.Errorf("dataLen(%d bytes) = %d, want %d", len(tc.b), got, tc.want)
		}
	}
}

// ReleaseToKeep (--max-wals) deletes released segments only down to keep segments in
// all, oldest first, and never a segment the mark still needs.
func TestReleaseToKeep(t *testing.T) {
	setSegmentSize(t, 1024)
	dir := t.TempDir()
	w := mustCreate(t, dir, "m")
	for i := uint64(1); i <= 300; i++ {
		mustSave(t, w, hardState(1, 1, i), entries(i, i, 1))
	}
	mark := Snapshot{Index: 250, Term: 1}
	if err := w.SaveSnapshot(mark); err != nil {
		t.Fatal(err)
	}
	mustSave(t, w, hardState(1, 1, 301), entries(301, 301, 1))
	all := segmentFiles(t, dir)
	needed := 0 // segments Open(mark) reads: from the last one named at or below the mark
	for i, s := range all {
		if s.index <= mark.Index {
			needed = len(all) - i
		}
	}
	if len(all) < needed+4 {
		t.Fatalf("test setup: %d segments, %d needed", len(all), needed)
	}
	// More than there are: nothing goes.
	if err := w.ReleaseToKeep(mark.Index, len(all)+1); err != nil {
		t.Fatal(err)
	}
	if n := len(segmentFiles(t, dir)); n != len(all) {
		t.Fatalf("keep %d of %d: %d left", len(all)+1, len(all), n)
	}
	// needed+2: the two newest released segments stay, the oldest go.
	if err := w.ReleaseToKeep(mark.Index, needed+2); err != nil {
		t.Fatal(err)
	}
	left := segmentFiles(t, dir)
	if len(left) != needed+2 || left[0] != all[len(all)-needed-2] {
		t.Fatalf("keep %d: left %v of %v", needed+2, left, all)
	}
	// keep 1: only what the mark needs remains, however many that is.
	if err := w.ReleaseToKeep(mark.Index, 1); err != nil {
		t.Fatal(err)
	}
	if left := segmentFiles(t, dir); len(left) != needed {
		t.Fatalf("keep 1: %d left, %d needed", len(left), needed)
	}
	mustClose(t, w)
	w, _, hs, ents := mustRead(t, dir, mark)
	checkState(t, hs, hardState(1, 1, 301))
	checkEntries(t, ents, entries(251, 301, 1))
	mustClose(t, w)
}
