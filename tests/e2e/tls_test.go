package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/tests/framework"
)

// tlsCtlFlags bound etcdctl's waits when a connection is expected to fail.
var tlsCtlFlags = []string{"--dial-timeout=2s", "--command-timeout=3s"}

// requireRefused asserts that a TLS handshake to addr with cfg is refused.
func requireRefused(t *testing.T, what, addr string, cfg *tls.Config) {
	t.Helper()
	if _, err := framework.TLSHandshake(addr, cfg); err == nil {
		t.Errorf("%s: TLS connection to %s accepted, want it refused", what, addr)
	} else {
		t.Logf("%s: refused as expected: %v", what, err)
	}
}

func requireAccepted(t *testing.T, what, addr string, cfg *tls.Config) tls.ConnectionState {
	t.Helper()
	cs, err := framework.TLSHandshake(addr, cfg)
	if err != nil {
		t.Fatalf("%s: TLS connection to %s refused: %v", what, addr, err)
	}
	return cs
}

func requireHealthy(t *testing.T, what string, hc *http.Client, url string) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("%s: GET %s: %v", what, url, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"health":"true"`) {
		t.Fatalf("%s: GET %s: %d %s", what, url, resp.StatusCode, b)
	}
}

// TestTLSClientPort: a client URL with --client-cert-auth, a CRL, TLS 1.2 only and two
// cipher suites serves etcdctl, clientv3 and HTTPS /health to a client with a good
// certificate, and refuses every other client.
func TestTLSClientPort(t *testing.T) {
	ca := framework.NewCA(t, "ca")
	otherCA := framework.NewCA(t, "other-ca")
	srv := ca.ServerCert(t, "server", "cairn-server")
	client := ca.Issue(t, "client", framework.CertOptions{CN: "client"})
	revoked := ca.Issue(t, "revoked", framework.CertOptions{CN: "revoked"})
	expired := ca.Issue(t, "expired", framework.CertOptions{CN: "expired",
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	foreign := otherCA.Issue(t, "foreign", framework.CertOptions{CN: "client"})
	crl := ca.WriteCRL(t, "client", revoked)
	suites := []string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"}

	m := framework.StartMember(t, framework.Options{
		ClientTLS: &framework.TLSOptions{CA: ca, Server: srv, ClientCertAuth: true, Client: &client},
		Flags:     []string{"--client-crl-file=" + crl, "--tls-max-version=TLS1.2", "--cipher-suites=" + strings.Join(suites, ",")},
	})

	// etcdctl with --cacert --cert --key.
	if _, stderr, err := m.Etcdctl("put", "k", "v1"); err != nil {
		t.Fatalf("etcdctl put: %v %s", err, stderr)
	}
	if out, stderr, err := m.Etcdctl("get", "k", "--print-value-only"); err != nil || strings.TrimSpace(out) != "v1" {
		t.Fatalf("etcdctl get: %q %v %s", out, err, stderr)
	}
	// etcdctl --insecure-skip-tls-verify (still presenting its certificate).
	r := framework.Run(t, 30*time.Second, "", nil, framework.EtcdctlBin(t), "--endpoints="+m.ClientURL,
		"--insecure-skip-tls-verify", "--cert="+client.CertFile, "--key="+client.KeyFile, "get", "k", "--print-value-only")
	if r.Err != nil || strings.TrimSpace(r.Stdout) != "v1" {
		t.Fatalf("etcdctl --insecure-skip-tls-verify get: %q %v %s", r.Stdout, r.Err, r.Stderr)
	}
	// etcdctl without a client certificate is refused.
	r = framework.Run(t, 30*time.Second, "", nil, framework.EtcdctlBin(t), append([]string{"--endpoints=" + m.ClientURL,
		"--cacert=" + ca.CAFile}, append(tlsCtlFlags, "get", "k")...)...)
	if r.Err == nil {
		t.Fatalf("etcdctl without a client certificate succeeded: %q", r.Stdout)
	}

	// clientv3 over TLS.
	cli := m.Client()
	mustPut(t, cli, "k", "v2")
	if got := mustGet(t, cli, "k"); len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "v2" {
		t.Fatalf("clientv3 get: %v", got.Kvs)
	}

	// HTTPS /health with the client certificate, over HTTP/1.1 and with a client that
	// offers HTTP/2 too (as curl does).
	if code, body, err := m.HTTPGet("/health"); err != nil || code != http.StatusOK {
		t.Fatalf("GET /health: %d %s %v", code, body, err)
	}
	h2 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: framework.ClientTLS(t, ca, &client), ForceAttemptHTTP2: true, DisableKeepAlives: true}}
	requireHealthy(t, "client offering h2", h2, m.ClientURL+"/health")

	// What the port negotiates with a good client: TLS 1.2 and one of the suites.
	cs := requireAccepted(t, "good client", m.HostPort(), framework.ClientTLS(t, ca, &client))
	if cs.Version != tls.VersionTLS12 || !slices.Contains(suites, tls.CipherSuiteName(cs.CipherSuite)) {
		t.Fatalf("negotiated %s with %s, want TLS 1.2 with one of %v", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), suites)
	}

	addr := m.HostPort()
	requireRefused(t, "no client certificate", addr, framework.ClientTLS(t, ca, nil))
	requireRefused(t, "client certificate from another CA", addr, framework.ClientTLS(t, ca, &foreign))
	requireRefused(t, "expired client certificate", addr, framework.ClientTLS(t, ca, &expired))
	requireRefused(t, "client certificate revoked by the CRL", addr, framework.ClientTLS(t, ca, &revoked))
	requireRefused(t, "server not signed by the CA the client trusts", addr, framework.ClientTLS(t, otherCA, &client))
	tls13 := framework.ClientTLS(t, ca, &client)
	tls13.MinVersion = tls.VersionTLS13
	requireRefused(t, "TLS 1.3 only client (server at most TLS 1.2)", addr, tls13)
	weak := framework.ClientTLS(t, ca, &client)
	weak.MaxVersion = tls.VersionTLS12
	weak.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}
	requireRefused(t, "cipher suite not in --cipher-suites", addr, weak)

	// A plaintext request to the https port gets no answer.
	if resp, err := (&http.Client{Timeout: 3 * time.Second}).Get("http://" + addr + "/health"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("plaintext GET /health on the https port answered 200: %s", b)
		}
	}
}

// TestTLSCertRotation: the member's certificate and key are replaced on disk while a
// client stays connected; new connections get the new certificate, the connected
// client keeps working (its watch gets later events), no restart.
func TestTLSCertRotation(t *testing.T) {
	ca := framework.NewCA(t, "ca")
	srv := ca.ServerCert(t, "server", "before-rotation")
	client := ca.Issue(t, "client", framework.CertOptions{CN: "client"})
	m := framework.StartMember(t, framework.Options{
		ClientTLS: &framework.TLSOptions{CA: ca, Server: srv, ClientCertAuth: true, Client: &client},
	})
	cli := m.Client()
	mustPut(t, cli, "a", "1")
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wch := cli.Watch(wctx, "a", clientv3.WithCreatedNotify())
	if wr := <-wch; !wr.Created {
		t.Fatalf("watch not created: %+v", wr)
	}

	cs := requireAccepted(t, "before rotation", m.HostPort(), framework.ClientTLS(t, ca, &client))
	if cn := cs.PeerCertificates[0].Subject.CommonName; cn != "before-rotation" {
		t.Fatalf("server certificate CN %q, want before-rotation", cn)
	}
	// The default versions include TLS 1.3, where a missing client certificate is only
	// refused after the client's side of the handshake.
	requireRefused(t, "no client certificate (TLS 1.3)", m.HostPort(), framework.ClientTLS(t, ca, nil))

	rotated := ca.IssueTo(t, srv, framework.CertOptions{CN: "after-rotation", IPs: srv.Cert.IPAddresses, DNSNames: srv.Cert.DNSNames})
	cs = requireAccepted(t, "after rotation", m.HostPort(), framework.ClientTLS(t, ca, &client))
	if got := cs.PeerCertificates[0]; got.Subject.CommonName != "after-rotation" || got.SerialNumber.Cmp(rotated.Cert.SerialNumber) != 0 {
		t.Fatalf("after rotation the server presents CN %q serial %v, want after-rotation serial %v",
			got.Subject.CommonName, got.SerialNumber, rotated.Cert.SerialNumber)
	}
	// A new clientv3 connection verifies the new certificate.
	cli2 := m.NewClient()
	mustPut(t, cli2, "a", "2")
	// The client connected before the rotation still works.
	select {
	case wr := <-wch:
		if len(wr.Events) != 1 || string(wr.Events[0].Kv.Value) != "2" {
			t.Fatalf("watch after rotation: %+v", wr)
		}
	case <-wctx.Done():
		t.Fatal("the watch opened before the rotation got no event")
	}
	if got := mustGet(t, cli, "a"); string(got.Kvs[0].Value) != "2" {
		t.Fatalf("old client get: %v", got.Kvs)
	}
}

// TestTLSClientHTTPURLsAndMixedURLs: https and http client URLs in one list are each
// served as given; --listen-client-http-urls serves HTTP only, and the client URLs then
// serve gRPC only (etcd's split); an https metrics URL uses the client TLS options. A
// --trusted-ca-file without --client-cert-auth still
// requires client certificates, as with etcd.
func TestTLSClientHTTPURLsAndMixedURLs(t *testing.T) {
	ca := framework.NewCA(t, "ca")
	srv := ca.ServerCert(t, "server", "server")
	client := ca.Issue(t, "client", framework.CertOptions{CN: "client"})
	m := framework.NewMember(t, framework.Options{ClientTLS: &framework.TLSOptions{CA: ca, Server: srv, Client: &client}})
	plainURL := fmt.Sprintf("http://127.0.0.1:%d", framework.FreePort(t))
	httpOnlyURL := fmt.Sprintf("https://127.0.0.1:%d", framework.FreePort(t))
	metricsURL := fmt.Sprintf("https://127.0.0.1:%d", framework.FreePort(t))
	m.AddFlags("--listen-client-urls="+m.ClientURL+","+plainURL, "--advertise-client-urls="+m.ClientURL,
		"--listen-client-http-urls="+httpOnlyURL, "--listen-metrics-urls="+metricsURL)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.WaitReady(framework.DefaultReadyTimeout); err != nil {
		t.Fatal(err)
	}

	// gRPC on the https client URL (the framework's client) and on the plaintext one.
	mustPut(t, m.Client(), "k", "v")
	plain, err := clientv3.New(clientv3.Config{Endpoints: []string{plainURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if got := mustGet(t, plain, "k"); len(got.Kvs) != 1 {
		t.Fatalf("get over the plaintext client URL: %v", got.Kvs)
	}

	// HTTP on the https HTTP-only URL.
	// A --trusted-ca-file requires client certificates even without --client-cert-auth,
	// as with etcd.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: framework.ClientTLS(t, ca, &client), DisableKeepAlives: true}}
	requireHealthy(t, "--listen-client-http-urls", hc, httpOnlyURL+"/health")
	// https metrics URLs use the client certificates.
	requireHealthy(t, "https --listen-metrics-urls", hc, metricsURL+"/health")
	// No HTTP on the client URLs any more.
	for _, u := range []string{m.ClientURL, plainURL} {
		resp, err := hc.Get(u + "/health")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Fatalf("GET %s/health answered 200 (%s); want no HTTP on a client URL once --listen-client-http-urls is set", u, b)
			}
		}
	}
	// No gRPC on the HTTP-only URL.
	onHTTP, err := clientv3.New(clientv3.Config{Endpoints: []string{httpOnlyURL}, DialTimeout: 2 * time.Second,
		TLS: framework.ClientTLS(t, ca, &client), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer onHTTP.Close()
	gctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := onHTTP.Get(gctx, "k"); err == nil {
		t.Fatal("gRPC Get on the --listen-client-http-urls URL succeeded")
	}
}

// TestTLSAutoTLS: --auto-tls and --peer-auto-tls generate self-signed certificates in
// <data-dir>/fixtures/{client,peer} for the listen hosts; etcdctl connects with
// --insecure-skip-tls-verify.
func TestTLSAutoTLS(t *testing.T) {
	m := framework.StartMember(t, framework.Options{
		ClientTLS: &framework.TLSOptions{AutoTLS: true},
		PeerTLS:   &framework.TLSOptions{AutoTLS: true},
		Flags:     []string{"--self-signed-cert-validity=2"},
	})
	if _, stderr, err := m.Etcdctl("put", "k", "v"); err != nil {
		t.Fatalf("etcdctl put: %v %s", err, stderr)
	}
	for _, which := range []string{"client", "peer"} {
		c := readCert(t, filepath.Join(m.DataDir, "fixtures", which, "cert.pem"))
		if len(c.IPAddresses) != 1 || !c.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
			t.Errorf("%s cert IPs %v, want [127.0.0.1]", which, c.IPAddresses)
		}
		if years := c.NotAfter.Sub(c.NotBefore).Hours() / 24 / 365; years < 1.99 || years > 2.01 {
			t.Errorf("%s cert valid for %.2f years, want 2 (--self-signed-cert-validity=2)", which, years)
		}
		if _, err := os.Stat(filepath.Join(m.DataDir, "fixtures", which, "key.pem")); err != nil {
			t.Error(err)
		}
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTLSKubeadmShape: a single member launched with the flags kubeadm gives etcd (client
// and peer TLS with client certificate auth, plaintext metrics) serves etcdctl with client
// certificates.
func TestTLSKubeadmShape(t *testing.T) {
	ca := framework.NewCA(t, "etcd-ca")
	srv := ca.ServerCert(t, "server", "control-plane")
	peer := ca.ServerCert(t, "peer", "control-plane")
	client := ca.Issue(t, "healthcheck-client", framework.CertOptions{CN: "kube-etcd-healthcheck-client"})
	metrics := fmt.Sprintf("http://127.0.0.1:%d", framework.FreePort(t))
	m := framework.StartMember(t, framework.Options{
		ClientTLS: &framework.TLSOptions{CA: ca, Server: srv, ClientCertAuth: true, Client: &client},
		PeerTLS:   &framework.TLSOptions{CA: ca, Server: peer, ClientCertAuth: true},
		Flags: []string{"--listen-metrics-urls=" + metrics, "--snapshot-count=10000",
			"--experimental-initial-corrupt-check=true", "--experimental-watch-progress-notify-interval=5s"},
	})
	for _, want := range []string{"--cert-file=", "--key-file=", "--trusted-ca-file=", "--client-cert-auth=true", "--peer-cert-file=",
		"--peer-key-file=", "--peer-trusted-ca-file=", "--peer-client-cert-auth=true", "--listen-client-urls=https://127.0.0.1:",
		"--advertise-client-urls=https://127.0.0.1:"} {
		if !slices.ContainsFunc(m.Args(), func(a string) bool { return strings.HasPrefix(a, want) }) {
			t.Fatalf("launch flags %v lack %s", m.Args(), want)
		}
	}
	if _, stderr, err := m.Etcdctl("put", "/registry/pods/default/p", "x"); err != nil {
		t.Fatalf("etcdctl put: %v %s", err, stderr)
	}
	if out, stderr, err := m.Etcdctl("get", "/registry/", "--prefix", "--keys-only"); err != nil || !strings.Contains(out, "/registry/pods/default/p") {
		t.Fatalf("etcdctl get: %q %v %s", out, err, stderr)
	}
	if out, stderr, err := m.Etcdctl("endpoint", "health"); err != nil || !strings.Contains(out, "is healthy") {
		t.Fatalf("etcdctl endpoint health: %q %v %s", out, err, stderr)
	}
	out, stderr, err := m.Etcdctl("endpoint", "status", "-w", "json")
	if err != nil {
		t.Fatalf("etcdctl endpoint status: %v %s", err, stderr)
	}
	var st []struct{ Endpoint string }
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st) != 1 || st[0].Endpoint != m.ClientURL {
		t.Fatalf("endpoint status: %q %v", out, err)
	}
	// kubelet's liveness probe: plaintext /health on the metrics URL.
	requireHealthy(t, "metrics URL", &http.Client{Timeout: 5 * time.Second}, metrics+"/health")
}

// The kubeadm-shaped launch with three members (kubeadm's stacked etcd after two more
// control-plane nodes joined): each member gets the same flag set and its own plaintext
// metrics URL; a write through one member is read through another with etcdctl and
// client certificates, every member is healthy, and kubelet's probe answers on each.
func TestTLSKubeadmShapeCluster(t *testing.T) {
	ca := framework.NewCA(t, "etcd-ca")
	client := ca.Issue(t, "healthcheck-client", framework.CertOptions{CN: "kube-etcd-healthcheck-client"})
	c := framework.NewCluster(t, 3, framework.Options{
		ClientTLS: &framework.TLSOptions{CA: ca, Server: ca.ServerCert(t, "server", "control-plane"), ClientCertAuth: true, Client: &client},
		PeerTLS:   &framework.TLSOptions{CA: ca, Server: ca.ServerCert(t, "peer", "control-plane"), ClientCertAuth: true},
		Flags: []string{"--snapshot-count=10000", "--experimental-initial-corrupt-check=true",
			"--experimental-watch-progress-notify-interval=5s"},
	})
	metrics := map[*framework.Member]string{}
	for _, m := range c.Members {
		metrics[m] = fmt.Sprintf("http://127.0.0.1:%d", framework.FreePort(t))
		m.AddFlags("--listen-metrics-urls=" + metrics[m])
	}
	if err := c.Start(); err != nil {
		t.Fatalf("kubeadm-shaped cluster: %v", err)
	}
	first, last := c.Members[0], c.Members[2]
	if _, stderr, err := first.Etcdctl("put", "/registry/pods/default/p", "x"); err != nil {
		t.Fatalf("etcdctl put: %v %s", err, stderr)
	}
	if out, stderr, err := last.Etcdctl("get", "/registry/", "--prefix", "--keys-only"); err != nil || !strings.Contains(out, "/registry/pods/default/p") {
		t.Fatalf("etcdctl get through %s: %q %v %s", last.Name, out, err, stderr)
	}
	for _, m := range c.Members {
		if out, stderr, err := m.Etcdctl("endpoint", "health"); err != nil || !strings.Contains(out, "is healthy") {
			t.Fatalf("%s: etcdctl endpoint health: %q %v %s", m.Name, out, err, stderr)
		}
		requireHealthy(t, m.Name+" metrics URL", &http.Client{Timeout: 5 * time.Second}, metrics[m]+"/health")
	}
	if out, stderr, err := first.Etcdctl("member", "list"); err != nil || strings.Count(out, "https://127.0.0.1:") < 6 {
		t.Fatalf("etcdctl member list: %q %v %s", out, err, stderr)
	}
}

// TestTLSPeerCluster: three members with peer TLS (client certificate auth, an allowed
// CN) and client TLS elect a leader, replicate writes, forward lease keep-alives, send a
// snapshot to a member that fell behind and let a learner join, all over TLS; the peer
// port refuses a certificate with another CN and a client without a certificate.
func TestTLSPeerCluster(t *testing.T) {
	ca := framework.NewCA(t, "ca")
	srv := ca.ServerCert(t, "server", "server")
	client := ca.Issue(t, "client", framework.CertOptions{CN: "client"})
	peer := ca.ServerCert(t, "peer", "member")
	intruder := ca.ServerCert(t, "intruder", "intruder")
	c := framework.StartCluster(t, 3, framework.Options{
		ClientTLS: &framework.TLSOptions{CA: ca, Server: srv, ClientCertAuth: true, Client: &client},
		PeerTLS:   &framework.TLSOptions{CA: ca, Server: peer, ClientCertAuth: true},
		Flags:     []string{"--peer-cert-allowed-cn=member", "--snapshot-count=50", "--snapshot-catchup-entries=10"},
	})
	leader := c.Leader()
	cli := c.Client()
	for i := 0; i < 10; i++ {
		mustPut(t, cli, fmt.Sprintf("k%02d", i), "v")
	}
	for _, m := range c.Members {
		if got := mustGet(t, m.Client(), "k09"); len(got.Kvs) != 1 {
			t.Fatalf("%s: k09 not replicated", m.Name)
		}
	}

	// A lease kept alive through a follower: forwarded to the leader over the peer port.
	f := c.Followers()[0]
	lg, err := f.Client().Grant(ctx(t), 30)
	if err != nil {
		t.Fatal(err)
	}
	if ka, err := f.Client().KeepAliveOnce(ctx(t), lg.ID); err != nil || ka.TTL <= 0 {
		t.Fatalf("keep-alive through follower %s: %v %v", f.Name, ka, err)
	}

	// The peer port: the members' CN is accepted, another CN and no certificate are not.
	addr := leader.PeerHostPort()
	requireAccepted(t, "member certificate", addr, framework.ClientTLS(t, ca, &peer))
	requireRefused(t, "peer certificate with a CN not in --peer-cert-allowed-cn", addr, framework.ClientTLS(t, ca, &intruder))
	requireRefused(t, "no peer client certificate", addr, framework.ClientTLS(t, ca, nil))
	// Both log the refusals with etcd's message.
	waitFor(t, leader.Name+" to log the refused peer connections", func() bool {
		return leader.LogContains("rejected connection on peer endpoint")
	})

	// A follower that misses more than the leader keeps gets a snapshot over TLS.
	lag := c.Followers()[0]
	lag.Stop()
	for i := 0; i < 120; i++ {
		mustPut(t, cli, fmt.Sprintf("s%03d", i), "v")
	}
	lag.Restart()
	waitFor(t, lag.Name+" to catch up after restart", func() bool {
		gctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		got, err := lag.Client().Get(gctx, "s119", clientv3.WithSerializable())
		return err == nil && len(got.Kvs) == 1
	})
	if got := metricSum(t, lag, "etcd_network_snapshot_receive_success"); got < 1 {
		t.Errorf("%s caught up without receiving a snapshot (etcd_network_snapshot_receive_success %v)", lag.Name, got)
	}
	c.RequireHashKVEqual(t, currentRev(t, cli))

	// A member joining over peer TLS: it fetches the membership from a peer (https) and
	// catches up as a learner. (The add waits out etcd's 5 s health rule after the
	// restart above: mbWhileUnhealthy.)
	m4 := c.NewJoiningMember("m4")
	if err := mbWhileUnhealthy(func(ctx context.Context) error {
		_, err := cli.MemberAddAsLearner(ctx, []string{m4.PeerURL})
		return err
	}); err != nil {
		t.Fatalf("MemberAddAsLearner: %v", err)
	}
	if err := m4.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m4.WaitReady(framework.DefaultReadyTimeout); err != nil {
		t.Fatalf("m4 not ready: %v", err)
	}
	waitFor(t, "m4 to catch up", func() bool {
		gctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		got, err := m4.Client().Get(gctx, "s119", clientv3.WithSerializable())
		return err == nil && len(got.Kvs) == 1
	})
}
