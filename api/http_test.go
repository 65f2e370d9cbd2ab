package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

func doGet(t *testing.T, h http.Handler, method, path string) (int, string, http.Header) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body), rec.Result().Header
}

func TestHealthEndpoint(t *testing.T) {
	b := newFakeBackend()
	h := NewHTTPHandler(b, prometheus.NewRegistry(), false, nil)

	type want struct {
		code int
		body string
	}
	check := func(name, path string, w want) {
		t.Helper()
		code, body, _ := doGet(t, h, http.MethodGet, path)
		if code != w.code || body != w.body {
			t.Errorf("%s: GET %s = %d %q; want %d %q", name, path, code, body, w.code, w.body)
		}
	}

	check("healthy", "/health", want{200, `{"health":"true","reason":""}`})

	b.leader = 0
	check("no leader", "/health", want{503, `{"health":"false","reason":"RAFT NO LEADER"}` + "\n"})
	check("no leader, serializable", "/health?serializable=true", want{200, `{"health":"true","reason":""}`})
	b.leader = 1

	b.alarms = []*pb.AlarmMember{{MemberID: 42, Alarm: pb.AlarmType_NOSPACE}}
	check("nospace", "/health", want{503, `{"health":"false","reason":"ALARM NOSPACE"}` + "\n"})
	check("nospace excluded", "/health?exclude=NOSPACE", want{200, `{"health":"true","reason":""}`})
	b.alarms = []*pb.AlarmMember{{MemberID: 42, Alarm: pb.AlarmType_CORRUPT}}
	check("corrupt", "/health?exclude=NOSPACE", want{503, `{"health":"false","reason":"ALARM CORRUPT"}` + "\n"})
	b.alarms = nil

	b.rangeErr = errTimeout
	check("range fails", "/health", want{503, `{"health":"false","reason":"RANGE ERROR:etcdserver: request timed out"}` + "\n"})
	b.rangeErr = nil

	if code, _, hdr := doGet(t, h, http.MethodPost, "/health"); code != 405 || hdr.Get("Allow") != "GET" {
		t.Errorf("POST /health = %d Allow=%q; want 405 GET", code, hdr.Get("Allow"))
	}
}

func TestLivezReadyz(t *testing.T) {
	b := newFakeBackend()
	h := NewHTTPHandler(b, prometheus.NewRegistry(), false, nil)

	tests := []struct {
		path string
		code int
		body string
	}{
		{"/livez", 200, "ok\n"},
		{"/readyz", 200, "ok\n"},
		{"/livez?verbose", 200, "[+]serializable_read ok\nok\n"},
		{"/readyz?verbose", 200, "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\nok\n"},
		{"/readyz?verbose&exclude=linearizable_read", 200, "[+]data_corruption ok\n[+]serializable_read ok\n[+]non_learner ok\nok\n"},
		{"/readyz/non_learner?verbose", 200, "[+]non_learner ok\nok\n"},
		{"/livez/serializable_read", 200, "ok\n"},
	}
	for _, tt := range tests {
		code, body, hdr := doGet(t, h, http.MethodGet, tt.path)
		if code != tt.code || body != tt.body {
			t.Errorf("GET %s = %d %q; want %d %q", tt.path, code, body, tt.code, tt.body)
		}
		if ct := hdr.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
			t.Errorf("GET %s Content-Type = %q", tt.path, ct)
		}
	}

	b.learner = true
	b.alarms = []*pb.AlarmMember{{Alarm: pb.AlarmType_CORRUPT}}
	code, body, _ := doGet(t, h, http.MethodGet, "/readyz")
	if code != 503 ||
		!strings.Contains(body, "[-]data_corruption failed: alarm activated: CORRUPT\n") ||
		!strings.Contains(body, "[-]non_learner failed: not supported for learner\n") ||
		!strings.Contains(body, "[+]serializable_read ok\n") {
		t.Errorf("GET /readyz on a corrupt learner = %d %q", code, body)
	}
	// livez has no learner or corruption check
	if code, body, _ := doGet(t, h, http.MethodGet, "/livez"); code != 200 || body != "ok\n" {
		t.Errorf("GET /livez on a corrupt learner = %d %q", code, body)
	}
	b.learner, b.alarms = false, nil

	b.rangeErr = errNoLeader
	code, body, _ = doGet(t, h, http.MethodGet, "/livez")
	if code != 503 || body != "[-]serializable_read failed: etcdserver: no leader\n\n" {
		t.Errorf("GET /livez with failing reads = %d %q", code, body)
	}
}

func TestVersionMetricsPprof(t *testing.T) {
	b := newFakeBackend()
	reg := prometheus.NewRegistry()
	h := NewHTTPHandler(b, reg, false, nil)
	// A second handler on the same registry (the metrics port) must not panic.
	h2 := NewHTTPHandler(b, reg, true, nil)

	code, body, hdr := doGet(t, h, http.MethodGet, "/version")
	if code != 200 || body != `{"etcdserver":"3.6.16","etcdcluster":"3.6.0","storage":"3.6.0"}` {
		t.Errorf("GET /version = %d %q", code, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("/version Content-Type = %q", ct)
	}
	if code, _, _ := doGet(t, h, http.MethodPut, "/version"); code != 405 {
		t.Errorf("PUT /version = %d", code)
	}

	doGet(t, h, http.MethodGet, "/health")
	doGet(t, h2, http.MethodGet, "/health")
	doGet(t, h2, http.MethodGet, "/readyz")
	code, body, _ = doGet(t, h, http.MethodGet, "/metrics")
	if code != 200 || !strings.Contains(body, "etcd_server_health_success 2") ||
		!strings.Contains(body, `etcd_server_healthcheck{name="non_learner",type="readyz"} 1`) {
		t.Errorf("GET /metrics = %d %q", code, body)
	}

	if code, _, _ := doGet(t, h, http.MethodGet, "/debug/pprof/"); code != 404 {
		t.Errorf("pprof served while disabled: %d", code)
	}
	if code, _, _ := doGet(t, h2, http.MethodGet, "/debug/pprof/"); code != 200 {
		t.Errorf("pprof not served while enabled: %d", code)
	}
}
