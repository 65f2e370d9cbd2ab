package raftnode

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The callers' goroutines (gRPC handlers, peer stream readers, the apply loop) step
// raft's RawNode themselves, under n.mu, and wake the Ready loop; raft.Node would hand
// each step to a goroutine of its own, and each Ready from there to the Ready loop: two
// goroutine switches where this has one, for every proposal and every peer message.
// What raft.Node did besides, these keep: a proposal waits while no leader is known,
// messages from unknown peers and local message types from the network are ignored,
// and nothing is stepped once the node stopped.

// startRaft creates the RawNode; a new member's (fresh) bootstraps its initial peers.
func (n *Node) startRaft(rc *raft.Config, fresh bool, peers []raft.Peer) error {
	rn, err := raft.NewRawNode(rc)
	if err != nil {
		return fmt.Errorf("raftnode: start raft: %w", err)
	}
	if fresh && len(peers) > 0 {
		if err := rn.Bootstrap(peers); err != nil {
			return fmt.Errorf("raftnode: bootstrap raft: %w", err)
		}
	}
	n.rn = rn
	return nil
}

// wake tells the Ready loop that raft may have a Ready; it never blocks.
func (n *Node) wake() {
	select {
	case n.wakec <- struct{}{}:
	default:
	}
}

// stopped says whether Stop was called or the Ready loop ended.
func (n *Node) stopped() bool {
	select {
	case <-n.stopc:
		return true
	case <-n.donec:
		return true
	default:
		return false
	}
}

// withRaft runs f on the RawNode under n.mu and wakes the Ready loop; raft.ErrStopped
// once the node stopped.
func (n *Node) withRaft(f func(rn *raft.RawNode) error) error {
	if n.stopped() {
		return raft.ErrStopped
	}
	n.mu.Lock()
	err := f(n.rn)
	n.mu.Unlock()
	n.wake()
	return err
}

// ready takes raft's next Ready, if it has one, for the Ready loop.
func (n *Node) ready() (raft.Ready, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.rn.HasReady() {
		return raft.Ready{}, false
	}
	return n.rn.Ready(), true
}

// advance tells raft the last Ready is handled, and lets proposals waiting for a leader
// go once one is known.
func (n *Node) advance() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rn.Advance(raft.Ready{})
	n.releaseLeaderWaiters()
}

// tickRaft advances raft's logical clock by one tick.
func (n *Node) tickRaft() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rn.Tick()
	n.releaseLeaderWaiters()
}

// releaseLeaderWaiters lets proposals waiting for a leader go if raft knows one (n.mu
// held). Checked after every Ready and tick, only while some wait: a leader raft learns
// shows in a Ready, and a tick bounds anything the Ready's soft state could miss (a
// leader lost and found again between two Readies).
func (n *Node) releaseLeaderWaiters() {
	if n.leaderWaiters && n.rn.BasicStatus().Lead != raft.None {
		close(n.leaderc)
		n.leaderc = make(chan struct{})
		n.leaderWaiters = false
	}
}

// proposal steps a proposal (f's) for a leader to append, as raft.Node did: while raft
// knows no leader it waits for one, until ctx ends. A proposal raft drops for want of a
// leader (lost since the last Ready) waits too, and is stepped again.
func (n *Node) proposal(ctx context.Context, f func(rn *raft.RawNode) error) error {
	for {
		if n.stopped() {
			return raft.ErrStopped
		}
		n.mu.Lock()
		// The Ready loop's leader, else raft's own (which allocates, so only then).
		if n.lead.Load() != raft.None || n.rn.BasicStatus().Lead != raft.None {
			err := f(n.rn)
			if !errors.Is(err, raft.ErrProposalDropped) || n.rn.BasicStatus().Lead != raft.None {
				n.mu.Unlock()
				n.wake()
				return err
			}
		}
		n.leaderWaiters = true
		leaderc := n.leaderc
		n.mu.Unlock()
		select {
		case <-leaderc:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.stopc:
			return raft.ErrStopped
		case <-n.donec:
			return raft.ErrStopped
		}
	}
}

// Propose appends data to the log through the leader. While no leader is known it waits
// for one, until ctx ends.
func (n *Node) Propose(ctx context.Context, data []byte) error {
	return n.proposal(ctx, func(rn *raft.RawNode) error { return rn.Propose(data) })
}

// ProposeConfChange proposes a membership change through the leader, waiting like
// Propose. Like raft.Node it does not say whether raft took it: the change is known
// proposed only once applied.
func (n *Node) ProposeConfChange(ctx context.Context, cc *raftpb.ConfChange) error {
	err := n.proposal(ctx, func(rn *raft.RawNode) error { return rn.ProposeConfChange(cc) })
	return ignoreStepError(err)
}

// TransferLeadership asks raft to hand leadership from lead to transferee.
func (n *Node) TransferLeadership(_ context.Context, _, transferee uint64) {
	_ = n.withRaft(func(rn *raft.RawNode) error { rn.TransferLeader(transferee); return nil })
}

// ReadIndex asks for the index a linearizable read identified by rctx must wait for.
func (n *Node) ReadIndex(_ context.Context, rctx []byte) error {
	return n.withRaft(func(rn *raft.RawNode) error { rn.ReadIndex(rctx); return nil })
}

// ApplyConfChange applies a committed membership change to raft. The Ready loop it wakes
// checks seekingLeader again, with this change counted back.
func (n *Node) ApplyConfChange(cc raftpb.ConfChangeI) *raftpb.ConfState {
	var cs *raftpb.ConfState
	_ = n.withRaft(func(rn *raft.RawNode) error {
		cs = rn.ApplyConfChange(cc)
		n.confApplied.Add(1)
		return nil
	})
	return cs
}

// Step hands raft a message received from a peer. A proposal forwarded by a follower
// waits for a leader like Propose; a response from a member raft does not track, or a
// message type only raft itself may send, is dropped.
func (n *Node) Step(ctx context.Context, m *raftpb.Message) error {
	if m == nil {
		return errors.New("raftnode: step with nil message")
	}
	if m.GetType() == raftpb.MessageType_MsgProp {
		m.From = proto.Uint64(n.id) // as raft.Node: proposals are stepped as this member's
		return ignoreStepError(n.proposal(ctx, func(rn *raft.RawNode) error { return rn.Step(m) }))
	}
	return ignoreStepError(n.withRaft(func(rn *raft.RawNode) error { return rn.Step(m) }))
}

// ignoreStepError keeps only the errors raft.Node's Step returned: the node stopped, or
// the caller's context ended while a proposal waited for a leader. What raft says of
// the message itself (dropped, unknown sender, local type) it did not pass on.
func ignoreStepError(err error) error {
	if errors.Is(err, raft.ErrStopped) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// ReportUnreachable tells raft that the last send to member id may have been lost.
func (n *Node) ReportUnreachable(id uint64) {
	_ = n.withRaft(func(rn *raft.RawNode) error { rn.ReportUnreachable(id); return nil })
}

// ReportSnapshot tells raft how sending a snapshot to member id ended.
func (n *Node) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	_ = n.withRaft(func(rn *raft.RawNode) error { rn.ReportSnapshot(id, status); return nil })
}

// Status is raft's own view of this node.
func (n *Node) Status() raft.Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rn.Status()
}
