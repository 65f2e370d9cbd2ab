package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
)

// SelfCert returns the self-signed certificate in dir (cert.pem, key.pem), generating
// it first if either file is missing, as etcd's --auto-tls and --peer-auto-tls do: valid
// for validityYears years for the hosts of hosts (host:port), for server auth, and for
// client auth too when clientAuth (a peer dials with it). The returned Info has
// CertFile, KeyFile and SelfCert set.
func SelfCert(lg *zap.Logger, dir string, hosts []string, validityYears uint, clientAuth bool) (Info, error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	if validityYears == 0 {
		return Info{}, errors.New("selfSignedCertValidity is invalid,it should be greater than 0")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Info{}, fmt.Errorf("tlsutil: create cert directory: %w", err)
	}
	certPath, err := filepath.Abs(filepath.Join(dir, "cert.pem"))
	if err != nil {
		return Info{}, err
	}
	keyPath, err := filepath.Abs(filepath.Join(dir, "key.pem"))
	if err != nil {
		return Info{}, err
	}
	info := Info{CertFile: certPath, KeyFile: keyPath, SelfCert: true, Logger: lg}
	_, errCert := os.Stat(certPath)
	_, errKey := os.Stat(keyPath)
	if errCert == nil && errKey == nil {
		return info, nil
	}

	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return Info{}, fmt.Errorf("tlsutil: serial number: %w", err)
	}
	now := time.Now()
	tmpl := x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"etcd"}},
		NotBefore:             now,
		NotAfter:              now.Add(time.Duration(validityYears) * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if clientAuth {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	for _, hp := range hosts {
		h, _, err := net.SplitHostPort(hp)
		if err != nil {
			h = hp
		}
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	lg.Warn("automatically generate certificates", zap.Time("certificate-validity-bound-not-after", tmpl.NotAfter))
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Info{}, fmt.Errorf("tlsutil: generate key: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &priv.PublicKey, priv)
	if err != nil {
		return Info{}, fmt.Errorf("tlsutil: create certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		return Info{}, fmt.Errorf("tlsutil: marshal key: %w", err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return Info{}, fmt.Errorf("tlsutil: write key: %w", err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return Info{}, fmt.Errorf("tlsutil: write cert: %w", err)
	}
	lg.Info("created cert file", zap.String("path", certPath))
	lg.Info("created key file", zap.String("path", keyPath))
	return info, nil
}
