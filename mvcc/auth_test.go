package mvcc

import (
	"errors"
	"testing"
)

// The auth buckets keep what an Update wrote, across a reopen, and nothing of a failed
// Update.
func TestAuthBucketsPersistAndRollBack(t *testing.T) {
	p := dbPath(t)
	s := openStore(t, p, Config{})
	update(t, s, 5, 2, func(tx *WriteTxn) {
		tx.PutAuthUser("root", []byte("u-root"))
		tx.PutAuthUser("bob", []byte("u-bob"))
		tx.PutAuthRole("r1", []byte("r-r1"))
		tx.PutAuthRevision(7)
		tx.PutAuthEnabled(true)
	})
	boom := errors.New("boom")
	if err := s.Update(6, 2, func(tx *WriteTxn) error {
		tx.DeleteAuthUser("bob")
		tx.PutAuthRole("r2", []byte("r-r2"))
		tx.PutAuthRevision(8)
		tx.PutAuthEnabled(false)
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("failed update = %v, want %v", err, boom)
	}
	update(t, s, 7, 2, func(tx *WriteTxn) { tx.DeleteAuthRole("r1") })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, p, Config{})
	defer s.Close()
	d, err := s.Auth()
	if err != nil {
		t.Fatal(err)
	}
	if !d.Enabled || d.Revision != 7 || len(d.Users) != 2 || string(d.Users["bob"]) != "u-bob" ||
		string(d.Users["root"]) != "u-root" || len(d.Roles) != 0 {
		t.Fatalf("auth after reopen = %+v", d)
	}
}

// etcd's encodings: authEnabled is one byte, authRevision 8 bytes big-endian.
func TestAuthKeyEncoding(t *testing.T) {
	s, _ := newStore(t)
	update(t, s, 1, 1, func(tx *WriteTxn) {
		tx.PutAuthEnabled(true)
		tx.PutAuthRevision(0x0102)
	})
	s.wmu.Lock()
	ab := s.b.tx.Bucket(bucketAuth)
	en, rev := string(ab.Get([]byte("authEnabled"))), string(ab.Get([]byte("authRevision")))
	s.wmu.Unlock()
	if en != "\x01" || rev != "\x00\x00\x00\x00\x00\x00\x01\x02" {
		t.Fatalf("authEnabled = %q, authRevision = %q", en, rev)
	}
}
