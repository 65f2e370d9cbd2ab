package raftnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/internal/tlsutil"
	"github.com/cairn-kv/cairn/proto/peerpb"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const testClusterID = 0xc1a5

type testMember struct {
	id   uint64
	url  string
	node *Node
	tr   *PeerTransport
	srv  *grpc.Server

	mu      sync.Mutex
	applied []string // data of the normal entries applied, in order
	applyWG sync.WaitGroup
	stopped bool
}

func (m *testMember) appliedData() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.applied)
}

// applyLoop plays the server's apply loop: conf changes go back to raft, normal entries
// are recorded.
func (m *testMember) applyLoop() {
	defer m.applyWG.Done()
	for ap := range m.node.Apply() {
		for _, e := range ap.Entries {
			switch e.GetType() {
			case raftpb.EntryConfChange:
				var cc raftpb.ConfChange
				if err := proto.Unmarshal(e.Data, &cc); err == nil {
					m.node.ApplyConfChange(&cc)
				}
			case raftpb.EntryConfChangeV2:
				var cc raftpb.ConfChangeV2
				if err := proto.Unmarshal(e.Data, &cc); err == nil {
					m.node.ApplyConfChange(&cc)
				}
			case raftpb.EntryNormal:
				if len(e.Data) > 0 {
					m.mu.Lock()
					m.applied = append(m.applied, string(e.Data))
					m.mu.Unlock()
				}
			}
		}
	}
}

func (m *testMember) stop() {
	if m.stopped {
		return
	}
	m.stopped = true
	m.node.Stop()
	m.tr.Stop()
	m.srv.Stop()
	m.applyWG.Wait()
}

