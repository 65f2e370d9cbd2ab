package mvcc

import (
	"bytes"
	"hash/crc32"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// dbFileHash is etcd's backend hash computed from a closed db file: every bucket in
// order, its name then its keys and values, without meta's term, consistent_index and
// storageVersion.
func dbFileHash(t *testing.T, path string) uint32 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			h.Write(name)
			return b.ForEach(func(k, v []byte) error {
				if bytes.Equal(name, []byte("meta")) {
					switch string(k) {
					case "term", "consistent_index", "storageVersion":
						return nil
					}
				}
				h.Write(k)
				h.Write(v)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return h.Sum32()
}

// TestHashWholeDB: Hash covers every bucket (uncommitted writes included) but not the
// applied index, term or storage version, so members with the same data agree.
func TestHashWholeDB(t *testing.T) {
	a, pa := newStore(t)
	b, pb := newStore(t)
	for _, s := range []*Store{a, b} {
		put(t, s, "k1", "v1")
		put(t, s, "k2", "v2")
	}
	ha, rev, err := a.Hash()
	if err != nil || rev != 3 {
		t.Fatalf("Hash = %d, %d, %v; want revision 3", ha, rev, err)
	}
	// Different applied indexes and terms, same data: same hash.
	if err := b.Update(77, 9, nil); err != nil {
		t.Fatal(err)
	}
	if hb, _, _ := b.Hash(); hb != ha {
		t.Fatalf("same data, other consistent index: %d != %d", hb, ha)
	}
	// Any other bucket counts: a member record changes it.
	if err := b.Update(78, 9, func(tx *WriteTxn) error { tx.PutMember(5, []byte(`{"id":5}`)); return nil }); err != nil {
		t.Fatal(err)
	}
	hb, _, _ := b.Hash()
	if hb == ha {
		t.Fatal("a member record did not change the hash")
	}
	// The same as etcd's backend hash of the file once committed.
	for _, c := range []struct {
		s    *Store
		path string
		want uint32
	}{{a, pa, ha}, {b, pb, hb}} {
		if err := c.s.Close(); err != nil {
			t.Fatal(err)
		}
		if got := dbFileHash(t, c.path); got != c.want {
			t.Fatalf("db file hash %d, Hash said %d", got, c.want)
		}
	}
}
