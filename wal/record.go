package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// recordType says what a record's data holds.
type recordType uint8

const (
	// Type 0 is deliberately unused so a zero-filled tail never parses as a record.
	recMetadata recordType = 1 // opaque bytes given to Create
	recEntry    recordType = 2 // raftpb.Entry, proto-encoded
	recState    recordType = 3 // raftpb.HardState, proto-encoded
	recSnapshot recordType = 4 // snapshot mark: index, term as two little-endian uint64
	recCRC      recordType = 5 // running CRC (little-endian uint32) that seeds a segment's chain
)

func (t recordType) valid() bool { return t >= recMetadata && t <= recCRC }

const (
	// headerSize is type(1) + crc(4) + len(4).
	headerSize = 9
	// maxRecordBytes caps one record's data so a garbage length cannot make a reader
	// allocate or scan unbounded memory.
	maxRecordBytes = 64 << 20
	// maxScanCRCBytes bounds the work spent deciding whether valid records follow a bad
	// one; past it we refuse to guess and report corruption.
	maxScanCRCBytes = 64 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// recordCRC chains prev into the checksum of one record. The type and length are covered
// too, so a damaged header is caught and not just a damaged payload.
func recordCRC(prev uint32, t recordType, data []byte) uint32 {
	var hdr [5]byte
	hdr[0] = byte(t)
	binary.LittleEndian.PutUint32(hdr[1:], uint32(len(data)))
	c := crc32.Update(prev, crcTable, hdr[:])
	return crc32.Update(c, crcTable, data)
}

// appendRecord encodes one record onto buf and returns the new buffer and running CRC.
func appendRecord(buf []byte, prev uint32, t recordType, data []byte) ([]byte, uint32) {
	c := recordCRC(prev, t, data)
	buf = append(buf, byte(t))
	buf = binary.LittleEndian.AppendUint32(buf, c)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(data)))
	return append(buf, data...), c
}

// record is one decoded record; data aliases the segment buffer.
type record struct {
	typ  recordType
	crc  uint32 // stored checksum
	data []byte
	off  int64 // byte offset of the header in its segment
	end  int64 // offset just past the record
}

// errRecord describes why a record at some offset could not be read; the caller decides
// whether that is a torn tail or corruption.
var (
	errShortHeader = errors.New("incomplete record header")
	errBadType     = errors.New("unknown record type")
	errTooLong     = errors.New("record length over limit")
	errShortData   = errors.New("record data runs past end of file")
	errChecksum    = errors.New("checksum mismatch")
)

// parseHeader decodes the record at off without checking its CRC.
func parseHeader(buf []byte, off int64) (record, error) {
	if int64(len(buf))-off < headerSize {
		return record{}, errShortHeader
	}
	h := buf[off : off+headerSize]
	r := record{
		typ: recordType(h[0]),
		crc: binary.LittleEndian.Uint32(h[1:5]),
		off: off,
	}
	n := binary.LittleEndian.Uint32(h[5:9])
	if !r.typ.valid() {
		return record{}, errBadType
	}
	if n > maxRecordBytes {
		return record{}, errTooLong
	}
	r.end = off + headerSize + int64(n)
	if r.end > int64(len(buf)) {
		return record{}, errShortData
	}
	r.data = buf[off+headerSize : r.end]
	return r, nil
}

// readRecord decodes and verifies the record at off against the running CRC prev.
// A CRC record restarts the chain from the value it carries, because the reader may not
// have the previous segment.
func readRecord(buf []byte, off int64, prev uint32) (record, error) {
	r, err := parseHeader(buf, off)
	if err != nil {
		return record{}, err
	}
	if r.typ == recCRC {
		if len(r.data) != 4 {
			return record{}, errChecksum
		}
		prev = binary.LittleEndian.Uint32(r.data)
	}
	if recordCRC(prev, r.typ, r.data) != r.crc {
		return record{}, errChecksum
	}
	return r, nil
}

