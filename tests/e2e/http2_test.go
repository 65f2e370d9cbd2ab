package e2e

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
)

// http2Do sends a request with an HTTP/2-only client (no HTTP/1.1 offered in ALPN, as
// `curl --http2-prior-knowledge`; h2c with prior knowledge for http://) and returns the
// protocol, status, content type and body.
func http2Do(t *testing.T, method, url, body string, cfg *tls.Config) (proto string, code int, ctype, respBody string) {
	t.Helper()
	var p http.Protocols
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, Protocols: &p}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s over HTTP/2: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s over HTTP/2: read body: %v", method, url, err)
	}
	return resp.Proto, resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// TestHTTP2ClientPort: an HTTP/2-only client (Go's, offering only h2) gets the HTTP
// endpoints on a TLS client port that serves gRPC and HTTP, from Cairn as from etcd:
// /health, /version, /metrics and the gateway (a put, then a range, as JSON over
// HTTP/2), with equal status, content type and (for /health and the range's kvs)
// body; gRPC keeps working on the same port. On a plaintext port both answer an HTTP/2
// (h2c prior knowledge) request that is not gRPC with gRPC's 415.
func TestHTTP2ClientPort(t *testing.T) {
	ca := framework.NewCA(t, "ca")
	srv := ca.ServerCert(t, "server", "server")
	client := ca.Issue(t, "client", framework.CertOptions{CN: "client"})
	tp := framework.StartPair(t, framework.Options{ClientTLS: &framework.TLSOptions{CA: ca, Server: srv, ClientCertAuth: true, Client: &client}})
	cfg := framework.ClientTLS(t, ca, &client)
	type answer struct {
		proto  string
		code   int
		ctype  string
		health string
	}
	var got [2][]answer
	for i, m := range tp.Members() {
		for _, path := range []string{"/health", "/version", "/metrics"} {
			proto, code, ctype, body := http2Do(t, http.MethodGet, m.ClientURL+path, "", cfg)
			a := answer{proto: proto, code: code, ctype: ctype}
			if path == "/health" {
				a.health = body
			}
			got[i] = append(got[i], a)
		}
		// The gateway: "foo" = "bar" put, then read back.
		proto, code, ctype, _ := http2Do(t, http.MethodPost, m.ClientURL+"/v3/kv/put", `{"key":"Zm9v","value":"YmFy"}`, cfg)
		got[i] = append(got[i], answer{proto: proto, code: code, ctype: ctype})
		proto, code, ctype, body := http2Do(t, http.MethodPost, m.ClientURL+"/v3/kv/range", `{"key":"Zm9v"}`, cfg)
		if !strings.Contains(body, `"kvs":[{"key":"Zm9v"`) || !strings.Contains(body, `"value":"YmFy"`) {
			t.Errorf("%s: range over HTTP/2: %s", pairSide[i], body)
		}
		got[i] = append(got[i], answer{proto: proto, code: code, ctype: ctype})
		// gRPC on the same port.
		if r := mustGet(t, m.Client(), "foo"); len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "bar" {
			t.Errorf("%s: gRPC get after the gateway put: %v", pairSide[i], r.Kvs)
		}
	}
	for j := range got[1] {
		t.Logf("etcd: %+v", got[1][j])
		if got[0][j] != got[1][j] {
			t.Errorf("answer %d: %s %+v, etcd %+v", j, pairSide[0], got[0][j], got[1][j])
		}
	}
	if got[1][0].code != 200 || got[1][0].proto != "HTTP/2.0" {
		t.Errorf("etcd's /health over HTTP/2: %+v", got[1][0])
	}

	pp := framework.StartPair(t)
	for i, m := range pp.Members() {
		proto, code, ctype, _ := http2Do(t, http.MethodGet, m.ClientURL+"/health", "", nil)
		if proto != "HTTP/2.0" || code != http.StatusUnsupportedMediaType || ctype != "application/grpc" {
			t.Errorf("%s: plaintext HTTP/2 /health = %s %d %q, want gRPC's 415", pairSide[i], proto, code, ctype)
		}
	}
}
