package mvcc

import "encoding/binary"

// revision identifies one change: main is the store revision of the write transaction,
// sub is the change's position inside that transaction.
type revision struct {
	main int64
	sub  int64
}

// Length of a bucket key for a revision: 8-byte main, '_', 8-byte sub; a tombstone adds 't'.
const (
	revBytesLen       = 8 + 1 + 8
	markedRevBytesLen = revBytesLen + 1
	markTombstone     = 't'
)

// bytes encodes r as a "key" bucket key, with the tombstone mark if tomb.
func (r revision) bytes(tomb bool) []byte {
	n := revBytesLen
	if tomb {
		n = markedRevBytesLen
	}
	b := make([]byte, n)
	binary.BigEndian.PutUint64(b[0:8], uint64(r.main))
	b[8] = '_'
	binary.BigEndian.PutUint64(b[9:17], uint64(r.sub))
	if tomb {
		b[17] = markTombstone
	}
	return b
}

// bytesToRev decodes a "key" bucket key (with or without the tombstone mark).
func bytesToRev(b []byte) revision {
	return revision{
		main: int64(binary.BigEndian.Uint64(b[0:8])),
		sub:  int64(binary.BigEndian.Uint64(b[9:17])),
	}
}

// isTombstone reports whether a "key" bucket key carries the tombstone mark.
func isTombstone(b []byte) bool {
	return len(b) == markedRevBytesLen && b[markedRevBytesLen-1] == markTombstone
}

func uint64Bytes(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}
