package connutil

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// Accept returns what prepare returns, in any order prepare finishes; a connection
// prepare still holds is closed with the listener.
func TestListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 1)
	l := Listener(inner, func(c net.Conn) net.Conn {
		head := make([]byte, 1)
		if _, err := io.ReadFull(c, head); err != nil {
			return nil // the held connection, closed by Close
		}
		switch head[0] {
		case 'h': // hold: prepare does not return until the connection is closed
			held <- c
			_, _ = c.Read(head)
			return nil
		case 'd': // drop
			_ = c.Close()
			return nil
		}
		return Replay(c, head)
	})
	dial := func(first string) net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, first); err != nil {
			t.Fatal(err)
		}
		return c
	}
	hold := dial("h") // a silent client holds up nobody
	<-held
	dial("d")
	dial("served")
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len("served"))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "served" {
		t.Fatalf("read %q, %v: want the first byte replayed, then the rest", got, err)
	}
	c.Close()

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_ = hold.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := hold.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("the held connection after Close: %v, want EOF", err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
}

// A replayed TLS connection keeps its TLS state.
func TestReplayKeepsTLSState(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, ok := Replay(a, nil).(interface{ ConnectionState() tls.ConnectionState }); ok {
		t.Fatal("a plaintext connection has a TLS state")
	}
	if _, ok := Replay(tls.Client(a, &tls.Config{}), nil).(interface{ ConnectionState() tls.ConnectionState }); !ok {
		t.Fatal("a TLS connection lost its state")
	}
}
