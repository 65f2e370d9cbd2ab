package mvcc

import (
	"testing"
)

func TestLeaseRecordsPersist(t *testing.T) {
	p := dbPath(t)
	s := openStore(t, p, Config{})
	update(t, s, 5, 2, func(tx *WriteTxn) { tx.PutLease(LeaseRecord{ID: 7000, TTL: 3600}) })
	update(t, s, 6, 2, func(tx *WriteTxn) { tx.PutLease(LeaseRecord{ID: 1 << 62, TTL: 10, RemainingTTL: 4}) })
	update(t, s, 7, 2, func(tx *WriteTxn) { tx.PutLease(LeaseRecord{ID: 9, TTL: 5}) })
	tw := s.Write()
	tw.DeleteLease(9)
	tw.End(8, 2)
	update(t, s, 9, 2, func(tx *WriteTxn) {
		tx.PutLease(LeaseRecord{ID: 7000, TTL: 3600, RemainingTTL: 100})
		tx.PutLease(LeaseRecord{ID: 1 << 62, TTL: 10})
	})
	update(t, s, 10, 3, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, p, Config{})
	defer s.Close()
	got, err := s.Leases()
	if err != nil {
		t.Fatal(err)
	}
	want := []LeaseRecord{{ID: 7000, TTL: 3600, RemainingTTL: 100}, {ID: 1 << 62, TTL: 10}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("leases after reopen = %+v, want %+v", got, want)
	}
	if idx, term := s.ConsistentIndex(); idx != 10 || term != 3 {
		t.Fatalf("consistent index = %d/%d, want 10/3", idx, term)
	}
}

// The record is etcd's leasepb.Lease encoding: fields 1..3 as varints.
func TestLeaseRecordEncoding(t *testing.T) {
	b := LeaseRecord{ID: 1, TTL: 2, RemainingTTL: 3}.marshal()
	if want := []byte{0x08, 1, 0x10, 2, 0x18, 3}; string(b) != string(want) {
		t.Fatalf("encoding = %x, want %x", b, want)
	}
	r, err := unmarshalLeaseRecord(b)
	if err != nil || r != (LeaseRecord{1, 2, 3}) {
		t.Fatalf("decode = %+v, %v", r, err)
	}
	if _, err := unmarshalLeaseRecord([]byte{0x08}); err == nil {
		t.Fatal("truncated record decoded without error")
	}
}
