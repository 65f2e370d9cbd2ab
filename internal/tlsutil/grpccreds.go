package tlsutil

import (
	"context"
	"crypto/tls"
	"errors"
	"net"

	"google.golang.org/grpc/credentials"
)

// ServerCredentials are the transport credentials of a gRPC server whose connections
// arrive with their TLS handshake done already (Listener, or the client port's router):
// it does no handshake of its own and hands gRPC the state of a TLS connection (any
// net.Conn with a ConnectionState method, e.g. a *tls.Conn), so handlers see the
// client's verified certificate in peer.AuthInfo (credentials.TLSInfo). A plaintext
// connection gets no AuthInfo.
func ServerCredentials() credentials.TransportCredentials { return handshakenCreds{} }

type handshakenCreds struct{}

// tlsConn is a connection whose TLS handshake is done.
type tlsConn interface {
	ConnectionState() tls.ConnectionState
}

func (handshakenCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c, AuthInfo(c), nil
}

// AuthInfo is what gRPC's peer.AuthInfo holds for c, a connection whose TLS handshake is
// done: credentials.TLSInfo with its state, or nil if c is plaintext. A server that reads
// such connections itself uses it so checks written for gRPC requests see them alike.
func AuthInfo(c net.Conn) credentials.AuthInfo {
	if tc, ok := c.(tlsConn); ok {
		return credentials.TLSInfo{State: tc.ConnectionState(),
			CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}
	}
	return nil
}

func (handshakenCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("tlsutil: ServerCredentials are server-side only")
}

func (handshakenCreds) Info() credentials.ProtocolInfo { return credentials.ProtocolInfo{} }

func (c handshakenCreds) Clone() credentials.TransportCredentials { return c }

func (handshakenCreds) OverrideServerName(string) error { return nil }
