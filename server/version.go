package server

import "github.com/cairn-kv/cairn/mvcc"

// Versions this member reports. Clients (Kubernetes among them) gate features on the
// etcd version in Maintenance.Status, so Cairn reports the etcd release whose API it
// matches.
const (
	EtcdVersion    = "3.6.16"
	ClusterVersion = "3.6.0"
	StorageVersion = mvcc.StorageVersion
	CairnVersion   = "0.1.0"
)
