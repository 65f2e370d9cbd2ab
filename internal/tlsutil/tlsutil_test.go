package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA signs certificates for the tests.
type testCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	file   string
	dir    string
	serial int64
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	dir := t.TempDir()
	ca := &testCA{cert: cert, key: key, file: filepath.Join(dir, "ca.pem"), dir: dir, serial: 1}
	writeFile(t, ca.file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return ca
}

// issue writes name.pem / name-key.pem for cn (valid for 127.0.0.1, or for ips) and
// returns the paths and the certificate.
func (ca *testCA) issue(t *testing.T, name, cn string, ips ...net.IP) (string, string, *x509.Certificate) {
	t.Helper()
	if len(ips) == 0 {
		ips = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(ca.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, IPAddresses: ips}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(ca.dir, name+".pem"), filepath.Join(ca.dir, name+"-key.pem")
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	c, _ := x509.ParseCertificate(der)
	return certFile, keyFile, c
}

func (ca *testCA) crl(t *testing.T, revoked ...*x509.Certificate) string {
	t.Helper()
	var es []x509.RevocationListEntry
	for _, c := range revoked {
		es = append(es, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour), RevokedCertificateEntries: es}, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(ca.dir, "crl.der")
	writeFile(t, p, der)
	return p
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func clientCert(t *testing.T, certFile, keyFile string) []tls.Certificate {
	t.Helper()
	kp, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return []tls.Certificate{kp}
}

// handshake runs one TLS handshake between srv and cli over loopback TCP and returns
// the server's error (else the client's) and the client's view of the connection.
func handshake(t *testing.T, srv, cli *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	srvErr := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, srv)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		err = tc.Handshake()
		if err == nil {
			_, err = tc.Write([]byte{1}) // lets a TLS 1.3 client see a late refusal
		}
		srvErr <- err
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Addr().String(), cli)
	var cs tls.ConnectionState
	if err == nil {
		cs = c.ConnectionState()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var b [1]byte
		_, err = c.Read(b[:])
		c.Close()
	}
	if serr := <-srvErr; serr != nil {
		return cs, serr
	}
	return cs, err
}

func TestParseVersion(t *testing.T) {
	for s, want := range map[string]uint16{"": 0, "TLS1.2": tls.VersionTLS12, "TLS1.3": tls.VersionTLS13} {
		if got, err := ParseVersion(s); err != nil || got != want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	_, err := ParseVersion("TLS1.1")
	if err == nil || err.Error() != `unexpected TLS version "TLS1.1" (must be one of: TLS1.2, TLS1.3)` {
		t.Errorf("ParseVersion(TLS1.1) error %v", err)
	}
}

func TestParseCipherSuites(t *testing.T) {
	ids, err := ParseCipherSuites([]string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_128_CBC_SHA"})
	if err != nil || len(ids) != 2 || ids[0] != tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 || ids[1] != tls.TLS_RSA_WITH_AES_128_CBC_SHA {
		t.Fatalf("ParseCipherSuites: %v %v", ids, err)
	}
	if _, err := ParseCipherSuites([]string{"FOO"}); err == nil || err.Error() != `unexpected TLS cipher suite "FOO"` {
		t.Fatalf("unknown suite error %v", err)
	}
}

func TestServerConfigVersionsAndCiphers(t *testing.T) {
	ca := newTestCA(t)
	cf, kf, _ := ca.issue(t, "server", "server")
	info := Info{CertFile: cf, KeyFile: kf, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}}
	srv, err := info.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := handshake(t, srv, &tls.Config{RootCAs: ca.pool()})
	if err != nil || cs.Version != tls.VersionTLS12 || cs.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 {
		t.Fatalf("handshake: %v, version %x suite %x", err, cs.Version, cs.CipherSuite)
	}
	if _, err := handshake(t, srv, &tls.Config{RootCAs: ca.pool(), MinVersion: tls.VersionTLS13}); err == nil {
		t.Fatal("TLS 1.3 client accepted by a TLS 1.2 max server")
	}
	if _, err := handshake(t, srv, &tls.Config{RootCAs: ca.pool(), CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, MaxVersion: tls.VersionTLS12}); err == nil {
		t.Fatal("a cipher suite outside CipherSuites was accepted")
	}
	// The default minimum is TLS 1.2.
	info = Info{CertFile: cf, KeyFile: kf}
	if srv, err = info.ServerConfig(); err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(t, srv, &tls.Config{RootCAs: ca.pool(), MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10}); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}
}

