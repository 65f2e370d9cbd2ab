package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/cairn-kv/cairn/internal/connutil"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// http2Preface is what every HTTP/2 client (gRPC among them) sends first on a
// plaintext connection.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

var (
	// sniffTimeout bounds how long a new connection may take to send enough bytes to
	// tell gRPC (HTTP/2) from HTTP/1.1.
	sniffTimeout = 10 * time.Second
	// ShutdownTimeout bounds the graceful part of ServeClient's shutdown: in-flight
	// HTTP requests and gRPC calls get this long, then connections are closed.
	ShutdownTimeout = 10 * time.Second
	// h2SniffWindow bounds how long routeH2 waits for the first request of an HTTP/2
	// connection on a TLS port: one that sends none within it goes to gRPC (a gRPC
	// client may connect before it has a call to make; any other client connects for
	// a request and sends it at once).
	h2SniffWindow = time.Second
)

// ClientPort is what one client URL serves.
type ClientPort struct {
	// TLS, when set, makes the port https: each connection's TLS handshake comes first,
	// and its ALPN protocol says where it goes: "h2" to gRPC, unless its first request is
	// not a gRPC one (routeH2), anything else to HTTP; see ClientNextProtos.
	TLS *tls.Config
	// GRPC serves gRPC; nil on an HTTP-only port (--listen-client-http-urls).
	GRPC *grpc.Server
	// HTTP serves the HTTP endpoints; nil on a gRPC-only port (--listen-client-urls
	// once --listen-client-http-urls is given).
	HTTP http.Handler
	// Logger logs refused TLS handshakes; nil logs nothing.
	Logger *zap.Logger
}

// ClientNextProtos is the ALPN choice of a TLS port serving both gRPC and HTTP: a client
// that can speak HTTP/1.1 (curl, browsers, Go's http.Client) gets it and the HTTP
// endpoints; one that offers only HTTP/2 gets "h2": gRPC for a gRPC client, the HTTP
// endpoints over HTTP/2 for any other (routeH2), as etcd serves them.
func ClientNextProtos(offered []string) []string {
	if slices.Contains(offered, "http/1.1") {
		return []string{"http/1.1"}
	}
	return []string{"h2"}
}

// HTTPNextProtos is the ALPN choice of a TLS port that serves only HTTP.
func HTTPNextProtos([]string) []string { return []string{"http/1.1"} }

// ServeClient serves a client port on l until ctx is done: gRPC and HTTP/1.1 on one
// port. On a plaintext port a connection that opens with the HTTP/2 client preface goes
// to p.GRPC (as etcd's: a plaintext HTTP/2 request that is not gRPC gets gRPC's 415),
// any other to an http.Server running p.HTTP; on a TLS port the negotiated ALPN protocol
// decides instead, and an HTTP/2 connection whose first request is not gRPC is served
// p.HTTP over HTTP/2. A port with only one of them sends every connection
// there. When ctx is done it stops accepting, lets in-flight requests finish (bounded by
// ShutdownTimeout), stops p.GRPC and returns nil. It returns an error if accepting fails
// for another reason; l is closed either way.
//
// p.GRPC may be shared by several ServeClient calls (one per client URL); stopping it
// is safe to do more than once.
func ServeClient(ctx context.Context, l net.Listener, p ClientPort) error {
	grpcL := newChanListener(l.Addr())
	httpL := newChanListener(l.Addr())
	httpSrv := &http.Server{Handler: p.HTTP, ReadHeaderTimeout: 30 * time.Second}
	// h2Srv serves the HTTP/2 connections routeH2 sends to the HTTP endpoints. Their TLS
	// is terminated already, so it takes them as HTTP/2 with prior knowledge.
	h2L := newChanListener(l.Addr())
	var h2Only http.Protocols
	h2Only.SetUnencryptedHTTP2(true)
	h2Srv := &http.Server{Handler: p.HTTP, ReadHeaderTimeout: 30 * time.Second, Protocols: &h2Only}

	var wg sync.WaitGroup
	if p.GRPC != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.GRPC.Serve(grpcL) // returns when grpcL closes or p.GRPC stops
		}()
	}
	if p.HTTP != nil {
		wg.Add(2)
		go func() {
			defer wg.Done()
			httpSrv.Serve(httpL) // returns http.ErrServerClosed on Shutdown
		}()
		go func() {
			defer wg.Done()
			h2Srv.Serve(h2L)
		}()
	}

	sn := &sniffing{conns: make(map[net.Conn]struct{})}
	rt := &router{port: p, grpcL: grpcL, httpL: httpL, h2L: h2L}
	acceptErr := make(chan error, 1)
	go func() { acceptErr <- acceptLoop(l, sn, rt) }()

	var err error
	select {
	case <-ctx.Done():
		l.Close()
		<-acceptErr
	case err = <-acceptErr:
		l.Close()
	}
	grpcL.Close()
	httpL.Close()
	h2L.Close()
	sn.closeAll()

	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	var sw sync.WaitGroup
	if p.HTTP != nil {
		for _, hs := range []*http.Server{httpSrv, h2Srv} {
			sw.Add(1)
			go func() {
				defer sw.Done()
				if hs.Shutdown(sctx) != nil {
					hs.Close()
				}
			}()
		}
	}
	if p.GRPC != nil {
		sw.Add(1)
		go func() {
			defer sw.Done()
			stopGRPC(sctx, p.GRPC)
		}()
	}
	sw.Wait()
	wg.Wait()
	return err
}

