package wal

import (
	"bytes"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/internal/testutil"
	"go.etcd.io/raft/v3/raftpb"
)

// Appends across many segment cuts, entries of every size up to a few chunks of zeros,
// all read back after a reopen: zeroing ahead never touches what was appended.
func TestZeroFillKeepsEveryAppend(t *testing.T) {
	setSegmentSize(t, 3*zeroChunk)
	dir := t.TempDir()
	w := mustCreate(t, dir, "meta")
	var want []*raftpb.Entry
	sizes := []int{1, 100, 4000, 70 << 10, zeroChunk/2 + 7, 2*zeroChunk + 1}
	for i := uint64(1); i <= 60; i++ {
		e := entry(i, 1, string(bytes.Repeat([]byte{byte('a' + i%26)}, sizes[int(i)%len(sizes)])))
		want = append(want, e)
		mustSave(t, w, hardState(1, 1, i), []*raftpb.Entry{e})
	}
	mustClose(t, w)
	if n := len(segmentFiles(t, dir)); n < 5 {
		t.Fatalf("%d segments, want the appends to cut several", n)
	}
	w, _, _, got := mustRead(t, dir, Snapshot{})
	defer mustClose(t, w)
	checkEntries(t, got, want)
}

// The space past the appends is zeroed and synced ahead of them, so the fdatasync of an
// append does not also convert preallocated (unwritten) blocks: FIEMAP shows no unwritten
// extent right after the last record once the filler caught up.
func TestZeroFillWritesAhead(t *testing.T) {
	dir := t.TempDir()
	w := mustCreate(t, dir, "meta")
	defer mustClose(t, w)
	mustSave(t, w, hardState(1, 1, 1), []*raftpb.Entry{entry(1, 1, "x")})
	path := lastSegmentPath(t, dir)
	end := dataEnd(t, path)
	if _, err := unwrittenIn(path, end, zeroAhead/2); err != nil {
		// No FIEMAP on this file system: the zeros must still read as the log's end.
		t.Logf("no extent map here (%v); checking the zeros only", err)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data[end:end+zeroAhead/2], make([]byte, zeroAhead/2)) {
			t.Fatal("bytes past the last record are not zeros")
		}
		return
	}
	testutil.Eventually(t, 10*time.Second, "the blocks past the last record written", func() bool {
		unwritten, err := unwrittenIn(path, end, zeroAhead/2)
		return err == nil && !unwritten
	})
}

// unwrittenIn says whether path has an unwritten (preallocated, never written) extent
// overlapping off..off+n, from the FS_IOC_FIEMAP ioctl.
func unwrittenIn(path string, off, n int64) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	exts, err := fiemap(f, off, n)
	if err != nil {
		return false, fmt.Errorf("fiemap %s: %w", path, err)
	}
	for _, e := range exts {
		if e.flags&fiemapExtentUnwritten != 0 {
			return true, nil
		}
	}
	return false, nil
}