func TestServerConfigNeedsCertAndKey(t *testing.T) {
	info := Info{CertFile: "/x"}
	if _, err := info.ServerConfig(); err == nil || err.Error() != "KeyFile and CertFile must both be present[key: , cert: /x]" {
		t.Fatalf("error %v", err)
	}
	info = Info{CertFile: "/x", KeyFile: "/y", AllowedCNs: []string{"a"}, AllowedHostnames: []string{"b"}}
	if _, err := info.ServerConfig(); err == nil || !strings.Contains(err.Error(), "AllowedCNs and AllowedHostnames are mutually exclusive") {
		t.Fatalf("error %v", err)
	}
}

// TestServerConfigReload: a certificate replaced on disk is served from the next
// handshake on; a half-replaced pair (new certificate, old key) keeps the last good one.
func TestServerConfigReload(t *testing.T) {
	ca := newTestCA(t)
	cf, kf, first := ca.issue(t, "server", "first")
	info := Info{CertFile: cf, KeyFile: kf}
	srv, err := info.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	cli := &tls.Config{RootCAs: ca.pool()}
	cs, err := handshake(t, srv, cli)
	if err != nil || cs.PeerCertificates[0].SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("first handshake: %v", err)
	}
	_, _, second := ca.issue(t, "server", "second")
	cs, err = handshake(t, srv, cli)
	if err != nil || cs.PeerCertificates[0].Subject.CommonName != "second" || cs.PeerCertificates[0].SerialNumber.Cmp(second.SerialNumber) != 0 {
		t.Fatalf("after rotation: %v, got %v", err, cs.PeerCertificates)
	}
	// Only the certificate replaced (its key not yet): the pair does not match, so the
	// last good pair stays in use.
	oldKey, _ := os.ReadFile(kf)
	ca.issue(t, "server", "third")
	writeFile(t, kf, oldKey)
	cs, err = handshake(t, srv, cli)
	if err != nil || cs.PeerCertificates[0].Subject.CommonName != "second" {
		t.Fatalf("with a mismatched pair: %v, got %v", err, cs.PeerCertificates)
	}
}

