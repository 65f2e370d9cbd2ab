package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// errGap marks a log that is intact but cannot give a contiguous run of entries from the
// requested mark, e.g. because a later snapshot mark moved the log past it.
var errGap = errors.New("entries are not contiguous")

// readState accumulates what ReadAll returns while segments are replayed in order.
type readState struct {
	from      Snapshot
	found     bool // the from mark was seen
	haveMeta  bool
	metadata  []byte
	state     *raftpb.HardState
	ents      []*raftpb.Entry // live entries above from.Index, contiguous
	lastIndex uint64          // last entry index or mark written so far
	segEnd    int64           // valid bytes in the segment read last
}

// readSegment verifies and replays one segment. prev is the running CRC at the end of the
// previous segment, checked against this one's seed when chained. For the last segment a
// torn tail is tolerated: truncateAt is where to cut it (-1 when nothing needs cutting).
func (rs *readState) readSegment(lg *zap.Logger, path string, prev uint32, chained, isLast bool) (truncateAt int64, crc uint32, err error) {
	err = withSegment(path, func(buf []byte) error {
		truncateAt, crc, err = rs.readSegmentBytes(lg, path, buf, prev, chained, isLast)
		return err
	})
	return truncateAt, crc, err
}

// readSegmentBytes is readSegment on a segment already in memory; path only names it in
// errors and logs.
func (rs *readState) readSegmentBytes(lg *zap.Logger, path string, buf []byte, prev uint32, chained, isLast bool) (truncateAt int64, crc uint32, err error) {
	var off int64
	n := 0 // records read in this segment
	for off < int64(len(buf)) {
		r, rerr := readRecord(buf, off, prev)
		if rerr != nil && isLast && n >= 2 && allZero(buf[off:]) {
			// The preallocated rest of the segment being written: the log ends here, and
			// appends continue here without cutting the file.
			rs.segEnd = off
			return -1, prev, nil
		}
		if rerr != nil {
			// The header records were synced before the segment was renamed into place,
			// so damage there is never a torn write. Only the final record of the last
			// segment can be torn, and only if it looks it: a complete record that fails
			// its checksum is corruption, wherever it is.
			torn := isLast && n >= 2 && tornRecord(buf, off, prev)
			if torn && tornTail(buf, off) {
				lg.Warn("wal: truncating torn tail",
					zap.String("file", path),
					zap.Int64("offset", off),
					zap.Int64("dropped-bytes", int64(len(buf))-off),
					zap.NamedError("cause", rerr))
				rs.segEnd = off
				return off, prev, nil
			}
			if isLast && n >= 2 && !torn {
				rerr = fmt.Errorf("%w (the record is complete, so not a torn write)", rerr)
			}
			return -1, 0, corruptError(path, off, rerr)
		}
		if err := rs.apply(r, n, chained, prev); err != nil {
			if errors.Is(err, errGap) {
				return -1, 0, fmt.Errorf("wal: %s at offset %d: %w", path, off, err)
			}
			return -1, 0, corruptError(path, off, err)
		}
		prev, off = r.crc, r.end
		n++
	}
	if n < 2 {
		return -1, 0, corruptError(path, off, errors.New("segment lacks its header"))
	}
	rs.segEnd = off
	return -1, prev, nil
}

// apply replays the n-th record of a segment.
func (rs *readState) apply(r record, n int, chained bool, prev uint32) error {
	if n == 0 && r.typ != recCRC {
		return errors.New("segment does not start with a CRC record")
	}
	if n == 1 && r.typ != recMetadata {
		return errors.New("segment header lacks metadata")
	}
	switch r.typ {
	case recCRC:
		if n != 0 {
			return errors.New("CRC record inside a segment")
		}
		if seed := binary.LittleEndian.Uint32(r.data); chained && seed != prev {
			return fmt.Errorf("CRC chain broken: segment starts from %08x, previous ended at %08x", seed, prev)
		}
	case recMetadata:
		if n != 1 {
			return errors.New("metadata record inside a segment")
		}
		if rs.haveMeta && !bytes.Equal(rs.metadata, r.data) {
			return errors.New("metadata differs from earlier segment")
		}
		rs.haveMeta = true
		rs.metadata = append([]byte(nil), r.data...)
	case recState:
		hs := &raftpb.HardState{}
		if err := proto.Unmarshal(r.data, hs); err != nil {
			return fmt.Errorf("decode hard state: %w", err)
		}
		rs.state = hs
	case recSnapshot:
		if len(r.data) != 16 {
			return fmt.Errorf("snapshot mark of %d bytes", len(r.data))
		}
		s := Snapshot{
			Index: binary.LittleEndian.Uint64(r.data[:8]),
			Term:  binary.LittleEndian.Uint64(r.data[8:]),
		}
		if s == rs.from {
			rs.found = true
		}
		rs.lastIndex = max(rs.lastIndex, s.Index)
	case recEntry:
		e := &raftpb.Entry{}
		if err := proto.Unmarshal(r.data, e); err != nil {
			return fmt.Errorf("decode entry: %w", err)
		}
		return rs.applyEntry(e)
	}
	return nil
}

// applyEntry keeps raft's rule that an entry at index i replaces everything at i and above.
func (rs *readState) applyEntry(e *raftpb.Entry) error {
	idx := e.GetIndex()
	rs.lastIndex = idx
	if idx <= rs.from.Index {
		// Everything held is above from.Index, so above idx too.
		rs.ents = rs.ents[:0]
		return nil
	}
	pos := idx - rs.from.Index - 1
	if pos > uint64(len(rs.ents)) {
		var have uint64
		if len(rs.ents) > 0 {
			have = rs.ents[len(rs.ents)-1].GetIndex()
		} else {
			have = rs.from.Index
		}
		return fmt.Errorf("%w: entry %d follows %d (a newer snapshot mark may be needed)", errGap, idx, have)
	}
	rs.ents = append(rs.ents[:pos], e)
	return nil
}
