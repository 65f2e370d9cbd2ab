package raftnode

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/cairn-kv/cairn/internal/connutil"
	"github.com/cairn-kv/cairn/internal/tlsutil"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// A direct stream carries raft messages to one peer on a connection of its own to the
// peer URL (TCP, or TLS for https://), outside gRPC: the sender's goroutine writes each
// envelope to the socket itself, and the receiver's reads it and steps raft. gRPC's
// stream adds its writer goroutine, which yields before flushing a small write, and a
// reader hand-off; on 2 cores, with the sender in fdatasync, that cost about 100 µs per
// round trip (a leader's append and its follower's answer, each after a fsync).
//
// On the wire, after TLS if any:
//
//	dialer:   directStreamMagic, then frames: 4-byte big-endian length, an Envelope's
//	          wire form (peer.proto, envelope.go)
//	receiver: directStreamMagic (it takes direct streams), later at most one status: why
//	          it ends the stream (1 byte gRPC code, uvarint length, message in UTF-8)
//
// The peer listener tells a direct stream from gRPC by its first bytes (SplitListener).
// A member without direct streams closes the connection at the magic; its peers then
// use the peer service's gRPC stream, which every member still serves.

const (
	// directStreamMagic is as long as HTTP/2's client preface, which an HTTP/2 server
	// reads whole before it refuses a connection that does not start with it.
	directStreamMagic = "CAIRN raft stream v1\r\n\r\n"
	// directStreamHandshakeTimeout bounds the dial, TLS and the magic-and-status
	// exchange; a listener's wait for a connection's first bytes as well.
	directStreamHandshakeTimeout = 5 * time.Second
	// directStreamReadTimeout ends a received stream that stays silent this long: its
	// sender writes an empty envelope after peerIdleProbe of silence.
	directStreamReadTimeout = 10 * peerIdleProbe
	// maxStatusMessageBytes bounds a status's message.
	maxStatusMessageBytes = 4096
	// directBufferKeepBytes: an envelope buffer grown beyond this is dropped after use.
	directBufferKeepBytes = 1 << 20
)

// errNoDirectStreams is why openDirect failed when the peer does not take direct streams.
var errNoDirectStreams = errors.New("peer: no direct stream")

