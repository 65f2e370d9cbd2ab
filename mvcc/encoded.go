package mvcc

// RangeEncoded is Range without decoding: it calls f, in key order, with the stored
// encoding of every KV Range would return (an mvccpb.KeyValue as written, see
// CanonicalKV), and returns the result without KVs. val is bbolt's memory (or the
// write buffer's) and valid only during the call: f copies what it keeps. A read over
// much of the db drops the pages it read from the resident set as it goes (every
// rangeDropBytes), so the member does not end up holding the db's pages on top of what
// f keeps. f's error stops the read and is returned.
func (t *ReadTxn) RangeEncoded(key, end []byte, o RangeOptions, f func(val []byte) error) (*RangeResult, error) {
	return t.rangeStored(key, end, o, func(int) {}, func(_ revision, val []byte) error { return f(val) })
}

// rangeDropBytes is how much of the map a range read reads between drops of what it
// read: a page read again (a key read twice) faults back in from the page cache.
const rangeDropBytes = 8 << 20

// CanonicalKV reports whether b, a stored KeyValue, is exactly what MarshalVT writes
// for the KeyValue it decodes to: fields in ascending order, each at most once, none
// at its zero value, varints minimal and no unknown fields. Cairn and etcd store KVs
// that way; a KV that is not is re-encoded by whoever serves it.
func CanonicalKV(b []byte) bool {
	last := uint64(0)
	for len(b) > 0 {
		tag, n := uvarint(b)
		if n <= 0 {
			return false
		}
		b = b[n:]
		field, wire := tag>>3, tag&7
		if field <= last || field > 6 {
			return false
		}
		last = field
		switch field {
		case 1, 5: // key, value: length-delimited, not empty
			if wire != 2 {
				return false
			}
			l, n := uvarint(b)
			if n <= 0 || l == 0 || l > uint64(len(b)-n) {
				return false
			}
			b = b[n+int(l):]
		default: // revisions, version, lease: non-zero varints
			if wire != 0 {
				return false
			}
			x, n := uvarint(b)
			if n <= 0 || x == 0 {
				return false
			}
			b = b[n:]
		}
	}
	return true
}

// uvarint decodes a minimally encoded varint (n <= 0: malformed or not minimal).
func uvarint(b []byte) (x uint64, n int) {
	for i := 0; i < len(b) && i < 10; i++ {
		c := b[i]
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if c == 0 && i > 0 {
				return 0, -1 // a trailing zero byte: not minimal
			}
			return x, i + 1
		}
	}
	return 0, -1
}