// stopGRPC stops grpcSrv gracefully, or forcibly once ctx is done.
func stopGRPC(ctx context.Context, s *grpc.Server) {
	done := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.Stop()
		<-done
	}
}

// acceptLoop accepts until l fails. Errors from l being closed are reported as nil.
func acceptLoop(l net.Listener, sn *sniffing, rt *router) error {
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Transient (e.g. too many open files shows up as temporary): back off.
				delay = backoff(delay)
				time.Sleep(delay)
				continue
			}
			if isTemporary(err) {
				delay = backoff(delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if !sn.add(c) {
			c.Close()
			continue
		}
		go func() {
			defer sn.done(c)
			rt.route(c)
		}()
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func backoff(d time.Duration) time.Duration {
	if d == 0 {
		return 5 * time.Millisecond
	}
	if d *= 2; d > time.Second {
		d = time.Second
	}
	return d
}

// sniffing tracks connections whose protocol is not known yet, so that shutdown can
// close them instead of waiting for sniffTimeout.
type sniffing struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func (s *sniffing) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *sniffing) done(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *sniffing) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
}

// router hands each accepted connection to the gRPC or the HTTP listener.
type router struct {
	port         ClientPort
	grpcL, httpL *chanListener
	h2L          *chanListener // routeH2's HTTP/2 connections for the HTTP endpoints
}

// route finishes c's TLS handshake (on a TLS port) and hands c to the listener its
// protocol belongs to; a connection that cannot be served is closed.
func (rt *router) route(c net.Conn) {
	p := rt.port
	if p.TLS != nil {
		tc := tls.Server(c, p.TLS)
		ctx, cancel := context.WithTimeout(context.Background(), sniffTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			if p.Logger != nil {
				p.Logger.Warn("rejected connection on client endpoint", zap.String("remote-addr", c.RemoteAddr().String()), zap.Error(err))
			}
			c.Close()
			return
		}
		switch {
		case p.GRPC == nil:
			rt.httpL.deliver(tc)
		case p.HTTP == nil:
			rt.grpcL.deliver(tc)
		case tc.ConnectionState().NegotiatedProtocol == "h2":
			rt.routeH2(tc)
		default:
			rt.httpL.deliver(tc)
		}
		return
	}
	switch {
	case p.GRPC == nil:
		rt.httpL.deliver(c)
	case p.HTTP == nil:
		rt.grpcL.deliver(c)
	default:
		sniff(c, rt.grpcL, rt.httpL)
	}
}

// sniff reads the first bytes of c and hands it to the gRPC or HTTP listener. It reads
// only until the bytes stop matching the HTTP/2 preface, so an HTTP/1.1 request is
// routed after its first byte.
func sniff(c net.Conn, grpcL, httpL *chanListener) {
	c.SetReadDeadline(time.Now().Add(sniffTimeout))
	buf := make([]byte, 0, len(http2Preface))
	isH2 := true
	for len(buf) < len(http2Preface) {
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if !bytes.HasPrefix([]byte(http2Preface), buf) {
			isH2 = false
			break
		}
		if err != nil {
			c.Close()
			return
		}
	}
	c.SetReadDeadline(time.Time{})
	pc := connutil.Replay(c, buf)
	if isH2 {
		grpcL.deliver(pc)
	} else {
		httpL.deliver(pc)
	}
}

// chanListener is a net.Listener fed with already accepted connections.
type chanListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
