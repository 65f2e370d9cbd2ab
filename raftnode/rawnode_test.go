package raftnode

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// chanTransport hands every message sent to a channel.
type chanTransport chan *raftpb.Message

func (c chanTransport) Send(msgs []*raftpb.Message) {
	for _, m := range msgs {
		c <- m
	}
}

// startFollower starts member 2 of {1, 2}, which never campaigns during a test.
func startFollower(t *testing.T) (*Node, chanTransport) {
	t.Helper()
	cfg := testConfig(t, t.TempDir())
	cfg.ID = 2
	cfg.ElectionTicks = 1000
	cfg.Peers = []raft.Peer{{ID: 1}, {ID: 2}}
	sent := make(chanTransport, 64)
	cfg.Transport = sent
	n, err := Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	go applyConfChanges(n)
	return n, sent
}

func heartbeatFrom1(term uint64) *raftpb.Message {
	typ := raftpb.MsgHeartbeat
	return &raftpb.Message{Type: &typ, From: proto.Uint64(1), To: proto.Uint64(2), Term: proto.Uint64(term)}
}

// A proposal made while no leader is known waits for one (raft itself would drop it),
// until its context ends; once a leader is known it is forwarded there.
func TestProposalWaitsForLeader(t *testing.T) {
	n, sent := startFollower(t)
	defer n.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := n.Propose(ctx, []byte("early")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("proposal without a leader returned %v, want it to wait until its deadline", err)
	}

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- n.Propose(ctx, []byte("waiting"))
	}()
	select {
	case err := <-done:
		t.Fatalf("proposal returned %v before any leader was known", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := n.Step(context.Background(), heartbeatFrom1(2)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("proposal once the leader is known: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("proposal still waiting after the leader became known")
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-sent:
			if m.GetType() == raftpb.MsgProp && m.GetTo() == 1 && string(m.GetEntries()[0].GetData()) == "waiting" {
				return
			}
		case <-deadline:
			t.Fatal("the proposal was not forwarded to the leader")
		}
	}
}

// Messages raft.Node's Step ignored are ignored still: a response from a member raft
// does not track, a message type only raft itself may create. Once stopped, nothing is
// stepped.
func TestStepIgnoresForeignMessagesAndStops(t *testing.T) {
	n, _ := startFollower(t)
	resp, hup := raftpb.MsgAppResp, raftpb.MsgHup
	for _, m := range []*raftpb.Message{
		{Type: &resp, From: proto.Uint64(9), To: proto.Uint64(2), Term: proto.Uint64(1)},
		{Type: &hup, From: proto.Uint64(1), To: proto.Uint64(2)},
	} {
		if err := n.Step(context.Background(), m); err != nil {
			t.Errorf("step %v: %v, want it ignored", m.GetType(), err)
		}
	}
	if st := n.Status(); st.RaftState != raft.StateFollower || st.GetTerm() > 1 {
		t.Fatalf("after ignored messages the member is %v at term %d", st.RaftState, st.GetTerm())
	}
	n.Stop()
	if err := n.Step(context.Background(), heartbeatFrom1(2)); !errors.Is(err, raft.ErrStopped) {
		t.Fatalf("step after Stop: %v, want %v", err, raft.ErrStopped)
	}
	if err := n.Propose(context.Background(), []byte("late")); !errors.Is(err, raft.ErrStopped) {
		t.Fatalf("propose after Stop: %v, want %v", err, raft.ErrStopped)
	}
}