// TestServerConfigClientAuth: a trusted CA alone requires client certificates (etcd);
// revoked ones (CRL), ones from another CA and ones outside AllowedCNs are refused; the
// CRL and the CA bundle are re-read when they change.
func TestServerConfigClientAuth(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	cf, kf, _ := ca.issue(t, "server", "server")
	gc, gk, _ := ca.issue(t, "good", "member")
	rc, rk, revoked := ca.issue(t, "revoked", "member")
	nc, nk, _ := ca.issue(t, "notallowed", "intruder")
	fc, fk, _ := other.issue(t, "foreign", "member")
	crl := ca.crl(t, revoked)

	info := Info{CertFile: cf, KeyFile: kf, TrustedCAFile: ca.file, CRLFile: crl, AllowedCNs: []string{"member"}}
	srv, err := info.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	with := func(c, k string) *tls.Config {
		cfg := &tls.Config{RootCAs: ca.pool()}
		if c != "" {
			cfg.Certificates = clientCert(t, c, k)
		}
		return cfg
	}
	if _, err := handshake(t, srv, with(gc, gk)); err != nil {
		t.Fatalf("good client refused: %v", err)
	}
	for what, cfg := range map[string]*tls.Config{
		"no client certificate": with("", ""), "revoked": with(rc, rk), "CN not allowed": with(nc, nk), "other CA": with(fc, fk),
	} {
		if _, err := handshake(t, srv, cfg); err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
	// A new CRL that revokes nothing: the revoked certificate is accepted again.
	ca.crl(t)
	if _, err := handshake(t, srv, with(rc, rk)); err != nil {
		t.Fatalf("after the CRL changed: %v", err)
	}
	// A CA bundle that trusts the other CA too.
	b1, _ := os.ReadFile(ca.file)
	b2, _ := os.ReadFile(other.file)
	writeFile(t, ca.file, append(b1, b2...))
	if _, err := handshake(t, srv, with(fc, fk)); err != nil {
		t.Fatalf("after the CA bundle changed: %v", err)
	}
}

// TestServerConfigClientSAN: with CheckClientSAN (the peer port) a client certificate
// for another IP is refused, one without SANs is not.
func TestServerConfigClientSAN(t *testing.T) {
	ca := newTestCA(t)
	cf, kf, _ := ca.issue(t, "server", "server")
	oc, ok, _ := ca.issue(t, "elsewhere", "member", net.IPv4(10, 1, 2, 3))
	info := Info{CertFile: cf, KeyFile: kf, TrustedCAFile: ca.file, CheckClientSAN: true}
	srv, err := info.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(t, srv, &tls.Config{RootCAs: ca.pool(), Certificates: clientCert(t, oc, ok)}); err == nil {
		t.Fatal("a client certificate for 10.1.2.3 was accepted from 127.0.0.1")
	}
	gc, gk, _ := ca.issue(t, "here", "member")
	if _, err := handshake(t, srv, &tls.Config{RootCAs: ca.pool(), Certificates: clientCert(t, gc, gk)}); err != nil {
		t.Fatalf("a client certificate for 127.0.0.1 refused: %v", err)
	}
}

// TestClientConfig: the dialing side presents its certificate (re-read on change),
// verifies the server against the trusted CA, and skips that for self-signed ones.
func TestClientConfig(t *testing.T) {
	ca := newTestCA(t)
	cf, kf, _ := ca.issue(t, "server", "server")
	srvInfo := Info{CertFile: cf, KeyFile: kf, TrustedCAFile: ca.file, ClientCertAuth: true}
	srv, err := srvInfo.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	mc, mk, _ := ca.issue(t, "member", "member")
	ci := Info{CertFile: mc, KeyFile: mk, TrustedCAFile: ca.file}
	cli, err := ci.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	cli.ServerName = "127.0.0.1"
	if _, err := handshake(t, srv, cli); err != nil {
		t.Fatalf("member dial: %v", err)
	}
	other := newTestCA(t)
	wrong := Info{CertFile: mc, KeyFile: mk, TrustedCAFile: other.file}
	wcli, err := wrong.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	wcli.ServerName = "127.0.0.1"
	if _, err := handshake(t, srv, wcli); err == nil {
		t.Fatal("a server outside the trusted CA was accepted")
	}
	self := Info{CertFile: mc, KeyFile: mk, SelfCert: true}
	scli, err := self.ClientConfig()
	if err != nil || !scli.InsecureSkipVerify {
		t.Fatalf("self-signed client config: %v %+v", err, scli)
	}
}

func TestSelfCert(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fixtures", "peer")
	if _, err := SelfCert(nil, dir, []string{"127.0.0.1:2380"}, 0, true); err == nil ||
		err.Error() != "selfSignedCertValidity is invalid,it should be greater than 0" {
		t.Fatalf("validity 0: %v", err)
	}
	info, err := SelfCert(nil, dir, []string{"127.0.0.1:2380", "localhost:2380"}, 3, true)
	if err != nil {
		t.Fatal(err)
	}
	if !info.SelfCert || info.CertFile != filepath.Join(dir, "cert.pem") || info.KeyFile != filepath.Join(dir, "key.pem") {
		t.Fatalf("info %+v", info)
	}
	kp, err := tls.LoadX509KeyPair(info.CertFile, info.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	c := kp.Leaf
	if len(c.IPAddresses) != 1 || len(c.DNSNames) != 1 || c.DNSNames[0] != "localhost" || len(c.ExtKeyUsage) != 2 {
		t.Fatalf("cert SANs %v %v usages %v", c.IPAddresses, c.DNSNames, c.ExtKeyUsage)
	}
	if d := c.NotAfter.Sub(c.NotBefore); d != 3*365*24*time.Hour {
		t.Fatalf("validity %v", d)
	}
	before, _ := os.ReadFile(info.CertFile)
	if _, err := SelfCert(nil, dir, []string{"127.0.0.1:2380"}, 3, true); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(info.CertFile); string(after) != string(before) {
		t.Fatal("SelfCert replaced existing files")
	}
}

// TestListener: Accept returns only connections whose handshake succeeded; a refused
// one is reported, and a client that never handshakes does not hold up the others.
func TestListener(t *testing.T) {
	ca := newTestCA(t)
	cf, kf, _ := ca.issue(t, "server", "server")
	info := Info{CertFile: cf, KeyFile: kf, TrustedCAFile: ca.file}
	srv, err := info.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rejected := make(chan error, 4)
	l := Listener(inner, srv, func(_ string, err error) { rejected <- err })
	addr := inner.Addr().String()

	silent, err := net.Dial("tcp", addr) // never sends a ClientHello
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// No client certificate: refused (reported), never returned by Accept.
	go func() {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.pool(), MaxVersion: tls.VersionTLS12})
		if err == nil {
			c.Close()
		}
	}()
	select {
	case err := <-rejected:
		t.Logf("rejected: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("a handshake without a client certificate was not reported")
	}
	gc, gk, _ := ca.issue(t, "good", "member")
	good := &tls.Config{RootCAs: ca.pool(), Certificates: clientCert(t, gc, gk)}
	go func() {
		c, err := tls.Dial("tcp", addr, good)
		if err == nil {
			_, _ = c.Read(make([]byte, 1))
			c.Close()
		}
	}()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			acc <- c
		}
	}()
	select {
	case c := <-acc:
		if st := c.(*tls.Conn).ConnectionState(); !st.HandshakeComplete || len(st.PeerCertificates) != 1 {
			t.Fatalf("accepted connection %+v", st)
		}
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the good client was not accepted (held up by the silent one?)")
	}
	l.Close()
	if _, err := l.Accept(); err == nil {
		t.Fatal("Accept after Close succeeded")
	}
}

