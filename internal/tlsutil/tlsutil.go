package tlsutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Info is one port's TLS options, as etcd's transport.TLSInfo has them.
type Info struct {
	CertFile      string
	KeyFile       string
	TrustedCAFile string
	// ClientCertAuth requires every client to present a certificate that the trusted CA
	// (or, without one, the system roots) signed. A TrustedCAFile requires it too, as
	// with etcd.
	ClientCertAuth bool
	CRLFile        string
	// AllowedCNs and AllowedHostnames (mutually exclusive) restrict the certificates
	// accepted from the other side to those with one of these common names, or valid
	// for one of these hostnames.
	AllowedCNs       []string
	AllowedHostnames []string
	CipherSuites     []uint16
	MinVersion       uint16 // 0 = TLS 1.2
	MaxVersion       uint16 // 0 = what Go supports
	// SelfCert marks certificates from SelfCert: a client config then does not verify the
	// server, as etcd's does not (there is no CA to verify it with).
	SelfCert bool
	// CheckClientSAN makes a server refuse a client certificate whose SANs (when it has
	// any) do not name the connection's remote address: etcd does so on its peer port.
	CheckClientSAN bool
	// NextProtos chooses the ALPN protocols a server offers a client that offered
	// offered; nil offers "h2".
	NextProtos func(offered []string) []string

	Logger *zap.Logger
}

// Empty reports whether no certificate is configured.
func (info *Info) Empty() bool { return info.CertFile == "" && info.KeyFile == "" }

func (info *Info) logger() *zap.Logger {
	if info.Logger == nil {
		return zap.NewNop()
	}
	return info.Logger
}

// errCertAuth is etcd's answer to a certificate outside AllowedCNs/AllowedHostnames.
var errCertAuth = errors.New("client certificate authentication failed")

// ErrRevoked refuses a certificate listed in the CRL file.
var ErrRevoked = errors.New("tlsutil: certificate revoked")

func (info *Info) checkAllowed() error {
	if len(info.AllowedCNs) > 0 && len(info.AllowedHostnames) > 0 {
		return fmt.Errorf("AllowedCNs and AllowedHostnames are mutually exclusive (cns=%q, hostnames=%q)", info.AllowedCNs, info.AllowedHostnames)
	}
	return nil
}

// allowed is etcd's check of the other side's verified certificate against AllowedCNs
// and AllowedHostnames; nil when neither is set.
func (info *Info) allowed(chains [][]*x509.Certificate) error {
	if len(info.AllowedCNs) == 0 && len(info.AllowedHostnames) == 0 {
		return nil
	}
	for _, chain := range chains {
		if len(chain) == 0 {
			continue
		}
		c := chain[0]
		if slices.Contains(info.AllowedCNs, c.Subject.CommonName) {
			return nil
		}
		for _, h := range info.AllowedHostnames {
			if c.VerifyHostname(h) == nil {
				return nil
			}
		}
	}
	return errCertAuth
}