// openDirect dials the peer's next URL and opens a direct stream on it; recvErr tells
// why the receiver ended it. The connection closes when ctx ends.
func (p *peer) openDirect(ctx context.Context, cancel context.CancelFunc) (envelopeWriter, <-chan error, error) {
	p.mu.Lock()
	u, err := p.urlLocked()
	p.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	target := DialTarget(u)
	dctx, dcancel := context.WithTimeout(ctx, directStreamHandshakeTimeout)
	defer dcancel()
	var c net.Conn
	if cfg := peerClientTLS(u, p.t.dialTLS); cfg != nil {
		c, err = (&tls.Dialer{Config: cfg}).DialContext(dctx, "tcp", target)
	} else {
		c, err = (&net.Dialer{}).DialContext(dctx, "tcp", target)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("peer: dial %s: %w", target, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	p.setDirect(target, c)
	_ = c.SetDeadline(time.Now().Add(directStreamHandshakeTimeout))
	r := bufio.NewReaderSize(c, 64)
	_, err = io.WriteString(c, directStreamMagic)
	if err == nil {
		err = readMagic(r)
	}
	if err != nil {
		stop()
		_ = c.Close()
		if ctx.Err() == nil {
			// Closed or answered otherwise: a member that takes gRPC streams only.
			err = fmt.Errorf("%w at %s: %w", errNoDirectStreams, target, err)
		}
		return nil, nil, err
	}
	_ = c.SetDeadline(time.Time{})
	// The receiver writes again only to end the stream: notice at once.
	recvErr := make(chan error, 1)
	go func() {
		err := readStatus(r)
		if err == nil {
			err = errors.New("peer: stream closed by receiver")
		}
		recvErr <- err
	}()
	p.lg.Debug("peer direct stream opened", zap.String("target", target))
	return &directEnvelopeWriter{p: p, c: c, cancel: cancel}, recvErr, nil
}

// setDirect records the peer's open direct connection, so setURLs can end it.
func (p *peer) setDirect(target string, c net.Conn) {
	p.mu.Lock()
	p.directTarget, p.direct = target, c
	p.mu.Unlock()
}

type directEnvelopeWriter struct {
	p      *peer
	c      net.Conn
	cancel context.CancelFunc
	buf    []byte // the frame being written, reused
}

func (w *directEnvelopeWriter) write(enc *envelopeEncoder, skipEmpty bool) (n, size int, err error) {
	const lenBytes = 4
	total := lenBytes + enc.size()
	if cap(w.buf) < total {
		w.buf = make([]byte, 0, total)
	}
	b, n, size := enc.appendTo(w.buf[:lenBytes], w.p.marshalFailed)
	if skipEmpty && n == 0 {
		return 0, 0, nil
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-lenBytes))
	_ = w.c.SetWriteDeadline(time.Now().Add(peerWriteTimeout))
	if _, err = w.c.Write(b); err != nil {
		w.cancel()
	}
	if cap(w.buf) > directBufferKeepBytes {
		w.buf = nil
	}
	return n, size, err
}

// closeSend ends the stream; the receiver sees EOF at a frame's start, its normal end.
func (w *directEnvelopeWriter) closeSend() { _ = w.c.Close() }

// readMagic reads directStreamMagic from r.
func readMagic(r io.Reader) error {
	head := make([]byte, len(directStreamMagic))
	if _, err := io.ReadFull(r, head); err != nil {
		return err
	}
	if string(head) != directStreamMagic {
		return fmt.Errorf("answered %q", head)
	}
	return nil
}

// writeStatus writes err's gRPC status to c.
func writeStatus(c net.Conn, err error) error {
	st := status.Convert(err)
	msg := st.Message()
	if len(msg) > maxStatusMessageBytes {
		msg = msg[:maxStatusMessageBytes]
	}
	b := binary.AppendUvarint([]byte{byte(st.Code())}, uint64(len(msg)))
	_ = c.SetWriteDeadline(time.Now().Add(directStreamHandshakeTimeout))
	_, werr := c.Write(append(b, msg...))
	return werr
}

// readStatus reads a status: its error (status.Error's nil for OK), or why there was none
// to read.
func readStatus(r *bufio.Reader) error {
	code, err := r.ReadByte()
	if err != nil {
		return err
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return err
	}
	if n > maxStatusMessageBytes {
		return fmt.Errorf("peer: status message of %d bytes", n)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return err
	}
	return status.Error(codes.Code(code), string(msg))
}

// serveDirect receives a direct stream whose magic was read from c, envelopes of at most
// maxBytes, until it ends, fails a check or the transport stops.
func (t *PeerTransport) serveDirect(c net.Conn, r *bufio.Reader, maxBytes int) {
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(directStreamHandshakeTimeout))
	if _, err := io.WriteString(c, directStreamMagic); err != nil {
		return
	}
	ctx, cancel, err := t.streamContext(context.Background())
	if err != nil {
		_ = writeStatus(c, err)
		return
	}
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	// CheckMemberCert reads the certificate as it would a gRPC request's.
	ctx = grpcpeer.NewContext(ctx, &grpcpeer.Peer{Addr: c.RemoteAddr(), LocalAddr: c.LocalAddr(), AuthInfo: tlsutil.AuthInfo(c)})
	var (
		certChecked uint64 // the sender whose claim the connection's certificate passed
		hdr         [4]byte
		buf         []byte
	)
	for {
		_ = c.SetReadDeadline(time.Now().Add(directStreamReadTimeout))
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				t.lg.Debug("peer direct stream ended", zap.String("remote", c.RemoteAddr().String()), zap.Error(err))
			}
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[:]))
		if n > maxBytes {
			_ = writeStatus(c, status.Errorf(codes.ResourceExhausted,
				"peer: envelope of %d bytes is larger than the %d allowed", n, maxBytes))
			return
		}
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return
		}
		var env receivedEnvelope
		if err := env.DecodeRaw(buf[:n]); err != nil {
			_ = writeStatus(c, status.Errorf(codes.InvalidArgument, "peer: envelope: %v", err))
			return
		}
		if cap(buf) > directBufferKeepBytes {
			buf = nil
		}
		if err := t.receiveEnvelope(ctx, &env, &certChecked); err != nil {
			_ = writeStatus(c, err)
			return
		}
	}
}

// SplitListener serves the direct streams arriving on l, a peer listener (its TLS
// handshake done, as tlsutil.Listener's), with envelopes of at most maxBytes
// (MaxPeerMessageBytes), and returns the listener the peer gRPC server serves: every
// other connection, unchanged. Closing it closes l and the direct streams it serves, as
// a gRPC server's Stop closes its connections.
func (t *PeerTransport) SplitListener(l net.Listener, maxBytes int) net.Listener {
	return connutil.Listener(l, func(c net.Conn) net.Conn {
		// The first bytes: a direct stream's magic, or the start of anything else (gRPC's
		// HTTP/2 preface), which the connection handed to gRPC reads again.
		head := make([]byte, len(directStreamMagic))
		_ = c.SetReadDeadline(time.Now().Add(directStreamHandshakeTimeout))
		n, err := io.ReadFull(c, head)
		_ = c.SetReadDeadline(time.Time{})
		switch {
		case err == nil && string(head) == directStreamMagic:
			t.serveDirect(c, bufio.NewReaderSize(c, 64<<10), maxBytes)
			return nil
		case n == 0:
			_ = c.Close()
			return nil
		}
		return connutil.Replay(c, head[:n]) // gRPC refuses it if it is not HTTP/2 either
	})
}
