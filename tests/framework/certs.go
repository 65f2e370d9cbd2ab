package framework

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a test certificate authority whose files live in a test temp dir.
type CA struct {
	Cert   *x509.Certificate
	Key    *ecdsa.PrivateKey
	CAFile string // PEM of Cert (--trusted-ca-file, etcdctl --cacert)
	dir    string
	serial atomic.Int64
}

// CertFiles is an issued certificate and its key on disk.
type CertFiles struct {
	CertFile, KeyFile string
	Cert              *x509.Certificate
}

// CertOptions describe a certificate to issue. Zero NotBefore/NotAfter mean valid from
// an hour ago for a day.
type CertOptions struct {
	CN        string
	IPs       []net.IP
	DNSNames  []string
	NotBefore time.Time
	NotAfter  time.Time
}

// NewCA creates a CA named name (its CN) with its files in a new temp dir.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"cairn-e2e"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{Cert: cert, Key: key, dir: t.TempDir()}
	ca.serial.Store(1)
	ca.CAFile = filepath.Join(ca.dir, name+"-ca.pem")
	writePEM(t, ca.CAFile, "CERTIFICATE", der, 0o644)
	return ca
}

// Issue signs a certificate for server and client auth (members use theirs both ways)
// and writes name.pem and name-key.pem.
func (ca *CA) Issue(t testing.TB, name string, o CertOptions) CertFiles {
	t.Helper()
	cf := CertFiles{CertFile: filepath.Join(ca.dir, name+".pem"), KeyFile: filepath.Join(ca.dir, name+"-key.pem")}
	return ca.IssueTo(t, cf, o)
}

// IssueTo (re)writes cf's files with a newly signed certificate and key (rotation) and
// returns cf with the new certificate.
func (ca *CA) IssueTo(t testing.TB, cf CertFiles, o CertOptions) CertFiles {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.Add(24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial.Add(1)),
		Subject:      pkix.Name{CommonName: o.CN, Organization: []string{"cairn-e2e"}},
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  o.IPs,
		DNSNames:     o.DNSNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Written to temp names and renamed, key first, so a reader never sees a
	// certificate with the old key.
	writePEM(t, cf.KeyFile+".tmp", "EC PRIVATE KEY", keyDER, 0o600)
	writePEM(t, cf.CertFile+".tmp", "CERTIFICATE", der, 0o644)
	for _, f := range []string{cf.KeyFile, cf.CertFile} {
		if err := os.Rename(f+".tmp", f); err != nil {
			t.Fatal(err)
		}
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	cf.Cert = c
	return cf
}

// ServerCert issues a certificate for 127.0.0.1 and localhost with the given CN.
func (ca *CA) ServerCert(t testing.TB, name, cn string) CertFiles {
	t.Helper()
	return ca.Issue(t, name, CertOptions{CN: cn, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}})
}

// WriteCRL writes a DER CRL (etcd reads only DER) signed by the CA that revokes certs,
// and returns its path.
func (ca *CA) WriteCRL(t testing.TB, name string, certs ...CertFiles) string {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, c := range certs {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: c.Cert.SerialNumber, RevocationTime: time.Now().Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(ca.serial.Add(1)),
		ThisUpdate:                time.Now().Add(-time.Hour),
		NextUpdate:                time.Now().Add(24 * time.Hour),
		RevokedCertificateEntries: entries,
	}, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(ca.dir, name+".crl")
	if err := os.WriteFile(p, der, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ClientTLS is a client configuration that trusts the CA (nil: verify nothing) and
// presents cert (nil: no client certificate).
func ClientTLS(t testing.TB, ca *CA, cert *CertFiles) *tls.Config {
	t.Helper()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca == nil {
		cfg.InsecureSkipVerify = true
	} else {
		pool := x509.NewCertPool()
		pool.AddCert(ca.Cert)
		cfg.RootCAs = pool
	}
	if cert != nil {
		kp, err := tls.LoadX509KeyPair(cert.CertFile, cert.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	return cfg
}

// TLSHandshake dials addr and completes a TLS handshake with cfg, then waits up to
// 500 ms for the server to refuse it (with TLS 1.3 a server checks the client
// certificate after the client's side of the handshake is done). It returns nil if the
// server accepted the connection, and the connection's state.
func TLSHandshake(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	cs := c.ConnectionState()
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	var b [1]byte
	_, err = c.Read(b[:])
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		return cs, nil
	}
	return cs, fmt.Errorf("refused after the handshake: %w", err)
}

func writePEM(t testing.TB, path, typ string, der []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
}
