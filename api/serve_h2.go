package api

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// routeH2 serves an HTTP/2 connection on a TLS port that serves both gRPC and HTTP. etcd
// serves such a port with one HTTP/2 server and hands each request whose content-type
// is application/grpc to gRPC, any other to its HTTP handlers (`curl
// --http2-prior-knowledge https://.../health` gets the health answer). Cairn keeps gRPC
// on its own transport and decides per connection instead, by its first request: a
// gRPC one, or none within h2SniffWindow, sends
// the connection to gRPC; any other has the HTTP endpoints serve it over HTTP/2. A client
// mixing gRPC and other requests on one connection gets the first one's server for all.
func (rt *router) routeH2(tc *tls.Conn) {
	c, isGRPC, err := sniffH2(tc, sniffTimeout, h2SniffWindow)
	if err != nil {
		tc.Close()
		return
	}
	if isGRPC {
		rt.grpcL.deliver(c)
		return
	}
	// The settings frame sniffH2 sent is not the HTTP/2 server's, which would hang up on
	// the client's acknowledgement of it: that one is dropped on the way.
	c.r = &settingsAckDropper{r: c.r, left: len(http2Preface)}
	// Without its ConnectionState the HTTP server takes it as HTTP/2 with prior
	// knowledge (its handlers do not read Request.TLS).
	rt.h2L.deliver(struct{ net.Conn }{c})
}

// sniffH2 reads the client's side of an HTTP/2 connection up to its first request's
// headers and says whether that is a gRPC request (content-type application/grpc, as
// etcd tells them). The client preface and its settings must come within timeout; then
// it sends the client an (empty) settings frame, which gRPC clients wait for before
// their first call, and waits up to window for the headers: none means gRPC. The
// returned connection replays everything read; it is nil only with an error (the
// connection is not HTTP/2 or failed).
func sniffH2(tc *tls.Conn, timeout, window time.Duration) (*h2Conn, bool, error) {
	var buf bytes.Buffer
	r := io.TeeReader(tc, &buf)
	replay := func() *h2Conn {
		tc.SetReadDeadline(time.Time{})
		return &h2Conn{Conn: tc, r: io.MultiReader(bytes.NewReader(buf.Bytes()), tc)}
	}
	tc.SetReadDeadline(time.Now().Add(timeout))
	preface := make([]byte, len(http2Preface))
	if _, err := io.ReadFull(r, preface); err != nil {
		return nil, false, err
	}
	if string(preface) != http2Preface {
		return replay(), true, nil // gRPC refuses it as it would have
	}
	fr := http2.NewFramer(nil, r)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	f, err := fr.ReadFrame()
	if err != nil {
		return nil, false, err
	}
	if _, ok := f.(*http2.SettingsFrame); !ok {
		return replay(), true, nil
	}
	if err := http2.NewFramer(tc, nil).WriteSettings(); err != nil {
		return nil, false, err
	}
	tc.SetReadDeadline(time.Now().Add(window))
	for {
		f, err := fr.ReadFrame()
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			return replay(), true, nil // no request yet: a gRPC client's idle connection
		case err != nil:
			var se http2.StreamError
			var ce http2.ConnectionError
			if errors.As(err, &se) || errors.As(err, &ce) {
				return replay(), true, nil // gRPC answers the protocol error
			}
			return nil, false, err
		}
		if h, ok := f.(*http2.MetaHeadersFrame); ok {
			isGRPC := false
			for _, hf := range h.RegularFields() {
				if hf.Name == "content-type" && strings.Contains(hf.Value, "application/grpc") {
					isGRPC = true
				}
			}
			return replay(), isGRPC, nil
		}
	}
}

// h2Conn is a TLS connection whose first bytes were read while sniffing: its reads
// replay them first. It keeps the TLS state visible (ConnectionState) to gRPC's
// credentials and the HTTP/2 server.
type h2Conn struct {
	*tls.Conn
	r io.Reader
}

func (c *h2Conn) Read(p []byte) (int, error) { return c.r.Read(p) }

// settingsAckDropper passes an HTTP/2 client's byte stream through (the first left bytes,
// the preface, untouched), except the first SETTINGS frame with the ACK flag.
type settingsAckDropper struct {
	r       io.Reader
	left    int    // bytes of the preface or the current frame still to pass
	pending []byte // a frame header read, to pass
	done    bool   // the acknowledgement was dropped: pass everything
}

func (d *settingsAckDropper) Read(p []byte) (int, error) {
	for {
		if d.done && len(d.pending) == 0 {
			return d.r.Read(p)
		}
		if len(d.pending) > 0 {
			n := copy(p, d.pending)
			d.pending = d.pending[n:]
			return n, nil
		}
		if d.left > 0 {
			if len(p) > d.left {
				p = p[:d.left]
			}
			n, err := d.r.Read(p)
			d.left -= n
			return n, err
		}
		var h [9]byte // length (3), type, flags, stream id (4)
		if _, err := io.ReadFull(d.r, h[:]); err != nil {
			return 0, err
		}
		length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		if http2.FrameType(h[3]) == http2.FrameSettings && http2.Flags(h[4]).Has(http2.FlagSettingsAck) && length == 0 {
			d.done = true
			continue
		}
		d.pending, d.left = h[:], length
	}
}
