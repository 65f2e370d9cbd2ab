package main

import (
	"crypto/tls"
	"fmt"
	"net/url"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/api"
	"github.com/cairn-kv/cairn/internal/tlsutil"
)

// tlsConfigs are the member's TLS configurations; a nil one is not needed (no https://
// URL of its kind, or no peer TLS options for dialing).
type tlsConfigs struct {
	client     *tls.Config // a client URL serving gRPC and HTTP
	clientGRPC *tls.Config // a client URL serving gRPC only (--listen-client-http-urls given)
	clientHTTP *tls.Config // --listen-client-http-urls and --listen-metrics-urls
	peerServer *tls.Config // the peer URLs
	peerDial   *tls.Config // dialing other members' https:// peer URLs
}

func anyHTTPS(lists ...[]url.URL) bool {
	for _, us := range lists {
		for _, u := range us {
			if u.Scheme == "https" {
				return true
			}
		}
	}
	return false
}

func hostsOf(lists ...[]url.URL) []string {
	var hs []string
	for _, us := range lists {
		for _, u := range us {
			hs = append(hs, u.Host)
		}
	}
	return hs
}

// tlsConfigs builds the TLS configurations from the security options as etcd does:
// --auto-tls / --peer-auto-tls generate a self-signed certificate in
// <data-dir>/fixtures/client or /peer when no certificate is given; certificates given
// for http:// URLs only are ignored with a warning.
func (c *config) tlsConfigs(lg *zap.Logger) (*tlsConfigs, error) {
	minV, _ := tlsutil.ParseVersion(c.TLSMinVersion) // checked in validate
	maxV, _ := tlsutil.ParseVersion(c.TLSMaxVersion)
	suites, _ := tlsutil.ParseCipherSuites(c.CipherSuites)
	info := func(o tlsOptions) tlsutil.Info {
		return tlsutil.Info{
			CertFile: o.CertFile, KeyFile: o.KeyFile, TrustedCAFile: o.TrustedCAFile,
			ClientCertAuth: o.ClientCertAuth, CRLFile: o.CRLFile,
			AllowedCNs: o.AllowedCNs, AllowedHostnames: o.AllowedHostnames,
			CipherSuites: suites, MinVersion: minV, MaxVersion: maxV, Logger: lg,
		}
	}
	// selfCert fills in the generated certificate when auto is asked and none is given.
	selfCert := func(what string, o tlsOptions, in *tlsutil.Info, hosts []string, clientAuth bool) error {
		if !o.AutoTLS {
			return nil
		}
		if !o.empty() {
			lg.Warn(fmt.Sprintf("ignoring %s auto TLS since certs given", what))
			return nil
		}
		sc, err := tlsutil.SelfCert(lg, filepath.Join(c.DataDir, "fixtures", what), hosts, c.SelfSignedCertValidity, clientAuth)
		if err != nil {
			return fmt.Errorf("failed to get %s self-signed certs: %w", what, err)
		}
		in.CertFile, in.KeyFile, in.SelfCert = sc.CertFile, sc.KeyFile, true
		return nil
	}

	out := &tlsConfigs{}
	ci := info(c.ClientTLS)
	if err := selfCert("client", c.ClientTLS, &ci, hostsOf(c.ListenClientURLs, c.ListenClientHTTPURLs), false); err != nil {
		return nil, err
	}
	if anyHTTPS(c.ListenClientURLs, c.ListenClientHTTPURLs, c.ListenMetricsURLs) {
		lg.Info("starting with client TLS", zap.Stringer("tls-info", &ci), zap.Strings("cipher-suites", c.CipherSuites))
		for _, x := range []struct {
			p     **tls.Config
			alpn  func([]string) []string
			needs bool
		}{
			{&out.client, api.ClientNextProtos, len(c.ListenClientHTTPURLs) == 0},
			{&out.clientGRPC, nil, len(c.ListenClientHTTPURLs) > 0},
			{&out.clientHTTP, api.HTTPNextProtos, true},
		} {
			if !x.needs {
				continue
			}
			in := ci
			in.NextProtos = x.alpn
			cfg, err := in.ServerConfig()
			if err != nil {
				return nil, err
			}
			*x.p = cfg
		}
	} else if !c.ClientTLS.empty() {
		lg.Warn("scheme is HTTP while key and cert files are present; ignoring key and cert files", zap.String("client-url", urlsString(c.ListenClientURLs)))
	}

	pi := info(c.PeerTLS)
	pi.CheckClientSAN = !c.PeerSkipClientSANVerify
	if err := selfCert("peer", c.PeerTLS, &pi, hostsOf(c.ListenPeerURLs), true); err != nil {
		return nil, err
	}
	if anyHTTPS(c.ListenPeerURLs) {
		lg.Info("starting with peer TLS", zap.Stringer("tls-info", &pi), zap.Strings("cipher-suites", c.CipherSuites))
		cfg, err := pi.ServerConfig()
		if err != nil {
			return nil, fmt.Errorf("cannot listen on TLS for %s: %w", urlsString(c.ListenPeerURLs), err)
		}
		out.peerServer = cfg
	} else if !c.PeerTLS.empty() {
		lg.Warn("scheme is HTTP while key and cert files are present; ignoring key and cert files", zap.String("peer-url", urlsString(c.ListenPeerURLs)))
	}
	if !pi.Empty() {
		di := pi
		if c.PeerTLS.ClientCertFile != "" || c.PeerTLS.ClientKeyFile != "" {
			di.CertFile, di.KeyFile = c.PeerTLS.ClientCertFile, c.PeerTLS.ClientKeyFile
		}
		cfg, err := di.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("peer client TLS: %w", err)
		}
		out.peerDial = cfg
	}
	return out, nil
}
