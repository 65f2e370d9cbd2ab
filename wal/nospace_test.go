package wal

import (
	"os"
	"testing"

	"github.com/cairn-kv/cairn/internal/fsutil"
	"go.uber.org/zap/zaptest"
)

func readBack(t *testing.T, dir string) (last uint64, n int) {
	t.Helper()
	w, err := Open(zaptest.NewLogger(t), dir, Snapshot{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer mustClose(t, w)
	_, _, ents, err := w.ReadAll()
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	for i, e := range ents {
		if e.GetIndex() != uint64(i+1) {
			t.Fatalf("entry %d has index %d", i, e.GetIndex())
		}
	}
	if len(ents) == 0 {
		return 0, 0
	}
	return ents[len(ents)-1].GetIndex(), len(ents)
}

// An append that runs out of space (half written) is cut off and refused without making
// the log unusable: the same Save succeeds once space returns, and the log reads back
// whole.
func TestSaveNoSpaceIsRetryable(t *testing.T) {
	dir := t.TempDir()
	w := mustCreate(t, dir, "m")
	mustSave(t, w, hardState(1, 1, 1), entries(1, 5, 1))
	full := true
	w.hooks = &testHooks{noSpace: func(op string) bool { return op == "append" && full }}
	for range 3 {
		if err := w.Save(hardState(1, 1, 5), entries(6, 10, 1)); !fsutil.IsNoSpace(err) {
			t.Fatalf("Save on a full disk = %v, want ENOSPC", err)
		}
	}
	full = false
	mustSave(t, w, hardState(1, 1, 5), entries(6, 10, 1))
	mustSave(t, w, hardState(1, 1, 10), entries(11, 12, 1))
	mustClose(t, w)
	if last, n := readBack(t, dir); last != 12 || n != 12 {
		t.Fatalf("read back %d entries up to %d, want 12", n, last)
	}
}

// A cut that runs out of space leaves the synced segment as the last one, growing past
// SegmentSizeBytes; the cut is retried at each append and the log reads back whole.
func TestCutNoSpaceKeepsAppending(t *testing.T) {
	setSegmentSize(t, 1024)
	dir := t.TempDir()
	w := mustCreate(t, dir, "m")
	full := true
	w.hooks = &testHooks{noSpace: func(op string) bool { return op == "cut" && full }}
	var next uint64 = 1
	for range 20 {
		mustSave(t, w, hardState(1, 1, next), entries(next, next+4, 1))
		next += 5
	}
	if segs, _ := listSegments(dir); len(segs) != 1 {
		t.Fatalf("%d segments while cuts fail, want 1", len(segs))
	}
	if w.cutErr == nil || w.err != nil {
		t.Fatalf("cutErr %v, err %v: want a pending cut and a usable log", w.cutErr, w.err)
	}
	full = false
	mustSave(t, w, hardState(1, 1, next), entries(next, next+4, 1))
	if segs, _ := listSegments(dir); len(segs) != 2 || w.cutErr != nil {
		t.Fatalf("%d segments after space returned (cutErr %v), want 2", len(segs), w.cutErr)
	}
	mustSave(t, w, hardState(1, 1, next+5), entries(next+5, next+9, 1))
	mustClose(t, w)
	if last, n := readBack(t, dir); last != next+9 || n != int(next+9) {
		t.Fatalf("read back %d entries up to %d, want %d", n, last, next+9)
	}
	if des, _ := os.ReadDir(dir); len(des) != 2 {
		t.Fatalf("%d files in the WAL dir, want the 2 segments (no temp left)", len(des))
	}
}
