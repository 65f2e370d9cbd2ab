package mvcc

import (
	"testing"

	bolt "go.etcd.io/bbolt"
)

// A db migrated to 3.5's schema (cluster version 3.5.x, no storage version in "meta")
// stays so across a reopen, and so does the downgrade job; a db that records neither a
// storage version nor a 3.5 cluster version gets this release's at open.
func TestClusterVersionAndSchemaPersist(t *testing.T) {
	p := dbPath(t)
	s := openStore(t, p, Config{})
	if v, err := s.StorageVersion(); err != nil || v != StorageVersion {
		t.Fatalf("fresh storage version %q, %v", v, err)
	}
	update(t, s, 5, 2, func(tx *WriteTxn) {
		tx.PutDowngrade([]byte(`{"target-version":"3.5.0","enabled":true}`))
		tx.PutClusterVersion("3.5.0")
		tx.SetStorageVersion(StorageVersion35)
	})
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if v := sn.StorageVersion(); v != "" {
		t.Fatalf("snapshot storage version %q, want none", v)
	}
	sn.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, p, Config{})
	c, err1 := s.ClusterVersion()
	v, err2 := s.StorageVersion()
	d, err3 := s.Downgrade()
	if err1 != nil || err2 != nil || err3 != nil || c != "3.5.0" || v != "" || string(d) != `{"target-version":"3.5.0","enabled":true}` {
		t.Fatalf("after reopen: %q %q %q (%v %v %v)", c, v, d, err1, err2, err3)
	}
	update(t, s, 6, 2, func(tx *WriteTxn) {
		tx.PutClusterVersion("3.6.0")
		tx.SetStorageVersion(StorageVersion)
	})
	if v, _ := s.StorageVersion(); v != StorageVersion {
		t.Fatalf("back to %q", v)
	}
	s.Close()

	// A 3.5-schema db without a 3.5 cluster version (e.g. its key removed by hand) is
	// given this release's storage version at open.
	db, err := bolt.Open(p, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketCluster).Delete(clusterVersionKey); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Delete(metaStorageVersion)
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s = openStore(t, p, Config{})
	defer s.Close()
	if v, _ := s.StorageVersion(); v != StorageVersion {
		t.Fatalf("storage version after open %q, want %q", v, StorageVersion)
	}
}
