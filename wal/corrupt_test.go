package wal

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// writeLog makes a one-segment log holding entries 1..9, one Save each with a hard state,
// then calls last to write the final records.
func writeLog(t *testing.T, dir string, last func(w *WAL)) {
	t.Helper()
	w := mustCreate(t, dir, "m")
	for i := uint64(1); i <= 9; i++ {
		mustSave(t, w, hardState(1, 1, i), entries(i, i, 1))
	}
	last(w)
	mustClose(t, w)
}

// writeTen makes a one-segment log holding entries 1..10, the last without a hard state
// so it is the final record.
func writeTen(t *testing.T, dir string) {
	t.Helper()
	writeLog(t, dir, func(w *WAL) { mustSave(t, w, nil, entries(10, 10, 1)) })
}

// writeTenBig is writeTen with a final entry large enough to span a sector boundary.
func writeTenBig(t *testing.T, dir string) {
	t.Helper()
	writeLog(t, dir, func(w *WAL) {
		mustSave(t, w, nil, []*raftpb.Entry{entry(10, 1, strings.Repeat("x", 700))})
	})
}

// checkRepairAndAppend reads dir expecting entries 1..want, appends more, and checks the
// appended entries survive another reopen.
func checkRepairAndAppend(t *testing.T, dir string, want uint64) {
	t.Helper()
	w, _, hs, ents := mustRead(t, dir, Snapshot{})
	checkEntries(t, ents, entries(1, want, 1))
	checkState(t, hs, hardState(1, 1, 9))
	mustSave(t, w, hardState(2, 2, want+1), entries(want+1, want+3, 2))
	mustClose(t, w)
	_, _, hs, ents = mustRead(t, dir, Snapshot{})
	checkEntries(t, ents, append(entries(1, want, 1), entries(want+1, want+3, 2)...))
	checkState(t, hs, hardState(2, 2, want+1))
}

func TestTornTailTruncated(t *testing.T) {
	base := t.TempDir()
	writeTen(t, base)
	path := lastSegmentPath(t, base)
	offs := recordOffsets(t, path)
	lastRec := offs[len(offs)-1]
	size := dataEnd(t, path)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Cut the final record at every length from nothing-but-a-byte to one byte short.
	for cut := lastRec + 1; cut < size; cut++ {
		t.Run(fmt.Sprintf("cut%d", cut), func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, filepath.Base(path))
			if err := os.WriteFile(p, orig[:cut], 0o600); err != nil {
				t.Fatal(err)
			}
			checkRepairAndAppend(t, dir, 9)
		})
	}
}

func TestZeroFilledTail(t *testing.T) {
	dir := t.TempDir()
	writeTen(t, dir)
	path := lastSegmentPath(t, dir)
	appendBytes(t, path, make([]byte, 8192))
	checkRepairAndAppend(t, dir, 10)
}

func TestTornRecordThenZeros(t *testing.T) {
	// The final record's first sector reached the disk, the rest did not: in a
	// preallocated segment that rest reads as zeros.
	dir := t.TempDir()
	writeTenBig(t, dir)
	path := lastSegmentPath(t, dir)
	offs := recordOffsets(t, path)
	last, end := offs[len(offs)-1], dataEnd(t, path)
	lost := roundUpSector(last + headerSize + 1)
	if lost >= end {
		t.Fatalf("final record [%d, %d) spans no sector boundary", last, end)
	}
	buf, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	clear(buf[lost:end])
	if err := os.WriteFile(path, buf, 0o600); err != nil {
		t.Fatal(err)
	}
	checkRepairAndAppend(t, dir, 9)
}

