package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// connFlags are etcdctl's flags for reaching the members: endpoints and TLS.
type connFlags struct {
	endpoints          string
	cacert, cert, key  string
	insecureSkipVerify bool
}

// flagSet is what connFlags registers on: the standard library's flag.FlagSet (bench)
// and cobra's pflag.FlagSet (snapshot) both have these methods.
type flagSet interface {
	StringVar(p *string, name, value, usage string)
	BoolVar(p *bool, name string, value bool, usage string)
}

func (f *connFlags) register(fs flagSet) {
	fs.StringVar(&f.endpoints, "endpoints", "127.0.0.1:2379", "comma-separated gRPC endpoints (host:port, http://host:port or https://host:port)")
	fs.StringVar(&f.cacert, "cacert", "", "verify the members' TLS certificates with this CA bundle")
	fs.StringVar(&f.cert, "cert", "", "identify with this TLS client certificate")
	fs.StringVar(&f.key, "key", "", "the key of --cert")
	fs.BoolVar(&f.insecureSkipVerify, "insecure-skip-tls-verify", false, "talk TLS without verifying the members' certificates")
}

// members is where to connect: addresses and, for https:// endpoints or when a TLS flag
// is given, the TLS configuration.
type members struct {
	addrs []string
	tls   *tls.Config
}

func (f *connFlags) members() (members, error) {
	var m members
	useTLS := f.cacert != "" || f.cert != "" || f.insecureSkipVerify
	for _, ep := range strings.Split(f.endpoints, ",") {
		ep = strings.TrimSpace(ep)
		switch {
		case ep == "":
			continue
		case strings.HasPrefix(ep, "https://"):
			useTLS = true
		case strings.Contains(ep, "://") && !strings.HasPrefix(ep, "http://"):
			return m, fmt.Errorf("endpoint %q: not host:port, http:// or https://", ep)
		}
		_, addr, found := strings.Cut(ep, "://")
		if !found {
			addr = ep
		}
		m.addrs = append(m.addrs, addr)
	}
	if len(m.addrs) == 0 {
		return m, errors.New("--endpoints: no endpoint given")
	}
	if !useTLS {
		return m, nil
	}
	if (f.cert == "") != (f.key == "") {
		return m, errors.New("--cert and --key go together")
	}
	m.tls = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: f.insecureSkipVerify}
	if f.cacert != "" {
		pem, err := os.ReadFile(f.cacert)
		if err != nil {
			return m, fmt.Errorf("--cacert: %w", err)
		}
		m.tls.RootCAs = x509.NewCertPool()
		if !m.tls.RootCAs.AppendCertsFromPEM(pem) {
			return m, fmt.Errorf("--cacert %s: no certificate in it", f.cacert)
		}
	}
	if f.cert != "" {
		c, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return m, fmt.Errorf("--cert/--key: %w", err)
		}
		m.tls.Certificates = []tls.Certificate{c}
	}
	return m, nil
}

func (m members) String() string { return strings.Join(m.addrs, ",") }

// dialAll opens n connections, assigning the members round-robin, and waits until all
// are ready so connection setup is not part of a measurement. It returns the
// connections opened so far even on error, for closing.
func dialAll(ctx context.Context, to members, n int) ([]*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if to.tls != nil {
		creds = credentials.NewTLS(to.tls)
	}
	conns := make([]*grpc.ClientConn, 0, n)
	for i := range n {
		ep := to.addrs[i%len(to.addrs)]
		// passthrough: the endpoint is dialled as given, no DNS resolver round trip.
		cc, err := grpc.NewClient("passthrough:///"+ep, grpc.WithTransportCredentials(creds))
		if err != nil {
			return conns, fmt.Errorf("connect to %s: %w", ep, err)
		}
		conns = append(conns, cc)
		cc.Connect()
	}
	for i, cc := range conns {
		if err := waitReady(ctx, cc); err != nil {
			return conns, fmt.Errorf("connect to %s: %w", to.addrs[i%len(to.addrs)], err)
		}
	}
	return conns, nil
}
