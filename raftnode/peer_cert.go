package raftnode

import (
	"context"
	"crypto/x509"
	"net/url"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// verifiedClientCert is the client certificate of the connection ctx's request came on,
// when peer client certificate auth verified it against the trusted CA; nil otherwise
// (plaintext, no client certificate auth, or a self-signed --peer-auto-tls certificate
// nobody can verify).
func verifiedClientCert(ctx context.Context) *x509.Certificate {
	p, ok := grpcpeer.FromContext(ctx)
	if !ok {
		return nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil
	}
	for _, chain := range ti.State.VerifiedChains {
		if len(chain) > 0 {
			return chain[0]
		}
	}
	return nil
}

// SkipMemberCertCheck turns the member-certificate check off (on: false, the default);
// cmd/cairn's --peer-skip-member-cert-check.
func (t *PeerTransport) SkipMemberCertCheck(skip bool) { t.skipCertCheck.Store(skip) }

// CheckMemberCert refuses a request on the peer port that claims to come from member id,
// whose peer URLs are peerURLs, unless the connection's client certificate may speak for
// that member: Cairn goes beyond etcd here, which accepts any member id from any
// certificate its CA signed. The rule (see doc.go):
//
//   - only a client certificate verified against the trusted CA (peer client certificate
//     auth) is checked; plaintext, no client certificate auth and --peer-auto-tls's
//     self-signed certificates are not;
//   - a certificate with no IP or DNS SANs is not checked (as etcd's SAN check skips it;
//     restrict those with --peer-cert-allowed-cn);
//   - otherwise the certificate must be valid for the host of one of the member's peer
//     URLs (x509 hostname rules: an IP host matches an IP SAN, a name a DNS SAN, wildcards
//     included) — which a member's own certificate is, since the others verify it as the
//     server of those URLs.
//
// A refusal is PermissionDenied and logged.
func (t *PeerTransport) CheckMemberCert(ctx context.Context, id uint64, peerURLs []string) error {
	if t.skipCertCheck.Load() {
		return nil
	}
	leaf := verifiedClientCert(ctx)
	if leaf == nil || (len(leaf.IPAddresses) == 0 && len(leaf.DNSNames) == 0) {
		return nil
	}
	for _, u := range peerURLs {
		pu, err := url.Parse(u)
		if err != nil || pu.Hostname() == "" {
			continue
		}
		if leaf.VerifyHostname(pu.Hostname()) == nil {
			return nil
		}
	}
	var remote string
	if p, ok := grpcpeer.FromContext(ctx); ok && p.Addr != nil {
		remote = p.Addr.String()
	}
	ips := make([]string, len(leaf.IPAddresses))
	for i, ip := range leaf.IPAddresses {
		ips[i] = ip.String()
	}
	t.lg.Warn("rejected peer request: the client certificate does not match the member it claims to be",
		zap.String("remote-peer-id", idString(id)),
		zap.Strings("remote-peer-urls", peerURLs),
		zap.String("remote-addr", remote),
		zap.String("cert-cn", leaf.Subject.CommonName),
		zap.Strings("cert-ip-sans", ips),
		zap.Strings("cert-dns-sans", leaf.DNSNames))
	return status.Errorf(codes.PermissionDenied,
		"peer: the client certificate (CN %q) is not valid for any peer URL of member %s", leaf.Subject.CommonName, idString(id))
}

// peerURLs are member id's peer URLs as the transport sends to them; nil if id is not a peer.
func (t *PeerTransport) peerURLs(id uint64) []string {
	t.mu.RLock()
	p := t.peers[id]
	t.mu.RUnlock()
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.urls...)
}
