package wal

import (
	"os"
	"path/filepath"
	"testing"
)

// powerLoss models what a power loss leaves of a log: each segment as it was at its last
// sync, since anything written after that may never have reached the disk (the rest of a
// preallocated segment then reads as zeros, which the contents at the sync already show).
type powerLoss struct {
	t       *testing.T
	durable map[string][]byte // segment path -> contents when last synced
}

// watchSyncs starts recording w's syncs. Segments already on disk count as synced now:
// Create and Open leave nothing unsynced.
func watchSyncs(t *testing.T, w *WAL) *powerLoss {
	t.Helper()
	p := &powerLoss{t: t, durable: map[string][]byte{}}
	for _, s := range w.segs {
		p.record(s.path)
	}
	w.hooks = &testHooks{synced: p.record}
	return p
}

func (p *powerLoss) record(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		p.t.Errorf("record synced contents: %v", err)
		return
	}
	p.durable[path] = b
}

// crash writes to a new directory what a power loss at this moment would leave of dir.
func (p *powerLoss) crash(dir string) string {
	out := p.t.TempDir()
	segs, err := listSegments(dir)
	if err != nil {
		p.t.Errorf("crash: %v", err)
		return out
	}
	for _, s := range segs {
		b, ok := p.durable[s.path]
		if !ok {
			p.t.Errorf("crash: segment %s was never synced", filepath.Base(s.path))
			continue
		}
		if err := os.WriteFile(filepath.Join(out, filepath.Base(s.path)), b, 0o600); err != nil {
			p.t.Errorf("crash: %v", err)
		}
	}
	return out
}

// TestPowerLossAtCut: a commit-only hard state is written without fsync (raft can learn a
// commit index again). When such a write is the one that takes a segment over the size
// limit, the segment must still be synced before the next one appears: a power loss right
// after the cut would otherwise leave a short segment mid-log, whose CRC chain the next
// segment's seed no longer matches, and the log would not open.
func TestPowerLossAtCut(t *testing.T) {
	setSegmentSize(t, 4096)
	dir := t.TempDir()
	w := mustCreate(t, dir, "m")
	pl := watchSyncs(t, w)
	var crashed string
	w.hooks.cut = func() {
		if crashed == "" {
			crashed = pl.crash(dir)
		}
	}
	// Synced saves until the segment is nearly full, then commit-only saves until one
	// of them cuts.
	var last uint64
	for w.size < SegmentSizeBytes-64 {
		last++
		mustSave(t, w, hardState(1, 1, last/2), entries(last, last, 1))
	}
	if crashed != "" {
		t.Fatal("a synced save cut the segment; the test needs an unsynced one to")
	}
	commit := last / 2
	for crashed == "" && commit < last {
		commit++
		mustSave(t, w, hardState(1, 1, commit), nil)
	}
	if crashed == "" {
		t.Fatalf("no cut after commit-only saves up to %d (segment at %d bytes)", commit, w.size)
	}
	mustClose(t, w)
	if n := len(segmentFiles(t, crashed)); n != 2 {
		t.Fatalf("crash image holds %d segments, want 2", n)
	}

	_, _, hs, ents := mustRead(t, crashed, Snapshot{})
	checkEntries(t, ents, entries(1, last, 1))
	checkState(t, hs, hardState(1, 1, commit))
}
