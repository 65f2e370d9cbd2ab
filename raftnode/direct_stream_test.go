package raftnode

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/proto/peerpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// peerProtocols are the two ways raft messages reach a member's peer port.
var peerProtocols = []string{"direct", "grpc"}

// sendEnvelope sends env alone on a new stream of protocol to the peer port at addr
// (TLS with cfg, plaintext if nil), as anyone who can reach the port could, and returns
// the receiver's verdict: nil if it took the envelope, else its refusal.
func sendEnvelope(t *testing.T, protocol, addr string, cfg *tls.Config, env *peerpb.Envelope) error {
	t.Helper()
	b, err := proto.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	if protocol == "grpc" {
		creds := insecure.NewCredentials()
		if cfg != nil {
			creds = credentials.NewTLS(cfg)
		}
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := peerpb.NewPeerClient(cc).Send(ctx)
		if err != nil {
			return err
		}
		if err := st.Send(env); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		_, err = st.CloseAndRecv()
		return err
	}
	var c net.Conn
	if cfg != nil {
		c, err = tls.Dial("tcp", addr, cfg)
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if _, err := io.WriteString(c, directStreamMagic); err != nil {
		return err
	}
	if err := readMagic(r); err != nil {
		t.Fatalf("direct stream not taken: %v", err)
	}
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(b)))
	if _, err := c.Write(append(frame, b...)); err != nil {
		return err
	}
	// The end of our writes is the stream's normal end: the receiver closes without a
	// word if it took the envelope.
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		return err
	}
	if err := readStatus(r); !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Raft messages go on direct streams: with nobody serving the peer port's gRPC side,
// they still arrive, in order.
func TestDirectStreamCarriesRaftMessages(t *testing.T) {
	recv := NewPeerTransport(zaptest.NewLogger(t), 2, testClusterID, nil)
	defer recv.Stop()
	got := make(chan *raftpb.Message, 16)
	recv.SetHandler(func(_ context.Context, m *raftpb.Message) error { got <- m; return nil }, func(uint64) {})
	recv.AddPeer(1, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcSide := recv.SplitListener(l, MaxPeerMessageBytes(1<<20)) // never served
	defer grpcSide.Close()

	send := newTestSender(t)
	send.AddPeer(2, []string{"http://" + l.Addr().String()})
	for term := uint64(1); term <= 3; term++ {
		send.Send([]*raftpb.Message{{Type: raftpb.MsgHeartbeat.Enum(), From: proto.Uint64(1), To: proto.Uint64(2), Term: proto.Uint64(term)}})
	}
	for term := uint64(1); term <= 3; term++ {
		select {
		case m := <-got:
			if m.GetTerm() != term {
				t.Fatalf("message %d: term %d", term, m.GetTerm())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d did not arrive within 10s", term)
		}
	}
}

// A member whose peer port serves only the gRPC stream (one without direct streams)
// still gets every message: its peers fall back to it.
func TestDirectStreamFallsBackToGRPC(t *testing.T) {
	recv := NewPeerTransport(zaptest.NewLogger(t), 2, testClusterID, nil)
	defer recv.Stop()
	got := make(chan *raftpb.Message, 16)
	recv.SetHandler(func(_ context.Context, m *raftpb.Message) error { got <- m; return nil }, func(uint64) {})
	recv.AddPeer(1, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(PeerServerOption())
	recv.Register(srv)
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()

	send := newTestSender(t)
	send.AddPeer(2, []string{"http://" + l.Addr().String()})
	send.Send([]*raftpb.Message{{Type: raftpb.MsgHeartbeat.Enum(), From: proto.Uint64(1), To: proto.Uint64(2), Term: proto.Uint64(4)}})
	select {
	case m := <-got:
		if m.GetTerm() != 4 {
			t.Fatalf("received %v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message over the gRPC stream within 10s")
	}
}

// An envelope larger than the peer port's bound is refused before it is read.
func TestDirectStreamRefusesOversizedEnvelope(t *testing.T) {
	recv := NewPeerTransport(zaptest.NewLogger(t), 2, testClusterID, nil)
	defer recv.Stop()
	recv.SetHandler(func(context.Context, *raftpb.Message) error { return nil }, func(uint64) {})
	recv.AddPeer(1, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(PeerServerOption())
	recv.Register(srv)
	go func() { _ = srv.Serve(recv.SplitListener(l, 1024)) }()
	defer srv.Stop()

	env := &peerpb.Envelope{ClusterId: testClusterID, From: 1, To: 2, Messages: [][]byte{make([]byte, 2048)}}
	err = sendEnvelope(t, "direct", l.Addr().String(), nil, env)
	if s := status.Convert(err); s.Code() != codes.ResourceExhausted || !strings.Contains(s.Message(), "larger than the 1024 allowed") {
		t.Fatalf("%v, want ResourceExhausted", err)
	}
}