// tornTail decides whether the bad record at off in a last segment is followed by nothing
// valid, as a torn final write is (false means damage in the middle of the log). It is so
// when the rest of the file is zeros or when no valid record can be found after it. A
// record that seems to run past the end of the file is searched too: its length field may
// be the damaged part. Whether the bad record itself looks torn is tornRecord's call.
func tornTail(buf []byte, off int64) bool {
	if allZero(buf[off:]) {
		return true
	}
	// Only the bytes up to the last non-zero one can hold records: the rest of a
	// preallocated segment is zeros.
	buf = buf[:dataLen(buf)]
	budget := int64(maxScanCRCBytes)
	// If only the payload was hit, the header still locates the next record, whose CRC
	// chains from the damaged record's stored CRC.
	if r, err := parseHeader(buf, off); err == nil {
		if validAfter(buf, r, &budget) {
			return false
		}
	}
	// Otherwise look for any pair of consecutive records that chain correctly: a random
	// match is a 2^-32 event, so finding one means real records follow the damage.
	for p := off + 1; p+2*headerSize <= int64(len(buf)); p++ {
		r, err := parseHeader(buf, p)
		if err != nil {
			continue
		}
		if validAfter(buf, r, &budget) {
			return false
		}
		if budget <= 0 {
			// Too costly to decide; treat as corruption rather than drop data.
			return false
		}
	}
	return true
}

// sectorSize is the unit a disk writes whole or not at all. A write cut short by a crash
// loses whole sectors, which in a preallocated segment read back as zeros.
const sectorSize = 512

// tornRecord reports whether the bad record at off looks like what an interrupted write
// leaves: cut short by the end of the file, or ending in zeros that start at a sector
// boundary or at the record itself (its first sector never written). Anything else is a
// complete record whose bytes are wrong, i.e. corruption: dropping it could drop a synced,
// acknowledged write. A record whose length field had one bit flipped, taking its end into
// the zeros or past the end of the file, is caught too: some single-bit repair of the
// length verifies against the stored checksum, chained from prev.
//
// A complete record whose own last bytes are zeros across a sector boundary (a snapshot
// mark ends in the zero high bytes of its term) cannot be told from a torn one; it is
// taken as torn, as etcd does.
func tornRecord(buf []byte, off int64, prev uint32) bool {
	if int64(len(buf))-off < headerSize {
		return true // the file ends inside the header
	}
	h := buf[off : off+headerSize]
	n := int64(binary.LittleEndian.Uint32(h[5:9]))
	if n > maxRecordBytes {
		// Lost sectors can only zero the length's high bytes, never raise it.
		return false
	}
	end := off + headerSize + n
	if end <= int64(len(buf)) {
		z := off + int64(dataLen(buf[off:end])) // where the record's trailing zeros start
		if z > off && roundUpSector(z) >= end {
			return false
		}
	}
	return !lengthBitFlipped(buf, off, prev)
}

// lengthBitFlipped reports whether clearing one set bit of the length field of the record
// at off makes it verify. Only shorter lengths are tried: a flip that shortened a record
// leaves its last bytes non-zero, so tornRecord already calls it complete. The work is at
// most 27 checksums (lengths are at most 2^26), each over no more than the record.
func lengthBitFlipped(buf []byte, off int64, prev uint32) bool {
	h := buf[off : off+headerSize]
	t, stored := recordType(h[0]), binary.LittleEndian.Uint32(h[1:5])
	n := binary.LittleEndian.Uint32(h[5:9])
	for bit := uint32(1); bit != 0 && bit <= n; bit <<= 1 {
		if n&bit == 0 {
			continue
		}
		end := off + headerSize + int64(n&^bit)
		if end > int64(len(buf)) {
			continue
		}
		if recordCRC(prev, t, buf[off+headerSize:end]) == stored {
			return true
		}
	}
	return false
}

func roundUpSector(off int64) int64 {
	return (off + sectorSize - 1) / sectorSize * sectorSize
}

// validAfter reports whether the record following r verifies with r's stored CRC as its
// chain input, spending CRC work from budget.
func validAfter(buf []byte, r record, budget *int64) bool {
	next, err := parseHeader(buf, r.end)
	if err != nil {
		return false
	}
	*budget -= int64(len(next.data)) + headerSize
	if *budget < 0 {
		return false
	}
	_, err = readRecord(buf, r.end, r.crc)
	return err == nil
}

// corruptError wraps ErrCorrupt with the file and offset of the bad record.
func corruptError(path string, off int64, cause error) error {
	return fmt.Errorf("%w: %s at offset %d: %v", ErrCorrupt, path, off, cause)
}

// zeroPage is compared against in allZero.
var zeroPage [4096]byte

// allZero reports whether b holds only zero bytes. It compares a page at a time: the
// preallocated rest of a segment can be tens of megabytes.
func allZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroPage))
		if !bytes.Equal(b[:n], zeroPage[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// dataLen is the length of b without its trailing zero bytes.
func dataLen(b []byte) int {
	end := len(b)
	for end > 0 {
		n := min(end, len(zeroPage))
		if !bytes.Equal(b[end-n:end], zeroPage[:n]) {
			break
		}
		end -= n
	}
	for end > 0 && b[end-1] == 0 {
		end--
	}
	return end
}
