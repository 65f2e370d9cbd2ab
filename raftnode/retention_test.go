package raftnode

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-kv/cairn/wal"
)

// --max-snapshots and --max-wals: each snapshot purges the oldest snapshot files and
// released WAL segments beyond the limits; a negative limit (etcd's 0) keeps them all.
// Either way the member restarts from what is left.
func TestSnapshotFileRetention(t *testing.T) {
	old := wal.SegmentSizeBytes
	wal.SegmentSizeBytes = 4096
	t.Cleanup(func() { wal.SegmentSizeBytes = old })
	for _, tc := range []struct {
		maxSnaps, maxWALs int
	}{{2, 2}, {-1, -1}} {
		t.Run(fmt.Sprintf("snaps=%d,wals=%d", tc.maxSnaps, tc.maxWALs), func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig(t, dir)
			cfg.MaxSnapshots, cfg.MaxWALs = tc.maxSnaps, tc.maxWALs
			n, err := Start(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			const rounds = 8
			pad := strings.Repeat("x", 1000)
			for r := 0; r < rounds; r++ {
				for i := 0; i < 10; i++ {
					propose(t, n, fmt.Sprintf("r%d-%d-%s", r, i, pad))
				}
				applyUntil(t, n, fmt.Sprintf("r%d-9-%s", r, pad))
				if err := n.Snapshot(n.CommittedIndex(), 0, nil); err != nil {
					t.Fatal(err)
				}
			}
			n.Stop()
			snaps, _ := filepath.Glob(filepath.Join(cfg.SnapDir, "*.snap"))
			wals, _ := filepath.Glob(filepath.Join(cfg.WALDir, "*.wal"))
			// Segments are numbered from 0: the newest one's number says how many were cut.
			var lastSeq int
			if _, err := fmt.Sscanf(filepath.Base(wals[len(wals)-1]), "%016x-", &lastSeq); err != nil {
				t.Fatal(err)
			}
			if lastSeq+1 < rounds {
				t.Fatalf("test setup: only %d segments cut", lastSeq+1)
			}
			if tc.maxSnaps > 0 {
				if len(snaps) != tc.maxSnaps || len(wals) > tc.maxWALs {
					t.Fatalf("%d snapshot files (max %d), %d WAL segments (max %d)", len(snaps), tc.maxSnaps, len(wals), tc.maxWALs)
				}
			} else if len(snaps) != rounds || len(wals) != lastSeq+1 {
				t.Fatalf("unlimited: %d snapshot files (want %d), %d WAL segments (want all %d)", len(snaps), rounds, len(wals), lastSeq+1)
			}
			p, err := LoadPersisted(cfg.Logger, cfg.WALDir, cfg.SnapDir)
			if err != nil {
				t.Fatal(err)
			}
			n, err = Start(cfg, p)
			if err != nil {
				t.Fatal(err)
			}
			defer n.Stop()
			propose(t, n, "after")
			if got := applyUntil(t, n, "after"); len(got) != 1 {
				t.Fatalf("after restart applied %d entries, want only the new one", len(got))
			}
		})
	}
}
