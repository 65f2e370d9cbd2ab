package wal

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// seedSegment builds a well-formed segment in memory: header, a mark, some saves.
func seedSegment(n int) []byte {
	w := &WAL{metadata: []byte("member"), state: &raftpb.HardState{}}
	buf, crc := w.segmentHeader(0)
	buf, crc = appendRecord(buf, crc, recSnapshot, encodeMark(Snapshot{}))
	for i := uint64(1); i <= uint64(n); i++ {
		var err error
		if buf, crc, err = appendProtoRecord(buf, crc, recEntry, entry(i, 1, "payload")); err != nil {
			panic(err)
		}
		if buf, crc, err = appendProtoRecord(buf, crc, recState, hardState(1, 1, i)); err != nil {
			panic(err)
		}
	}
	return buf
}

// FuzzReadSegment feeds arbitrary bytes to the segment reader. It must never panic, must
// report damage as ErrCorrupt (or a gap), and a torn-tail repair must leave a prefix that
// reads cleanly to the same result.
func FuzzReadSegment(f *testing.F) {
	good := seedSegment(5)
	f.Add([]byte{})
	f.Add(good)
	f.Add(good[:len(good)-3])                                                 // torn final record
	f.Add(append(bytes.Clone(good), make([]byte, 64)...))                     // zero-filled tail
	f.Add(append(bytes.Clone(good), bytes.Repeat([]byte{0xde, 0xad}, 40)...)) // garbage tail
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x40 // damage mid-segment
	f.Add(flipped)
	hdr := seedSegment(0)
	f.Add(hdr[:5]) // damaged header
	overwrite := seedSegment(3)
	var crc uint32
	for off := int64(0); off < int64(len(overwrite)); {
		r, err := readRecord(overwrite, off, crc)
		if err != nil {
			panic(err)
		}
		crc, off = r.crc, r.end
	}
	overwrite, _, _ = appendProtoRecord(overwrite, crc, recEntry, entry(2, 2, "new leader"))
	f.Add(overwrite) // a later entry replaces the tail

	f.Fuzz(func(t *testing.T, data []byte) {
		lg := zap.NewNop()
		for _, isLast := range []bool{false, true} {
			rs := readState{state: &raftpb.HardState{}}
			trunc, crc, err := rs.readSegmentBytes(lg, "fuzz.wal", data, 0, false, isLast)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) && !errors.Is(err, errGap) {
					t.Fatalf("error is neither corruption nor a gap: %v", err)
				}
				continue
			}
			if trunc >= 0 && !isLast {
				t.Fatalf("a segment that is not last was truncated at %d", trunc)
			}
			if trunc > int64(len(data)) {
				t.Fatalf("truncate at %d past the end %d", trunc, len(data))
			}
			// Without a truncation the segment ends at the end of the data or where only
			// zeros (the preallocated rest of the last segment) follow.
			if rs.segEnd > int64(len(data)) || (trunc < 0 && rs.segEnd != int64(len(data)) && !(isLast && allZero(data[rs.segEnd:]))) {
				t.Fatalf("segment end %d for %d bytes (truncate %d)", rs.segEnd, len(data), trunc)
			}
			// The repaired prefix must read cleanly and give the same result.
			prefix := data[:rs.segEnd]
			rs2 := readState{state: &raftpb.HardState{}}
			trunc2, crc2, err := rs2.readSegmentBytes(lg, "fuzz.wal", prefix, 0, false, isLast)
			if err != nil || trunc2 >= 0 || crc2 != crc {
				t.Fatalf("repaired prefix: trunc %d crc %08x/%08x err %v", trunc2, crc2, crc, err)
			}
			if len(rs2.ents) != len(rs.ents) || !bytes.Equal(rs2.metadata, rs.metadata) {
				t.Fatalf("repaired prefix reads differently")
			}
			for i, e := range rs.ents {
				if e.GetIndex() != uint64(i)+1 {
					t.Fatalf("entry %d has index %d", i, e.GetIndex())
				}
			}
		}
	})
}

// TestFuzzSeedsFromDisk checks the seed helper matches what Create writes, so the corpus
// stays representative of real segments.
func TestFuzzSeedsFromDisk(t *testing.T) {
	dir := t.TempDir()
	mustClose(t, mustCreate(t, dir, "member"))
	got, err := os.ReadFile(lastSegmentPath(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	// The rest of the preallocated segment is zeros.
	want := seedSegment(0)
	if len(got) < len(want) || !bytes.Equal(got[:len(want)], want) || !allZero(got[len(want):]) {
		t.Fatalf("Create wrote %d bytes starting %x, seed helper builds %x", len(got), got[:min(len(got), len(want))], want)
	}
}
