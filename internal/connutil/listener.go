package connutil

import (
	"crypto/tls"
	"net"
	"sync"
)

// Listener wraps l: each connection l accepts goes to prepare in a goroutine of its own,
// so a slow or silent client does not hold up the others, and Accept returns what
// prepare returns (nil: nothing to serve; prepare closed the connection or served it
// itself). Close stops accepting and closes the connections prepare still holds.
func Listener(l net.Listener, prepare func(c net.Conn) net.Conn) net.Listener {
	pl := &listener{Listener: l, prepare: prepare, conns: make(chan net.Conn), done: make(chan struct{})}
	go pl.acceptLoop()
	return pl
}

type listener struct {
	net.Listener
	prepare func(c net.Conn) net.Conn

	conns chan net.Conn
	done  chan struct{}
	once  sync.Once

	mu     sync.Mutex
	err    error                 // why the accept loop ended
	active map[net.Conn]struct{} // in prepare
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
		go l.serve(c)
	}
}

func (l *listener) serve(c net.Conn) {
	pc := l.prepare(c)
	l.mu.Lock()
	delete(l.active, c)
	l.mu.Unlock()
	if pc == nil {
		return
	}
	select {
	case l.conns <- pc:
	case <-l.done:
		_ = pc.Close()
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

// Close stops accepting and closes the connections still being prepared.
func (l *listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.Listener.Close()
		l.mu.Lock()
		for c := range l.active {
			_ = c.Close()
		}
		l.mu.Unlock()
	})
	return err
}

// Replay is c reading head before the rest of it: the bytes read from c to tell what it
// carries. A TLS connection (one with a ConnectionState method, as a *tls.Conn) stays
// one, so gRPC's credentials and HTTP servers still see its state.
func Replay(c net.Conn, head []byte) net.Conn {
	rc := &replayConn{Conn: c, head: head}
	if tc, ok := c.(tlsConnectionState); ok {
		return &replayTLSConn{replayConn: rc, tc: tc}
	}
	return rc
}

type replayConn struct {
	net.Conn
	head []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(p, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

type tlsConnectionState interface {
	ConnectionState() tls.ConnectionState
}

type replayTLSConn struct {
	*replayConn
	tc tlsConnectionState
}

func (c *replayTLSConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }
