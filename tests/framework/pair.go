package framework

import (
	"fmt"
	"io"
	"testing"
	"time"
)

// Pair is a Cairn member and a reference etcd member started with the same
// options, for differential tests. Under CAIRN_TEST_AGAINST=etcd the
// "Cairn" side is a second etcd, which proves the differential script is
// deterministic on the reference.
type Pair struct {
	Cairn *Member // the system under test ($CAIRN_BIN, or $ETCD_BIN under CAIRN_TEST_AGAINST=etcd)
	Etcd  *Member // the reference ($ETCD_BIN)
}

// StartPair starts both members (same name, same extra flags) and waits
// until both are ready.
func StartPair(t testing.TB, opts ...Options) *Pair {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	co, eo := o, o
	co.Binary, eo.Binary = BinaryDefault, BinaryEtcd
	return &Pair{Cairn: StartMember(t, co), Etcd: StartMember(t, eo)}
}

// Members returns the pair as a slice (Cairn first).
func (p *Pair) Members() []*Member { return []*Member{p.Cairn, p.Etcd} }

// CairnOnly skips the test when the suite runs against the reference etcd:
// the checks that follow are Cairn-specific (documented at the call site)
// and etcd is known to behave differently.
func CairnOnly(t testing.TB, why string) {
	t.Helper()
	if AgainstEtcd() {
		t.Skipf("Cairn-only check (%s); CAIRN_TEST_AGAINST=etcd", why)
	}
}

// HTTPGet fetches path on the member's client URL and returns status code
// and body.
func (m *Member) HTTPGet(path string) (int, string, error) {
	hc := m.httpClient(10 * time.Second)
	resp, err := hc.Get(m.ClientURL + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return resp.StatusCode, string(b), fmt.Errorf("read body of %s: %w", path, err)
	}
	return resp.StatusCode, string(b), nil
}
