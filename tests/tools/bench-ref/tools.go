//go:build tools

// Package benchref pins the benchmarks' reference etcd server, the newest etcd release
// (docs/benchmarks.md: "the newest release is the anchor"). build.sh builds it into
// bin/etcd-3.7; the e2e tests keep the etcd 3.6 pinned in ../go.mod (bin/etcd).
package benchref

import (
	_ "go.etcd.io/etcd/server/v3"
)