// ServerConfig is the TLS configuration of a listener. Each handshake uses the
// certificate, CA bundle and CRL as they are on disk then.
func (info *Info) ServerConfig() (*tls.Config, error) {
	if info.KeyFile == "" || info.CertFile == "" {
		return nil, fmt.Errorf("KeyFile and CertFile must both be present[key: %v, cert: %v]", info.KeyFile, info.CertFile)
	}
	if err := info.checkAllowed(); err != nil {
		return nil, err
	}
	lg := info.logger()
	cert := newKeyPairFile(info.CertFile, info.KeyFile, lg)
	if _, err := cert.get(); err != nil {
		return nil, err
	}
	var pool *reloader[*x509.CertPool]
	if info.TrustedCAFile != "" {
		pool = newCertPoolFile(info.TrustedCAFile, lg)
		if _, err := pool.get(); err != nil {
			return nil, err
		}
	}
	var crl *reloader[map[string]bool]
	if info.CRLFile != "" {
		crl = newCRLFile(info.CRLFile, lg)
		if _, err := crl.get(); err != nil {
			return nil, err
		}
	}
	clientAuth := tls.NoClientCert
	if info.TrustedCAFile != "" || info.ClientCertAuth {
		clientAuth = tls.RequireAndVerifyClientCert
	}
	minVersion := info.MinVersion
	if minVersion == 0 {
		minVersion = tls.VersionTLS12
	}
	perConn := func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		kp, err := cert.get()
		if err != nil {
			return nil, err
		}
		cfg := &tls.Config{
			MinVersion:   minVersion,
			MaxVersion:   info.MaxVersion,
			CipherSuites: info.CipherSuites,
			Certificates: []tls.Certificate{*kp},
			ClientAuth:   clientAuth,
			NextProtos:   []string{"h2"},
		}
		if info.NextProtos != nil {
			cfg.NextProtos = info.NextProtos(hello.SupportedProtos)
		}
		if pool != nil {
			if cfg.ClientCAs, err = pool.get(); err != nil {
				return nil, err
			}
		}
		var remote string
		if hello.Conn != nil {
			remote = hello.Conn.RemoteAddr().String()
		}
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if clientAuth == tls.NoClientCert {
				return nil
			}
			if err := info.allowed(cs.VerifiedChains); err != nil {
				return err
			}
			if crl != nil {
				revoked, err := crl.get()
				if err != nil {
					return err
				}
				for _, c := range cs.PeerCertificates {
					if revoked[string(c.SerialNumber.Bytes())] {
						return ErrRevoked
					}
				}
			}
			if info.CheckClientSAN && len(cs.PeerCertificates) > 0 {
				return checkSAN(cs.PeerCertificates[0], remote)
			}
			return nil
		}
		return cfg, nil
	}
	// Session tickets: the per-connection configs set no keys, so crypto/tls uses (and
	// rotates) this outer config's, and clients resume sessions across connections.
	return &tls.Config{MinVersion: minVersion, MaxVersion: info.MaxVersion, GetConfigForClient: perConn}, nil
}

// String describes the options for logs, as etcd's TLSInfo does.
func (info *Info) String() string {
	return fmt.Sprintf("cert = %s, key = %s, trusted-ca = %s, client-cert-auth = %v, crl-file = %s",
		info.CertFile, info.KeyFile, info.TrustedCAFile, info.ClientCertAuth, info.CRLFile)
}

