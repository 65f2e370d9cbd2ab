// Package tlsutil builds the TLS configurations of a member's client and peer ports and
// of its dials to other members, from etcd's security options (cert and key files, a
// trusted CA, client certificate auth, a CRL, allowed CNs and hostnames, cipher suites,
// TLS versions), and generates etcd's self-signed certificates (--auto-tls,
// --peer-auto-tls). ServerCredentials hands a gRPC server the TLS state of the
// connections Listener (or the client port's router) already terminated.
//
// Certificates, keys, CA bundles and CRLs are re-read from disk when their files change
// (checked at each handshake), so certificates can be rotated without a restart.
//
// It must never weaken what the options ask for: a connection it cannot verify as asked
// fails its handshake. The one exception is etcd's: a client config made from
// self-signed certificates skips verifying the server (there is no CA to check with).
package tlsutil
