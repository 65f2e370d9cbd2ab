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

// recordingReceiver is member 2's transport, which member 1 may send to: what it
// receives goes to the channel. It listens on the listener it returns, whose serving is
// left to the test.
func recordingReceiver(t *testing.T) (*PeerTransport, <-chan *raftpb.Message, net.Listener) {
	t.Helper()
	recv := NewPeerTransport(zaptest.NewLogger(t), 2, testClusterID, nil)
	t.Cleanup(recv.Stop)
	got := make(chan *raftpb.Message, 16)
	recv.SetHandler(func(_ context.Context, m *raftpb.Message) error { got <- m; return nil }, func(uint64) {})
	recv.AddPeer(1, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return recv, got, l
}

// sendHeartbeats sends member 2 at addr a heartbeat of each term from a new member 1,
// one Send each, and checks they all arrive, in order.
func sendHeartbeats(t *testing.T, addr string, got <-chan *raftpb.Message, terms ...uint64) {
	t.Helper()
	send := newTestSender(t)
	send.AddPeer(2, []string{"http://" + addr})
	for _, term := range terms {
		send.Send([]*raftpb.Message{{Type: raftpb.MsgHeartbeat.Enum(), From: proto.Uint64(1), To: proto.Uint64(2), Term: proto.Uint64(term)}})
	}
	for _, term := range terms {
		select {
		case m := <-got:
			if m.GetTerm() != term {
				t.Fatalf("the heartbeat of term %d arrived where %d was due", m.GetTerm(), term)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the heartbeat of term %d did not arrive within 10s", term)
		}
	}
}

// Raft messages go on direct streams: with nobody serving the peer port's gRPC side,
// they still arrive, in order.
func TestDirectStreamCarriesRaftMessages(t *testing.T) {
	recv, got, l := recordingReceiver(t)
	grpcSide := recv.SplitListener(l, MaxPeerMessageBytes(1<<20)) // never served
	defer grpcSide.Close()
	sendHeartbeats(t, l.Addr().String(), got, 1, 2, 3)
}

// A member whose peer port serves only the gRPC stream (one without direct streams)
// still gets every message: its peers fall back to it.
func TestDirectStreamFallsBackToGRPC(t *testing.T) {
	recv, got, l := recordingReceiver(t)
	srv := grpc.NewServer(PeerServerOption())
	recv.Register(srv)
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()
	sendHeartbeats(t, l.Addr().String(), got, 4, 5)
}

// An envelope larger than the peer port's bound is refused before it is read.
func TestDirectStreamRefusesOversizedEnvelope(t *testing.T) {
	recv, got, l := recordingReceiver(t)
	split := recv.SplitListener(l, 1024)
	defer split.Close()

	env := &peerpb.Envelope{ClusterId: testClusterID, From: 1, To: 2, Messages: [][]byte{make([]byte, 2048)}}
	err := sendEnvelope(t, "direct", l.Addr().String(), nil, env)
	if s := status.Convert(err); s.Code() != codes.ResourceExhausted || !strings.Contains(s.Message(), "larger than the 1024 allowed") {
		t.Fatalf("%v, want ResourceExhausted", err)
	}
	if len(got) != 0 {
		t.Fatal("a message of the refused envelope reached raft")
	}
}