// checkSAN is etcd's peer-port check: a client certificate with IP or DNS SANs must name
// the address the connection comes from (directly, or by a DNS name that resolves to it).
func checkSAN(c *x509.Certificate, remote string) error {
	if len(c.IPAddresses) == 0 && len(c.DNSNames) == 0 {
		return nil
	}
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return fmt.Errorf("tlsutil: remote address %q: %w", remote, err)
	}
	var ipErr error
	if len(c.IPAddresses) > 0 {
		if ipErr = c.VerifyHostname(host); ipErr == nil {
			return nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, name := range c.DNSNames {
		addrs, err := net.DefaultResolver.LookupHost(ctx, name)
		if err != nil {
			continue
		}
		if slices.Contains(addrs, host) {
			return nil
		}
	}
	if ipErr != nil && len(c.DNSNames) == 0 {
		return ipErr
	}
	return fmt.Errorf("tlsutil: the client certificate's SANs (IPs %v, DNS names %v) do not match the remote address %s", c.IPAddresses, c.DNSNames, host)
}

// ClientConfig is the TLS configuration for dialing a server with these options: the
// certificate (re-read when it changes) is presented as the client certificate, the
// server is verified against TrustedCAFile (or the system roots), except for SelfCert.
func (info *Info) ClientConfig() (*tls.Config, error) {
	if err := info.checkAllowed(); err != nil {
		return nil, err
	}
	minVersion := info.MinVersion
	if minVersion == 0 {
		minVersion = tls.VersionTLS12
	}
	cfg := &tls.Config{MinVersion: minVersion, MaxVersion: info.MaxVersion, CipherSuites: info.CipherSuites}
	if !info.Empty() {
		if info.KeyFile == "" || info.CertFile == "" {
			return nil, fmt.Errorf("KeyFile and CertFile must both be present[key: %v, cert: %v]", info.KeyFile, info.CertFile)
		}
		cert := newKeyPairFile(info.CertFile, info.KeyFile, info.logger())
		if _, err := cert.get(); err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert.get() }
	}
	if info.TrustedCAFile != "" {
		pool, err := loadCertPool(info.TrustedCAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if info.SelfCert {
		cfg.InsecureSkipVerify = true
	}
	if len(info.AllowedCNs) > 0 || len(info.AllowedHostnames) > 0 {
		cfg.VerifyConnection = func(cs tls.ConnectionState) error { return info.allowed(cs.VerifiedChains) }
	}
	return cfg, nil
}

// ParseVersion is etcd's --tls-min-version / --tls-max-version: "" is 0 (Go's default).
func ParseVersion(s string) (uint16, error) {
	switch s {
	case "":
		return 0, nil
	case "TLS1.2":
		return tls.VersionTLS12, nil
	case "TLS1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("unexpected TLS version %q (must be one of: TLS1.2, TLS1.3)", s)
}

// ParseCipherSuites maps etcd's --cipher-suites names (Go's names, secure or not) to ids.
func ParseCipherSuites(names []string) ([]uint16, error) {
	var ids []uint16
	for _, n := range names {
		id, ok := cipherSuiteID(n)
		if !ok {
			return nil, fmt.Errorf("unexpected TLS cipher suite %q", n)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func cipherSuiteID(name string) (uint16, bool) {
	for _, s := range tls.CipherSuites() {
		if s.Name == name {
			return s.ID, true
		}
	}
	for _, s := range tls.InsecureCipherSuites() {
		if s.Name == name {
			return s.ID, true
		}
	}
	return 0, false
}

// stamp tells whether a file changed: a rename over it changes the inode, a rewrite
// the size or modification time.
type stamp struct {
	ino   uint64
	size  int64
	mtime time.Time
}

func statFile(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	s := stamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
	}
	return s, nil
}

// reloader holds what load made of some files and loads it again when one of them
// changes. If a reload fails (e.g. the certificate was replaced but not its key yet), it
// keeps the last good value and tries again at the next get.
type reloader[T any] struct {
	paths []string
	load  func() (T, error)
	lg    *zap.Logger

	mu     sync.Mutex
	stamps []stamp
	val    T
	loaded bool
}

func (r *reloader[T]) get() (T, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	stamps := make([]stamp, len(r.paths))
	var statErr error
	for i, p := range r.paths {
		s, err := statFile(p)
		if err != nil {
			statErr = err
			break
		}
		stamps[i] = s
	}
	if statErr == nil && r.loaded && slices.Equal(stamps, r.stamps) {
		return r.val, nil
	}
	v, err := r.load()
	if err == nil {
		err = statErr
	}
	if err != nil {
		if r.loaded {
			r.lg.Warn("cannot reload TLS file; using the one loaded before", zap.Strings("files", r.paths), zap.Error(err))
			return r.val, nil
		}
		var zero T
		return zero, err
	}
	if r.loaded {
		r.lg.Info("reloaded TLS file", zap.Strings("files", r.paths))
	}
	r.val, r.stamps, r.loaded = v, stamps, true
	return v, nil
}

func newKeyPairFile(certFile, keyFile string, lg *zap.Logger) *reloader[*tls.Certificate] {
	return &reloader[*tls.Certificate]{paths: []string{certFile, keyFile}, lg: lg, load: func() (*tls.Certificate, error) {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		return &c, nil
	}}
}

func newCertPoolFile(path string, lg *zap.Logger) *reloader[*x509.CertPool] {
	return &reloader[*x509.CertPool]{paths: []string{path}, lg: lg, load: func() (*x509.CertPool, error) { return loadCertPool(path) }}
}

func newCRLFile(path string, lg *zap.Logger) *reloader[map[string]bool] {
	return &reloader[map[string]bool]{paths: []string{path}, lg: lg, load: func() (map[string]bool, error) { return loadCRL(path) }}
}

// loadCertPool reads a PEM bundle of CA certificates.
func loadCertPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tlsutil: %s: %w", path, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("tlsutil: %s: no PEM certificate found", path)
	}
	return pool, nil
}

// loadCRL reads a CRL (PEM or DER) and returns its revoked serial numbers.
func loadCRL(path string) (map[string]bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if block, _ := pem.Decode(b); block != nil {
		b = block.Bytes
	}
	rl, err := x509.ParseRevocationList(b)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: %s: %w", path, err)
	}
	out := make(map[string]bool, len(rl.RevokedCertificateEntries))
	for _, e := range rl.RevokedCertificateEntries {
		out[string(e.SerialNumber.Bytes())] = true
	}
	return out, nil
}
