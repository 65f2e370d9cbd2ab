package server

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/cairn-kv/cairn/mvcc"
)

// Versions this member reports. Clients (Kubernetes among them) gate features on the
// etcd version in Maintenance.Status, so Cairn reports the etcd release whose API it
// matches.
const (
	EtcdVersion = "3.6.16"
	// ReleaseClusterVersion is the cluster version of members of this release that are
	// not downgrading. The cluster version itself is state (versionState).
	ReleaseClusterVersion = "3.6.0"
	// StorageVersion is the storage schema this release writes; a member whose cluster
	// version is 3.5 (a downgrade) keeps its db in 3.5's (mvcc.StorageVersion35).
	StorageVersion = mvcc.StorageVersion
	CairnVersion   = "0.1.0"
)

// downgradeJob is the downgrade job as etcd records it in the "cluster" bucket's
// "downgrade" key: {"target-version":"3.5.0","enabled":true} while one runs,
// {"target-version":"","enabled":false} once cancelled, nothing before the first.
type downgradeJob struct {
	TargetVersion string `json:"target-version"`
	Enabled       bool   `json:"enabled"`
}

// versionState is the cluster version and the downgrade job as applied, and this
// member's storage version (its db's schema, which follows the cluster version). The
// apply loop writes them, together with the store; anything may read them.
type versionState struct {
	mu        sync.RWMutex
	cluster   string // "3.6.0", "3.5.0"
	storage   string // "3.6.0", "3.5.0"
	downgrade downgradeJob
	// recorded says the store has the cluster version (a new cluster's has none until
	// the leader records it).
	recorded bool
}

func (v *versionState) isRecorded() bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.recorded
}

func (v *versionState) get() (cluster, storage string, job downgradeJob) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.cluster, v.storage, v.downgrade
}

// setCluster sets the versions; recorded says the store has the cluster version.
func (v *versionState) setCluster(cluster, storage string, recorded bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.cluster, v.storage, v.recorded = cluster, storage, recorded
}

func (v *versionState) setDowngrade(job downgradeJob) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.downgrade = job
}

// storageVersionFor is the storage schema a cluster version asks for: 3.5's for 3.5.x,
// this release's otherwise.
func storageVersionFor(clusterVersion string) string {
	if major, minor, err := parseSemver(clusterVersion); err == nil && major == 3 && minor == 5 {
		return mvcc.StorageVersion35
	}
	return StorageVersion
}

// loadVersions replaces the in-memory versions with the store's (at boot, after a
// snapshot): a db without a cluster version is one of this release, one without a
// storage version is in 3.5's schema.
func (s *Server) loadVersions() error {
	cluster, err := s.store.ClusterVersion()
	if err != nil {
		return fmt.Errorf("server: load cluster version: %w", err)
	}
	recorded := cluster != ""
	if !recorded {
		cluster = ReleaseClusterVersion
	}
	storage, err := s.store.StorageVersion()
	if err != nil {
		return fmt.Errorf("server: load storage version: %w", err)
	}
	if storage == "" {
		storage = mvcc.StorageVersion35
	}
	var job downgradeJob
	raw, err := s.store.Downgrade()
	if err != nil {
		return fmt.Errorf("server: load downgrade job: %w", err)
	}
	if raw != nil {
		if err := json.Unmarshal(raw, &job); err != nil {
			return fmt.Errorf("server: decode downgrade job %q: %w", raw, err)
		}
	}
	s.versions.setCluster(cluster, storage, recorded)
	s.versions.setDowngrade(job)
	return nil
}

// ClusterVersion is the cluster-wide version etcd clients see ("3.6.0"; the downgrade
// target once a downgrade job moved it).
func (s *Server) ClusterVersion() string {
	cluster, _, _ := s.versions.get()
	return cluster
}

// StorageVersion is this member's storage schema version, as Status and /version report
// it ("3.5.0" once a downgrade migrated the db).
func (s *Server) StorageVersion() string {
	_, storage, _ := s.versions.get()
	return storage
}
