package mvcc

import (
	"unsafe"

	bolt "go.etcd.io/bbolt"
)

// scanDropper drops from the resident set, every scanDropBytes read, the part of the
// memory map a scan of the "key" bucket in revision order read (values, and the pages
// between them): the index rebuild at Open reads every value once, and keeping them
// all mapped would make the member's resident set as large as the db.
type scanDropper struct {
	mapStart, mapEnd uintptr
	lo, hi, read     uintptr
}

const scanDropBytes = 64 << 20

// newScanDropper is for a scan through tx, which must stay open until the last flush.
func (b *backend) newScanDropper(tx *bolt.Tx) *scanDropper {
	d := &scanDropper{mapStart: b.db.Info().Data}
	d.mapEnd = d.mapStart + uintptr(tx.Size())
	return d
}

// note records that the scan read val.
func (d *scanDropper) note(val []byte) {
	if len(val) == 0 {
		return
	}
	s := uintptr(unsafe.Pointer(&val[0]))
	e := s + uintptr(len(val))
	if s < d.mapStart || e > d.mapEnd {
		return // not in the map (a page the transaction changed)
	}
	if d.read == 0 {
		d.lo, d.hi = s, e
	}
	d.lo, d.hi = min(d.lo, s), max(d.hi, e)
	if d.read += e - s; d.read >= scanDropBytes {
		d.flush()
	}
}

func (d *scanDropper) flush() {
	if d.read > 0 {
		dropResident(d.lo, d.hi-d.lo)
	}
	d.read = 0
}
