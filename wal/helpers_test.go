package wal

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"
)

func entry(index, term uint64, data string) *raftpb.Entry {
	return &raftpb.Entry{Index: proto.Uint64(index), Term: proto.Uint64(term), Data: []byte(data)}
}

func entries(from, to, term uint64) []*raftpb.Entry {
	var out []*raftpb.Entry
	for i := from; i <= to; i++ {
		out = append(out, entry(i, term, "payload"))
	}
	return out
}

func hardState(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: proto.Uint64(term), Vote: proto.Uint64(vote), Commit: proto.Uint64(commit)}
}

// setSegmentSize lowers SegmentSizeBytes for one test.
func setSegmentSize(t *testing.T, n int64) {
	t.Helper()
	old := SegmentSizeBytes
	SegmentSizeBytes = n
	t.Cleanup(func() { SegmentSizeBytes = old })
}

func mustCreate(t *testing.T, dir string, meta string) *WAL {
	t.Helper()
	w, err := Create(zaptest.NewLogger(t), dir, []byte(meta))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return w
}

func mustSave(t *testing.T, w *WAL, hs *raftpb.HardState, ents []*raftpb.Entry) {
	t.Helper()
	if err := w.Save(hs, ents); err != nil {
		t.Fatalf("Save: %v", err)
	}
}

func mustClose(t *testing.T, w *WAL) {
	t.Helper()
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// readWAL opens dir at from and reads it all; the WAL is returned open for appending.
func readWAL(t *testing.T, dir string, from Snapshot) (*WAL, []byte, *raftpb.HardState, []*raftpb.Entry, error) {
	t.Helper()
	w, err := Open(zaptest.NewLogger(t), dir, from)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	meta, hs, ents, err := w.ReadAll()
	if err != nil {
		_ = w.Close()
		return nil, nil, nil, nil, err
	}
	t.Cleanup(func() { _ = w.Close() })
	return w, meta, hs, ents, nil
}

func mustRead(t *testing.T, dir string, from Snapshot) (*WAL, []byte, *raftpb.HardState, []*raftpb.Entry) {
	t.Helper()
	w, meta, hs, ents, err := readWAL(t, dir, from)
	if err != nil {
		t.Fatalf("open+read %s from %+v: %v", dir, from, err)
	}
	return w, meta, hs, ents
}

func checkEntries(t *testing.T, got, want []*raftpb.Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("entry %d: got %v, want %v", i, got[i], want[i])
		}
	}
}

func checkState(t *testing.T, got, want *raftpb.HardState) {
	t.Helper()
	if got.GetTerm() != want.GetTerm() || got.GetVote() != want.GetVote() || got.GetCommit() != want.GetCommit() {
		t.Fatalf("hard state: got %v, want %v", got, want)
	}
}

func segmentFiles(t *testing.T, dir string) []segment {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

func lastSegmentPath(t *testing.T, dir string) string {
	t.Helper()
	segs := segmentFiles(t, dir)
	if len(segs) == 0 {
		t.Fatal("no segments")
	}
	return segs[len(segs)-1].path
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// recordOffsets lists the offset of every record in a well-formed segment.
func recordOffsets(t *testing.T, path string) []int64 {
	t.Helper()
	buf, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	for off := int64(0); off < int64(len(buf)) && !allZero(buf[off:]); {
		r, err := parseHeader(buf, off)
		if err != nil {
			t.Fatalf("%s offset %d: %v", filepath.Base(path), off, err)
		}
		offs = append(offs, off)
		off = r.end
	}
	return offs
}

func isCorrupt(err error) bool { return errors.Is(err, ErrCorrupt) }

// dataEnd is where the records of a segment end: the preallocated rest is zeros.
func dataEnd(t *testing.T, path string) int64 {
	t.Helper()
	buf, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	offs := recordOffsets(t, path)
	r, err := parseHeader(buf, offs[len(offs)-1])
	if err != nil {
		t.Fatal(err)
	}
	return r.end
}

// TestMain keeps segments small: each one is preallocated to SegmentSizeBytes, and many
// tests create and reread logs.
func TestMain(m *testing.M) {
	SegmentSizeBytes = 1 << 20
	os.Exit(m.Run())
}
