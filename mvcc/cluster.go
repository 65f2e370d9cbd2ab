package mvcc

import (
	"bytes"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// The "cluster" bucket holds the cluster version ("clusterVersion", e.g. "3.6.0") and the
// downgrade job ("downgrade", JSON), as etcd lays them out. The storage version is
// "meta"'s "storageVersion": etcd 3.5's schema records none, so a db migrated to 3.5
// (during a downgrade) has no such key.
var (
	clusterVersionKey   = []byte("clusterVersion")
	clusterDowngradeKey = []byte("downgrade")
)

// StorageVersion35 is the storage version of a db in etcd 3.5's schema (which records
// none).
const StorageVersion35 = "3.5.0"

// is35 tells whether a cluster version is 3.5.x, whose storage schema is 3.5's.
func is35(clusterVersion []byte) bool { return strings.HasPrefix(string(clusterVersion), "3.5.") }

// schemaComplete tells whether a db's "meta" is what its cluster version asks for: the
// storage version recorded, unless the cluster version is 3.5 (a downgrade, or a db of
// etcd 3.5), whose schema records none.
func schemaComplete(tx *bolt.Tx) bool {
	if tx.Bucket(bucketMeta).Get(metaStorageVersion) != nil {
		return true
	}
	return is35(tx.Bucket(bucketCluster).Get(clusterVersionKey))
}

// ClusterVersion returns the "cluster" bucket's cluster version, "" when it has none,
// including changes not committed yet.
func (s *Store) ClusterVersion() (string, error) {
	v, err := s.bucketValue(bucketCluster, clusterVersionKey)
	return string(v), err
}

// Downgrade returns the "cluster" bucket's downgrade job (etcd's JSON), nil when it has
// none.
func (s *Store) Downgrade() ([]byte, error) { return s.bucketValue(bucketCluster, clusterDowngradeKey) }

// StorageVersion returns "meta"'s storage version, "" when the db records none (etcd
// 3.5's schema).
func (s *Store) StorageVersion() (string, error) {
	v, err := s.bucketValue(bucketMeta, metaStorageVersion)
	return string(v), err
}

func (s *Store) bucketValue(bucket, key []byte) ([]byte, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("mvcc: read %s/%s: store is closed", bucket, key)
	}
	return bytes.Clone(s.b.tx.Bucket(bucket).Get(key)), nil
}

// PutClusterVersion records the cluster version.
func (t *WriteTxn) PutClusterVersion(v string) {
	t.putBucket(bucketCluster, clusterVersionKey, []byte(v))
}

// PutDowngrade records the downgrade job (etcd's JSON).
func (t *WriteTxn) PutDowngrade(raw []byte) {
	t.putBucket(bucketCluster, clusterDowngradeKey, bytes.Clone(raw))
}

// SetStorageVersion migrates the db's schema: StorageVersion records it, StorageVersion35
// removes the record, as etcd's 3.5 schema has none.
func (t *WriteTxn) SetStorageVersion(v string) {
	if v == StorageVersion35 {
		t.deleteBucket(bucketMeta, metaStorageVersion)
		return
	}
	t.putBucket(bucketMeta, metaStorageVersion, []byte(v))
}

// StorageVersion is the storage version the view's db records, "" for none (etcd 3.5's
// schema), as etcd's Maintenance.Snapshot reports it.
func (sn *Snapshot) StorageVersion() string {
	return string(sn.tx.Bucket(bucketMeta).Get(metaStorageVersion))
}
