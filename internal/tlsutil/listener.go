package tlsutil

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// handshakeTimeout bounds a connection's TLS handshake on a Listener.
const handshakeTimeout = 10 * time.Second

// Listener wraps l so that Accept returns only connections whose TLS handshake (with
// cfg) succeeded; each refused one is reported to rejected (nil: not reported), as
// etcd's "rejected connection" logs do. Handshakes run concurrently, so a slow or
// silent client does not hold up the others.
func Listener(l net.Listener, cfg *tls.Config, rejected func(remote string, err error)) net.Listener {
	tl := &listener{Listener: l, cfg: cfg, rejected: rejected, conns: make(chan net.Conn), done: make(chan struct{})}
	go tl.acceptLoop()
	return tl
}

type listener struct {
	net.Listener
	cfg      *tls.Config
	rejected func(remote string, err error)

	conns chan net.Conn
	done  chan struct{}
	once  sync.Once

	mu     sync.Mutex
	err    error                 // why the accept loop ended
	active map[net.Conn]struct{} // handshaking
}

func (l *listener) acceptLoop() {
	defer l.Close()
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			l.mu.Lock()
			l.err = err
			l.mu.Unlock()
			return
		}
		l.mu.Lock()
		if l.active == nil {
			l.active = make(map[net.Conn]struct{})
		}
		l.active[c] = struct{}{}
		l.mu.Unlock()
		go l.handshake(c)
	}
}

func (l *listener) handshake(c net.Conn) {
	tc := tls.Server(c, l.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	l.mu.Lock()
	delete(l.active, c)
	l.mu.Unlock()
	if err != nil {
		if l.rejected != nil {
			l.rejected(c.RemoteAddr().String(), err)
		}
		c.Close()
		return
	}
	select {
	case l.conns <- tc:
	case <-l.done:
		tc.Close()
	}
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		l.mu.Lock()
		err := l.err
		l.mu.Unlock()
		if err == nil {
			err = net.ErrClosed
		}
		return nil, err
	}
}

// Close stops accepting and closes the connections still handshaking.
func (l *listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.Listener.Close()
		l.mu.Lock()
		for c := range l.active {
			c.Close()
		}
		l.mu.Unlock()
	})
	return err
}
