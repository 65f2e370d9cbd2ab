//go:build tools

// Package tools pins the reference etcd server and etcdctl used by the test
// suite and the benchmarks. They are built by build.sh (go install refuses
// modules that carry replace directives, so they are built from this module).
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