func TestServerConfigMinTLS13AndHostnames(t *testing.T) {
	ca := newTestCA(t)
	cf, kf, _ := ca.issue(t, "server", "server")
	gc, gk, _ := ca.issue(t, "client", "client") // valid for 127.0.0.1
	info := Info{CertFile: cf, KeyFile: kf, TrustedCAFile: ca.file, MinVersion: tls.VersionTLS13, AllowedHostnames: []string{"127.0.0.1"}}
	srv, err := info.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	cli := &tls.Config{RootCAs: ca.pool(), Certificates: clientCert(t, gc, gk)}
	if cs, err := handshake(t, srv, cli); err != nil || cs.Version != tls.VersionTLS13 {
		t.Fatalf("TLS 1.3: %v %x", err, cs.Version)
	}
	old := cli.Clone()
	old.MaxVersion = tls.VersionTLS12
	if _, err := handshake(t, srv, old); err == nil {
		t.Fatal("TLS 1.2 accepted by a TLS 1.3 minimum server")
	}
	info.AllowedHostnames = []string{"10.9.9.9"}
	if srv, err = info.ServerConfig(); err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(t, srv, cli); err == nil || !strings.Contains(err.Error(), "client certificate authentication failed") {
		t.Fatalf("a client certificate not valid for the allowed hostname: %v", err)
	}
}
