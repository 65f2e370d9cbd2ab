package raftnode

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/tlsutil"
	"github.com/cairn-kv/cairn/proto/peerpb"
)

// TestPeerTransportTLS: raft messages reach a peer whose https:// listener requires
// client certificates when the sender dials with the peer TLS config; DialPeer verifies
// the peer's certificate (refused without the CA), and does not talk plaintext to it.
func TestPeerTransportTLS(t *testing.T) {
	info, err := tlsutil.SelfCert(nil, filepath.Join(t.TempDir(), "peer"), []string{"127.0.0.1:0"}, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	srvInfo := info
	srvInfo.TrustedCAFile = info.CertFile // the self-signed certificate is its own CA
	srvInfo.ClientCertAuth = true
	srvCfg, err := srvInfo.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	cliInfo := info
	cliInfo.SelfCert = false // verify the server against TrustedCAFile
	cliInfo.TrustedCAFile = info.CertFile
	cliCfg, err := cliInfo.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}

	recv := NewPeerTransport(zaptest.NewLogger(t), 2, testClusterID, nil)
	defer recv.Stop()
	got := make(chan *raftpb.Message, 16)
	recv.SetHandler(func(_ context.Context, m *raftpb.Message) error { got <- m; return nil }, func(uint64) {})
	// The sender is a member, and its certificate is valid for its peer URL's host.
	recv.AddPeer(1, []string{"https://127.0.0.1:1"})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := servePeerListener(recv, tlsutil.Listener(l, srvCfg, nil))
	defer srv.Stop()
	url := "https://" + l.Addr().String()

	send := NewPeerTransport(zaptest.NewLogger(t), 1, testClusterID, cliCfg)
	defer send.Stop()
	send.SetHandler(func(context.Context, *raftpb.Message) error { return nil }, func(uint64) {})
	send.AddPeer(2, []string{url})
	send.Send([]*raftpb.Message{{Type: raftpb.MsgHeartbeat.Enum(), From: proto.Uint64(1), To: proto.Uint64(2), Term: proto.Uint64(7)}})
	select {
	case m := <-got:
		if m.GetTerm() != 7 {
			t.Fatalf("received %v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message over the TLS peer stream within 10s")
	}

	probe := func(u string, cfg *tls.Config) error {
		cc, err := DialPeer(u, cfg, time.Second, time.Second)
		if err != nil {
			return err
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err = peerpb.NewPeerClient(cc).Probe(ctx, &peerpb.Empty{})
		return err
	}
	if err := probe(url, cliCfg); err != nil {
		t.Fatalf("probe with the peer TLS config: %v", err)
	}
	noCA := cliCfg.Clone()
	noCA.RootCAs = x509.NewCertPool()
	if err := probe(url, noCA); err == nil {
		t.Fatal("DialPeer accepted a peer certificate it cannot verify")
	}
	if err := probe("http://"+l.Addr().String(), nil); err == nil {
		t.Fatal("plaintext probe answered by a TLS peer port")
	}
}
