package raftnode

import (
	"context"
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

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-kv/cairn/internal/tlsutil"
	"github.com/cairn-kv/cairn/proto/peerpb"
)

// certAuthority issues the test certificates of TestPeerPortBindsMemberCert.
type certAuthority struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	file string
	n    int64
}

func newCertAuthority(t *testing.T) *certAuthority {
	t.Helper()
	ca := &certAuthority{dir: t.TempDir()}
	ca.cert, ca.key = ca.sign(t, &x509.Certificate{Subject: pkix.Name{CommonName: "ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, "ca")
	ca.pool = x509.NewCertPool()
	ca.pool.AddCert(ca.cert)
	ca.file = filepath.Join(ca.dir, "ca.pem")
	return ca
}

// sign signs tmpl with the CA (itself when there is none yet) and writes name.pem and
// name-key.pem.
func (ca *certAuthority) sign(t *testing.T, tmpl *x509.Certificate, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca.n++
	tmpl.SerialNumber = big.NewInt(ca.n)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	parent, signer := tmpl, key
	if ca.cert != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for path, b := range map[string][]byte{
		filepath.Join(ca.dir, name+".pem"):     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		filepath.Join(ca.dir, name+"-key.pem"): pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// issue is a member certificate (server and client auth) for these IPs and DNS names.
func (ca *certAuthority) issue(t *testing.T, name string, ips []net.IP, dns ...string) tls.Certificate {
	t.Helper()
	c, key := ca.sign(t, &x509.Certificate{Subject: pkix.Name{CommonName: name}, IPAddresses: ips, DNSNames: dns,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}, name)
	return tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: key, Leaf: c}
}

// A raft stream claiming member X is taken only on a connection whose verified client
// certificate is valid for a host of one of X's peer URLs (an IP SAN for an IP host, a
// DNS SAN, wildcards included, for a name); a certificate without SANs is not checked,
// nor a plaintext connection on the same server; SkipMemberCertCheck turns it off.
func TestPeerPortBindsMemberCert(t *testing.T) {
	ca := newCertAuthority(t)
	if err := os.WriteFile(ca.file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	ca.issue(t, "server", []net.IP{net.IPv4(127, 0, 0, 1)})
	srvCfg, err := (&tlsutil.Info{CertFile: filepath.Join(ca.dir, "server.pem"), KeyFile: filepath.Join(ca.dir, "server-key.pem"),
		TrustedCAFile: ca.file, ClientCertAuth: true}).ServerConfig()
	if err != nil {
		t.Fatal(err)
	}

	recv := NewPeerTransport(zaptest.NewLogger(t), 2, testClusterID, nil)
	defer recv.Stop()
	recv.SetHandler(func(context.Context, *raftpb.Message) error { return nil }, func(uint64) {})
	recv.AddPeer(1, []string{"https://127.0.0.11:1"})
	recv.AddPeer(3, []string{"https://m3.peers.example:1", "https://127.0.0.13:1"})
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := servePeerListener(recv, tlsutil.Listener(tl, srvCfg, nil))
	defer srv.Stop()
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	psrv := servePeerListener(recv, pl)
	defer psrv.Stop()

	m1 := ca.issue(t, "m1", []net.IP{net.IPv4(127, 0, 0, 11)}, "localhost")
	m3 := ca.issue(t, "m3", nil, "*.peers.example")
	other := ca.issue(t, "other", []net.IP{net.IPv4(127, 0, 0, 99)}, "localhost")
	noSAN := ca.issue(t, "nosan", nil)

	stream := func(protocol string, cfg *tls.Config, addr string, from uint64) error {
		return sendEnvelope(t, protocol, addr, cfg, &peerpb.Envelope{ClusterId: testClusterID, From: from, To: 2})
	}
	withCert := func(c tls.Certificate) *tls.Config {
		return &tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}
	}
	for _, protocol := range peerProtocols {
		for _, tc := range []struct {
			name string
			cert tls.Certificate
			from uint64
			ok   bool
		}{
			{"m1's certificate as m1 (IP SAN)", m1, 1, true},
			{"m3's certificate as m3 (wildcard DNS SAN)", m3, 3, true},
			{"m1's certificate as m3", m1, 3, false},
			{"m3's certificate as m1", m3, 1, false},
			{"another host's certificate as m1", other, 1, false},
			{"a certificate without SANs", noSAN, 1, true},
		} {
			err := stream(protocol, withCert(tc.cert), tl.Addr().String(), tc.from)
			if tc.ok && err != nil {
				t.Errorf("%s, %s stream: refused: %v", tc.name, protocol, err)
			}
			if !tc.ok {
				if s := status.Convert(err); s.Code() != codes.PermissionDenied || !strings.Contains(s.Message(), "is not valid for any peer URL of member") {
					t.Errorf("%s, %s stream: %v, want PermissionDenied for the certificate", tc.name, protocol, err)
				}
			}
		}
		if err := stream(protocol, nil, pl.Addr().String(), 1); err != nil {
			t.Errorf("plaintext %s stream to the same transport: %v", protocol, err)
		}
	}
	recv.SkipMemberCertCheck(true)
	for _, protocol := range peerProtocols {
		if err := stream(protocol, withCert(other), tl.Addr().String(), 1); err != nil {
			t.Errorf("another host's certificate with the check off, %s stream: %v", protocol, err)
		}
	}
}
