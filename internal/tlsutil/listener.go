package tlsutil

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"github.com/cairn-kv/cairn/internal/connutil"
)

// handshakeTimeout bounds a connection's TLS handshake on a Listener.
const handshakeTimeout = 10 * time.Second

// Listener wraps l so that Accept returns only connections whose TLS handshake (with
// cfg) succeeded; each refused one is reported to rejected (nil: not reported), as
// etcd's "rejected connection" logs do. Handshakes run concurrently, so a slow or
// silent client does not hold up the others.
func Listener(l net.Listener, cfg *tls.Config, rejected func(remote string, err error)) net.Listener {
	return connutil.Listener(l, func(c net.Conn) net.Conn {
		tc := tls.Server(c, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			if rejected != nil {
				rejected(c.RemoteAddr().String(), err)
			}
			_ = c.Close()
			return nil
		}
		return tc
	})
}
