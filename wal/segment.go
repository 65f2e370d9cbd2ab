package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cairn-kv/cairn/internal/fsutil"
)

const (
	segmentExt = ".wal"
	tmpExt     = ".tmp"
)

// segment names one segment file: its sequence number and the index the log had reached
// when it was cut (plus one), so no live entry above that index is in earlier segments.
type segment struct {
	seq   uint64
	index uint64
	path  string
}

func segmentName(seq, index uint64) string {
	return fmt.Sprintf("%016x-%016x%s", seq, index, segmentExt)
}

// parseSegmentName accepts exactly the names segmentName produces.
func parseSegmentName(name string) (seq, index uint64, ok bool) {
	base, found := strings.CutSuffix(name, segmentExt)
	if !found || len(base) != 33 || base[16] != '-' {
		return 0, 0, false
	}
	if _, err := fmt.Sscanf(base, "%016x-%016x", &seq, &index); err != nil {
		return 0, 0, false
	}
	if segmentName(seq, index) != name {
		return 0, 0, false
	}
	return seq, index, true
}

// listSegments returns dir's segments in sequence order. A missing dir has none.
func listSegments(dir string) ([]segment, error) {
	des, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("wal: list %s: %w", dir, err)
	}
	var segs []segment
	for _, de := range des {
		if !de.Type().IsRegular() {
			continue
		}
		seq, index, ok := parseSegmentName(de.Name())
		if !ok {
			continue
		}
		segs = append(segs, segment{seq: seq, index: index, path: filepath.Join(dir, de.Name())})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].seq < segs[j].seq })
	for i := 1; i < len(segs); i++ {
		if segs[i].seq != segs[i-1].seq+1 {
			return nil, fmt.Errorf("wal: %s: segment sequence jumps from %d to %d", dir, segs[i-1].seq, segs[i].seq)
		}
	}
	return segs, nil
}

// removeTemps deletes half-made segments left by a crash during a cut; they were never
// renamed into place so hold nothing that was acknowledged.
func removeTemps(dir string) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("wal: list %s: %w", dir, err)
	}
	for _, de := range des {
		name := de.Name()
		base, ok := strings.CutSuffix(name, tmpExt)
		if !ok || !strings.HasSuffix(base, segmentExt) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("wal: remove stale %s: %w", name, err)
		}
	}
	return nil
}

// createSegment writes header as a new segment through a locked temp file that is synced
// and renamed into place, so a crash never leaves a segment without its header. It returns
// the open, locked file positioned after the header. synced, if set, is told once the
// segment is durable in place.
func createSegment(dir string, seg segment, header []byte, synced func(path string)) (*os.File, error) {
	tmp := seg.path + tmpExt
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", tmp, err)
	}
	fail := func(err error) (*os.File, error) {
		_ = f.Close()
		_ = os.Remove(tmp)
		return nil, err
	}
	// Lock before the rename: the lock follows the inode, so there is no moment when the
	// new segment is visible but unlocked.
	if err := lockFile(f); err != nil {
		return fail(fmt.Errorf("wal: lock %s: %w", tmp, err))
	}
	if _, err := f.Write(header); err != nil {
		return fail(fmt.Errorf("wal: write %s: %w", tmp, err))
	}
	// The zeros after the header read as the end of the log (see readSegmentBytes).
	if err := preallocate(f, SegmentSizeBytes); err != nil {
		return fail(fmt.Errorf("wal: preallocate %s: %w", tmp, err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("wal: sync %s: %w", tmp, err))
	}
	if err := os.Rename(tmp, seg.path); err != nil {
		return fail(fmt.Errorf("wal: rename %s: %w", tmp, err))
	}
	if err := fsutil.SyncDir(dir); err != nil {
		_ = f.Close()
		return nil, err
	}
	if synced != nil {
		synced(seg.path)
	}
	return f, nil
}