func startTestCluster(t *testing.T, size int) []*testMember {
	t.Helper()
	lg := zaptest.NewLogger(t)
	var peers []raft.Peer
	members := make([]*testMember, size)
	lis := make([]net.Listener, size)
	for i := range members {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis[i] = l
		id := uint64(i + 1)
		members[i] = &testMember{id: id, url: "http://" + l.Addr().String()}
		peers = append(peers, raft.Peer{ID: id})
	}
	for i, m := range members {
		mlg := lg.Named(fmt.Sprint("m", m.id))
		m.tr = NewPeerTransport(mlg, m.id, testClusterID, nil)
		for _, o := range members {
			m.tr.AddPeer(o.id, []string{o.url}) // its own id is ignored
		}
		dir := t.TempDir()
		n, err := Start(Config{
			Logger:         mlg,
			ID:             m.id,
			TickInterval:   10 * time.Millisecond,
			ElectionTicks:  10,
			HeartbeatTicks: 1,
			WALDir:         filepath.Join(dir, "wal"),
			SnapDir:        filepath.Join(dir, "snap"),
			Metadata:       []byte("meta"),
			Peers:          peers,
			Transport:      m.tr,
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		m.node = n
		m.tr.SetHandler(n.Step, n.ReportUnreachable)
		m.srv = servePeerListener(m.tr, lis[i])
		m.applyWG.Add(1)
		go m.applyLoop()
	}
	t.Cleanup(func() {
		for _, m := range members {
			m.stop()
		}
	})
	return members
}

// waitLeader waits until every member in ms sees the same leader, one of ms.
func waitLeader(t *testing.T, ms []*testMember) *testMember {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		lead := ms[0].node.Leader()
		agree := lead != 0
		for _, m := range ms[1:] {
			agree = agree && m.node.Leader() == lead
		}
		if agree {
			for _, m := range ms {
				if m.id == lead {
					return m
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	var leads []uint64
	for _, m := range ms {
		leads = append(leads, m.node.Leader())
	}
	t.Fatalf("no agreed leader among members: %v", leads)
	return nil
}

// proposeRetry proposes through m, retrying while raft drops proposals for want of a leader.
func proposeRetry(t *testing.T, m *testMember, data string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := m.node.Propose(ctx, []byte(data))
		cancel()
		if err == nil {
			return
		}
		if !errors.Is(err, raft.ErrProposalDropped) || time.Now().After(deadline) {
			t.Fatalf("propose %q on member %d: %v", data, m.id, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitApplied waits until every member in ms has applied exactly want.
func waitApplied(t *testing.T, ms []*testMember, want []string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		done := true
		for _, m := range ms {
			got := m.appliedData()
			if len(got) > len(want) || !slices.Equal(got, want[:len(got)]) {
				t.Fatalf("member %d applied %v, want %v", m.id, got, want)
			}
			done = done && len(got) == len(want)
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			for _, m := range ms {
				t.Logf("member %d applied %v", m.id, m.appliedData())
			}
			t.Fatalf("timed out waiting for %v", want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPeerTransportThreeMembers(t *testing.T) {
	ms := startTestCluster(t, 3)
	leader := waitLeader(t, ms)

	var follower *testMember
	for _, m := range ms {
		if m != leader {
			follower = m
			break
		}
	}
	want := []string{"a", "b", "c"}
	for _, d := range want {
		proposeRetry(t, follower, d) // raft forwards it to the leader
	}
	waitApplied(t, ms, want)

	// Lose the leader: the other two elect a new one and keep committing.
	leader.stop()
	var rest []*testMember
	for _, m := range ms {
		if m != leader {
			rest = append(rest, m)
		}
	}
	newLeader := waitLeader(t, rest)
	if newLeader.id == leader.id {
		t.Fatalf("old leader %d still leads", leader.id)
	}
	for _, d := range []string{"d", "e"} {
		proposeRetry(t, rest[0], d)
		want = append(want, d)
	}
	waitApplied(t, rest, want)

	// A stranger from another cluster is refused, and says so.
	target := rest[0]
	conn, err := grpc.NewClient(strings.TrimPrefix(target.url, "http://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hb, _ := proto.Marshal(&raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: proto.Uint64(9), To: proto.Uint64(target.id)})
	for _, tc := range []struct {
		env  *peerpb.Envelope
		want string
	}{
		{&peerpb.Envelope{ClusterId: testClusterID + 1, From: 9, To: target.id, Messages: [][]byte{hb}}, "peer: cluster ID mismatch"},
		{&peerpb.Envelope{ClusterId: testClusterID, From: 9, To: target.id + 100, Messages: [][]byte{hb}}, "peer: member ID mismatch"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := peerpb.NewPeerClient(conn).Send(ctx)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		_ = st.Send(tc.env)
		_, err = st.CloseAndRecv()
		cancel()
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("envelope %v: got %v, want FailedPrecondition %q", tc.env, err, tc.want)
		}
	}

	// The same through a transport of the wrong cluster: the sender sees the peer as
	// unreachable, the cluster is unaffected.
	stranger := NewPeerTransport(zaptest.NewLogger(t), 9, testClusterID+1, nil)
	defer stranger.Stop()
	var unreachable atomic.Int32
	stranger.SetHandler(func(context.Context, *raftpb.Message) error { return nil },
		func(id uint64) {
			if id == target.id {
				unreachable.Add(1)
			}
		})
	stranger.AddPeer(target.id, []string{target.url})
	stranger.Send([]*raftpb.Message{{Type: raftpb.MsgHeartbeat.Enum(), From: proto.Uint64(9), To: proto.Uint64(target.id)}})
	deadline := time.Now().Add(5 * time.Second)
	for unreachable.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("stranger never saw the peer as unreachable")
		}
		time.Sleep(10 * time.Millisecond)
	}
	proposeRetry(t, rest[1], "f")
	waitApplied(t, rest, append(want, "f"))
}

func TestPeerTransportSendNeverBlocks(t *testing.T) {
	// A peer nobody listens on: the queue fills, the rest is dropped and reported.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	tr := NewPeerTransport(zaptest.NewLogger(t), 1, testClusterID, nil)
	defer tr.Stop()
	var unreachable atomic.Int32
	tr.SetHandler(func(context.Context, *raftpb.Message) error { return nil },
		func(id uint64) { unreachable.Add(1) })
	tr.AddPeer(2, []string{"http://" + addr})
	tr.AddPeer(2, []string{"http://" + addr}) // idempotent

	msgs := make([]*raftpb.Message, 2*peerQueueSize)
	for i := range msgs {
		msgs[i] = &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: proto.Uint64(1), To: proto.Uint64(2)}
	}
	msgs = append(msgs, &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: proto.Uint64(1), To: proto.Uint64(7)}) // unknown peer
	start := time.Now()
	tr.Send(msgs)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Send took %v", d)
	}
	if unreachable.Load() == 0 {
		t.Fatal("a full queue was not reported")
	}
	tr.RemovePeer(2)
	tr.Send(msgs[:1]) // to a removed peer: dropped
}

// A member without a leader holds proposals in raft.Step (it blocks until its context
// ends). A proposal a follower forwarded must not stall the stream it came on: the
// heartbeats behind it are what gives the member its leader back.
func TestPeerTransportForwardedProposalDoesNotStallStream(t *testing.T) {
	recv := NewPeerTransport(zaptest.NewLogger(t), 2, testClusterID, nil)
	defer recv.Stop()
	heartbeats := make(chan struct{}, 16)
	proposalDeadline := make(chan bool, 16)
	recv.SetHandler(func(ctx context.Context, m *raftpb.Message) error {
		if m.GetType() == raftpb.MsgProp {
			_, ok := ctx.Deadline()
			proposalDeadline <- ok
			<-ctx.Done() // no leader: raft holds the proposal
			return ctx.Err()
		}
		heartbeats <- struct{}{}
		return nil
	}, func(uint64) {})
	_, url := servePeerTransport(t, recv)

	send := newTestSender(t)
	send.AddPeer(2, []string{url})
	send.Send([]*raftpb.Message{
		{Type: raftpb.MsgProp.Enum(), From: proto.Uint64(1), To: proto.Uint64(2), Entries: []*raftpb.Entry{{Data: []byte("x")}}},
		{Type: raftpb.MsgHeartbeat.Enum(), From: proto.Uint64(1), To: proto.Uint64(2)},
	})
	select {
	case <-heartbeats:
	case <-time.After(3 * time.Second):
		t.Fatal("the heartbeat behind a held proposal was not delivered")
	}
	select {
	case ok := <-proposalDeadline:
		if !ok {
			t.Fatal("a forwarded proposal was stepped without a deadline")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the forwarded proposal never reached the handler")
	}
}

// A peer raft has nothing to send to still counts as reachable once the link works (the
// idle probe), and stops counting when it goes away.
func TestPeerTransportActiveSinceWithoutTraffic(t *testing.T) {
	recv := NewPeerTransport(zaptest.NewLogger(t), 2, testClusterID, nil)
	defer recv.Stop()
	recv.SetHandler(func(context.Context, *raftpb.Message) error { return nil }, func(uint64) {})
	srv, url := servePeerTransport(t, recv)

	send := newTestSender(t)
	if !send.ActiveSince(2).IsZero() {
		t.Fatal("an unknown peer is active")
	}
	send.AddPeer(2, []string{url})
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("an idle but working link never counted as active", func() bool { return !send.ActiveSince(2).IsZero() })
	srv.Stop()
	waitFor("a peer that went away still counts as active", func() bool { return send.ActiveSince(2).IsZero() })
}

// A member the others removed learns it from the first peer that refuses it, even
// though it never applied its own removal.
func TestPeerTransportRemovedMemberIsTold(t *testing.T) {
	recv := NewPeerTransport(zaptest.NewLogger(t), 2, testClusterID, nil)
	defer recv.Stop()
	recv.SetHandler(func(context.Context, *raftpb.Message) error { return nil }, func(uint64) {})
	recv.SetRemovedHandlers(func(id uint64) bool { return id == 1 }, func() {})
	_, url := servePeerTransport(t, recv)

	send := newTestSender(t)
	told := make(chan struct{}, 4)
	send.SetRemovedHandlers(func(uint64) bool { return false }, func() { told <- struct{}{} })
	send.AddPeer(2, []string{url})
	select {
	case <-told:
	case <-time.After(5 * time.Second):
		t.Fatal("the removed member was never told")
	}
}

// servePeerTransport serves tr's peer service on a free 127.0.0.1 port until the test
// ends, and returns the server and the peer URL.
func servePeerTransport(t *testing.T, tr *PeerTransport) (*grpc.Server, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := servePeerListener(tr, l)
	t.Cleanup(srv.Stop)
	// Member 1 (newTestSender) is a member of tr's cluster: tr takes its streams.
	tr.AddPeer(1, nil)
	return srv, "http://" + l.Addr().String()
}

// servePeerListener serves tr on l as a member does: its direct streams and a gRPC
// server with its peer service, which it returns.
func servePeerListener(tr *PeerTransport, l net.Listener) *grpc.Server {
	srv := grpc.NewServer(grpc.Creds(tlsutil.ServerCredentials()), PeerServerOption())
	tr.Register(srv)
	go func() { _ = srv.Serve(tr.SplitListener(l, MaxPeerMessageBytes(1<<20))) }()
	return srv
}

// newTestSender is member 1's transport, which ignores what it receives.
func newTestSender(t *testing.T) *PeerTransport {
	send := NewPeerTransport(zaptest.NewLogger(t), 1, testClusterID, nil)
	t.Cleanup(send.Stop)
	send.SetHandler(func(context.Context, *raftpb.Message) error { return nil }, func(uint64) {})
	return send
}

// The round trip to each peer is measured from the start, as etcd's
// etcd_network_peer_round_trip_time_seconds.
func TestPeerTransportMeasuresRoundTrip(t *testing.T) {
	recv := NewPeerTransport(zaptest.NewLogger(t), 2, testClusterID, nil)
	defer recv.Stop()
	_, url := servePeerTransport(t, recv)
	send := newTestSender(t)
	before := histogramCount(t, "2")
	send.AddPeer(2, []string{url})
	deadline := time.Now().Add(10 * time.Second)
	for histogramCount(t, "2") == before {
		if time.Now().After(deadline) {
			t.Fatal("no round trip measured within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// histogramCount is how many round trips to peer have been observed.
func histogramCount(t *testing.T, peer string) uint64 {
	t.Helper()
	var m dto.Metric
	if err := peerRoundTrip.WithLabelValues(peer).(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}
