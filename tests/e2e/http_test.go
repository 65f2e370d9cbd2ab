package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/cairn-kv/cairn/tests/framework"
)

func httpGet(t *testing.T, m *framework.Member, path string) (int, string) {
	t.Helper()
	code, body, err := m.HTTPGet(path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return code, body
}

func TestHTTPEndpoints(t *testing.T) {
	t.Parallel()
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d", framework.FreePort(t))
	m := start(t, "--listen-metrics-urls="+metricsURL)
	mustPut(t, m.Client(), "k", "v")

	// /health: 200 {"health":"true","reason":""}.
	code, body := httpGet(t, m, "/health")
	var h map[string]any
	if err := json.Unmarshal([]byte(body), &h); err != nil || code != 200 || h["health"] != "true" {
		t.Fatalf("/health: %d %q (%v), want 200 {\"health\":\"true\",...}", code, body, err)
	}
	if _, ok := h["reason"]; !ok {
		t.Errorf("/health: no \"reason\" field in %q", body)
	}
	// Serializable health too.
	if code, body := httpGet(t, m, "/health?serializable=true"); code != 200 || !strings.Contains(body, `"health":"true"`) {
		t.Errorf("/health?serializable=true: %d %q", code, body)
	}

	// /version.
	code, body = httpGet(t, m, "/version")
	var v map[string]string
	if err := json.Unmarshal([]byte(body), &v); err != nil || code != 200 {
		t.Fatalf("/version: %d %q (%v)", code, body, err)
	}
	if v["etcdserver"] != "3.6.16" || !strings.HasPrefix(v["etcdcluster"], "3.6") {
		t.Errorf("/version: %q, want etcdserver 3.6.16, etcdcluster 3.6.x", body)
	}

	// /livez and /readyz: 200 "ok".
	for _, p := range []string{"/livez", "/readyz"} {
		code, body := httpGet(t, m, p)
		if code != 200 || strings.TrimSpace(body) != "ok" {
			t.Errorf("%s: %d %q, want 200 \"ok\"", p, code, body)
		}
	}

	// /metrics, on the client URL and on --listen-metrics-urls.
	checkMetrics := func(where, body string) {
		t.Helper()
		var leader, dbSize bool
		for _, l := range strings.Split(body, "\n") {
			if l == "etcd_server_has_leader 1" {
				leader = true
			}
			var n float64
			if _, err := fmt.Sscanf(l, "etcd_mvcc_db_total_size_in_bytes %g", &n); err == nil && n > 0 {
				dbSize = true
			}
		}
		if !leader || !dbSize {
			t.Errorf("%s /metrics: etcd_server_has_leader 1 found=%v, etcd_mvcc_db_total_size_in_bytes > 0 found=%v", where, leader, dbSize)
		}
		if !strings.Contains(body, "# TYPE etcd_server_has_leader gauge") {
			t.Errorf("%s /metrics: no \"# TYPE etcd_server_has_leader gauge\"", where)
		}
	}
	code, body = httpGet(t, m, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	checkMetrics("client URL", body)
	mm := &framework.Member{ClientURL: metricsURL}
	code, body, err := mm.HTTPGet("/metrics")
	if err != nil || code != 200 {
		t.Fatalf("metrics URL /metrics: %d %v", code, err)
	}
	checkMetrics("metrics URL", body)
	if code, body, err := mm.HTTPGet("/health"); err != nil || code != 200 || !strings.Contains(body, `"health":"true"`) {
		t.Errorf("metrics URL /health: %d %q %v", code, body, err)
	}
}