// TestDamagedFinalRecordIsCorrupt: a final record that is all there but fails its
// checksum was not torn by a crash; it may have been synced and acknowledged, so it is
// reported, naming file and offset, and the file is left as it was.
func TestDamagedFinalRecordIsCorrupt(t *testing.T) {
	finalEntry := func(t *testing.T, dir string) { writeTen(t, dir) }
	finalState := func(t *testing.T, dir string) {
		writeLog(t, dir, func(w *WAL) { mustSave(t, w, hardState(1, 1, 10), entries(10, 10, 1)) })
	}
	finalMark := func(t *testing.T, dir string) {
		writeLog(t, dir, func(w *WAL) {
			mustSave(t, w, nil, entries(10, 10, 1))
			if err := w.SaveSnapshot(Snapshot{Index: 10, Term: 1}); err != nil {
				t.Fatal(err)
			}
		})
	}
	flip := func(at func(rec, end int64) int64) func([]byte, int64, int64) {
		return func(buf []byte, rec, end int64) { buf[at(rec, end)] ^= 0x40 }
	}
	cases := []struct {
		name   string
		write  func(t *testing.T, dir string)
		damage func(buf []byte, rec, end int64)
	}{
		{"entry-payload", finalEntry, flip(func(rec, _ int64) int64 { return rec + headerSize + 1 })},
		{"entry-payload-last-byte", finalEntry, flip(func(_, end int64) int64 { return end - 1 })},
		{"big-entry-payload", func(t *testing.T, dir string) { writeTenBig(t, dir) }, flip(func(_, end int64) int64 { return end - 5 })},
		{"hard-state", finalState, flip(func(rec, _ int64) int64 { return rec + headerSize + 1 })},
		// A mark ends in the zero high bytes of its term.
		{"snapshot-mark", finalMark, flip(func(rec, _ int64) int64 { return rec + headerSize })},
		{"crc", finalEntry, flip(func(rec, _ int64) int64 { return rec + 2 })},
		{"type", finalEntry, flip(func(rec, _ int64) int64 { return rec })},
		{"type-to-zero", finalEntry, func(buf []byte, rec, _ int64) { buf[rec] = 0 }},
		// Longer lengths take the record's end into the zeros, past the end of the file,
		// and over the record limit.
		{"length-into-zeros", finalEntry, flip(func(rec, _ int64) int64 { return rec + 6 })},
		{"length-past-eof", finalEntry, flip(func(rec, _ int64) int64 { return rec + 7 })},
		{"length-over-limit", finalEntry, flip(func(rec, _ int64) int64 { return rec + 8 })},
		// Zeros that start inside a sector are not what a lost sector leaves.
		{"zeros-mid-sector", finalEntry, func(buf []byte, rec, end int64) { clear(buf[rec+headerSize+2 : end]) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			c.write(t, dir)
			path := lastSegmentPath(t, dir)
			offs := recordOffsets(t, path)
			rec, end := offs[len(offs)-1], dataEnd(t, path)
			buf, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// Layouts that would make the record look torn (zeros across a sector
			// boundary) would test nothing here.
			if z := rec + int64(dataLen(buf[rec:end])); roundUpSector(z) < end {
				t.Fatalf("final record [%d, %d) has zeros from %d across a sector boundary", rec, end, z)
			}
			c.damage(buf, rec, end)
			if err := os.WriteFile(path, buf, 0o600); err != nil {
				t.Fatal(err)
			}

			_, _, _, _, err = readWAL(t, dir, Snapshot{})
			if !isCorrupt(err) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
			want := fmt.Sprintf("%s at offset %d", filepath.Base(path), rec)
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not name %q", err, want)
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(after, buf) {
				t.Fatalf("segment changed: %d bytes before, %d after", len(buf), len(after))
			}
		})
	}
}

func TestGarbageTail(t *testing.T) {
	dir := t.TempDir()
	writeTen(t, dir)
	appendBytes(t, lastSegmentPath(t, dir), bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 50))
	checkRepairAndAppend(t, dir, 10)
}

func TestFlippedByteInEarlierSegment(t *testing.T) {
	setSegmentSize(t, 512)
	dir := t.TempDir()
	w := mustCreate(t, dir, "m")
	for i := uint64(1); i <= 60; i++ {
		mustSave(t, w, hardState(1, 1, i), entries(i, i, 1))
	}
	mustClose(t, w)
	segs := segmentFiles(t, dir)
	if len(segs) < 3 {
		t.Fatalf("only %d segments", len(segs))
	}
	victim := segs[1].path
	offs := recordOffsets(t, victim)
	rec := offs[len(offs)/2]
	flipByte(t, victim, rec+headerSize+1)

	_, _, _, _, err := readWAL(t, dir, Snapshot{})
	if !isCorrupt(err) {
		t.Fatalf("got %v, want ErrCorrupt", err)
	}
	want := fmt.Sprintf("%s at offset %d", filepath.Base(victim), rec)
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name %q", err, want)
	}
}

func TestCorruptionMidLastSegment(t *testing.T) {
	cases := map[string]func(rec int64) int64{
		"payload":         func(rec int64) int64 { return rec + headerSize + 1 },
		"length-past-eof": func(rec int64) int64 { return rec + 6 },
		"length-small":    func(rec int64) int64 { return rec + 5 },
		"type":            func(rec int64) int64 { return rec },
	}
	for name, at := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeTen(t, dir)
			path := lastSegmentPath(t, dir)
			offs := recordOffsets(t, path)
			rec := offs[len(offs)/2]
			flipByte(t, path, at(rec))
			_, _, _, _, err := readWAL(t, dir, Snapshot{})
			if !isCorrupt(err) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("offset %d", rec)) {
				t.Fatalf("error %q does not name offset %d", err, rec)
			}
		})
	}
}

func TestDamagedHeaderIsNotTorn(t *testing.T) {
	dir := t.TempDir()
	mustClose(t, mustCreate(t, dir, "m"))
	path := lastSegmentPath(t, dir)
	if err := os.Truncate(path, 5); err != nil {
		t.Fatal(err)
	}
	if _, _, _, _, err := readWAL(t, dir, Snapshot{}); !isCorrupt(err) {
		t.Fatalf("got %v, want ErrCorrupt", err)
	}
}

func TestBrokenChainBetweenSegments(t *testing.T) {
	setSegmentSize(t, 512)
	dir := t.TempDir()
	w := mustCreate(t, dir, "m")
	for i := uint64(1); i <= 30; i++ {
		mustSave(t, w, hardState(1, 1, i), entries(i, i, 1))
	}
	mustClose(t, w)
	segs := segmentFiles(t, dir)
	// Dropping the final record of a finished segment leaves every record valid on its
	// own, but the next segment's seed no longer matches.
	offs := recordOffsets(t, segs[0].path)
	if err := os.Truncate(segs[0].path, offs[len(offs)-1]); err != nil {
		t.Fatal(err)
	}
	if _, _, _, _, err := readWAL(t, dir, Snapshot{}); !isCorrupt(err) {
		t.Fatalf("got %v, want ErrCorrupt", err)
	}
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	buf, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	buf[off] ^= 0x40
	if err := os.WriteFile(path, buf, 0o600); err != nil {
		t.Fatal(err)
	}
}
