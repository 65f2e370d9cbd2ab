// Package framework starts Cairn (or, as the reference, etcd) server processes
// for the black-box test suites and offers helpers to talk to them.
//
// The binaries come from the environment (the Makefile sets all three):
//
//	CAIRN_BIN    the cairn server binary
//	ETCD_BIN     the reference etcd server binary (tests/tools/build.sh)
//	ETCDCTL_BIN  the reference etcdctl binary
//	ETCDUTL_BIN  the reference etcdutl binary (snapshot status / restore)
//
// CAIRN_TEST_AGAINST=etcd runs every test that does not pin a binary against
// the reference etcd instead of Cairn, to validate the suite's expectations.
// CAIRN_SOAK=1 raises iteration counts (see Soak).
package framework

import (
	"os"
	"strconv"
	"testing"
)

// Environment variable names.
const (
	EnvCairnBin     = "CAIRN_BIN"
	EnvEtcdBin      = "ETCD_BIN"
	EnvEtcdctlBin   = "ETCDCTL_BIN"
	EnvEtcdutlBin   = "ETCDUTL_BIN"
	EnvCairnctlBin  = "CAIRNCTL_BIN"
	EnvTestAgainst  = "CAIRN_TEST_AGAINST"
	EnvSoak         = "CAIRN_SOAK"
	EnvSeed         = "CAIRN_TEST_SEED"
	againstEtcdName = "etcd"
)

// AgainstEtcd reports whether the suite is being validated against the
// reference etcd (CAIRN_TEST_AGAINST=etcd).
func AgainstEtcd() bool { return os.Getenv(EnvTestAgainst) == againstEtcdName }

// Soak reports whether long-running (soak) iteration counts are requested.
func Soak() bool {
	v := os.Getenv(EnvSoak)
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	return err == nil && b
}

// Pick returns soak when CAIRN_SOAK is set, normal otherwise.
func Pick(normal, soak int) int {
	if Soak() {
		return soak
	}
	return normal
}

func binFromEnv(t testing.TB, name string) string {
	t.Helper()
	p := os.Getenv(name)
	if p == "" && name == EnvCairnBin {
		t.Fatalf("$%s is not set: run the suite with `make e2e` (which builds bin/ and sets it), "+
			"export %s=/abs/path/to/cairn, or validate the suite against the reference etcd with %s=etcd "+
			"(then only $%s and $%s are needed)", name, name, EnvTestAgainst, EnvEtcdBin, EnvEtcdctlBin)
	}
	if p == "" {
		t.Fatalf("$%s is not set: run the suite with `make test` (which builds bin/ and sets it), "+
			"or export %s=/abs/path/to/binary", name, name)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("$%s=%q: %v (run `make build tools`)", name, p, err)
	}
	return p
}

// CairnBin returns $CAIRN_BIN, failing the test if it is unset or missing.
func CairnBin(t testing.TB) string { t.Helper(); return binFromEnv(t, EnvCairnBin) }

// EtcdBin returns $ETCD_BIN, failing the test if it is unset or missing.
func EtcdBin(t testing.TB) string { t.Helper(); return binFromEnv(t, EnvEtcdBin) }

// EtcdctlBin returns $ETCDCTL_BIN, failing the test if it is unset or missing.
func EtcdctlBin(t testing.TB) string { t.Helper(); return binFromEnv(t, EnvEtcdctlBin) }

// EtcdutlBin returns $ETCDUTL_BIN, failing the test if it is unset or missing.
func EtcdutlBin(t testing.TB) string { t.Helper(); return binFromEnv(t, EnvEtcdutlBin) }

// CairnctlBin is the cairnctl binary (make e2e sets CAIRNCTL_BIN).
func CairnctlBin(t testing.TB) string { t.Helper(); return binFromEnv(t, EnvCairnctlBin) }

// ServerBin returns the binary the suite is held to: $CAIRN_BIN, or $ETCD_BIN
// when CAIRN_TEST_AGAINST=etcd.
func ServerBin(t testing.TB) string {
	t.Helper()
	if AgainstEtcd() {
		return EtcdBin(t)
	}
	return CairnBin(t)
}
