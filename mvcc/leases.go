package mvcc

import (
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// LeaseRecord is one granted lease as kept in the "lease" bucket: etcd's leasepb.Lease
// (ID = 1, TTL = 2, RemainingTTL = 3), keyed by the 8-byte big-endian id, so etcd's
// tools read Cairn's db and the other way round.
type LeaseRecord struct {
	ID           int64
	TTL          int64
	RemainingTTL int64
}

func leaseKey(id int64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, uint64(id))
	return k
}

func (r LeaseRecord) marshal() []byte {
	var b []byte
	for _, f := range []struct {
		num protowire.Number
		v   int64
	}{{1, r.ID}, {2, r.TTL}, {3, r.RemainingTTL}} {
		if f.v != 0 {
			b = protowire.AppendTag(b, f.num, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(f.v))
		}
	}
	return b
}

func unmarshalLeaseRecord(b []byte) (LeaseRecord, error) {
	var r LeaseRecord
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return r, protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.VarintType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return r, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return r, protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case 1:
			r.ID = int64(v)
		case 2:
			r.TTL = int64(v)
		case 3:
			r.RemainingTTL = int64(v)
		}
	}
	return r, nil
}

// Leases returns every lease record, including changes not committed yet.
func (s *Store) Leases() ([]LeaseRecord, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("mvcc: leases: store is closed")
	}
	var out []LeaseRecord
	err := s.b.tx.Bucket(bucketLease).ForEach(func(k, v []byte) error {
		r, err := unmarshalLeaseRecord(v)
		if err != nil {
			return fmt.Errorf("mvcc: malformed lease %x: %w", k, err)
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// PutLease stores a lease record (a grant's, or a checkpoint's remaining TTL).
func (t *WriteTxn) PutLease(r LeaseRecord) {
	t.putBucket(bucketLease, leaseKey(r.ID), r.marshal())
}

// DeleteLease removes a lease record in the same txn as its keys' deletion, so a crash
// never leaves the keys gone and the lease back.
func (t *WriteTxn) DeleteLease(id int64) {
	t.deleteBucket(bucketLease, leaseKey(id))
}
