package raftnode

import (
	"fmt"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// handleReady persists one Ready (snapshot, entries, hard state), sends its messages (a
// leader's while it writes, a follower's once durable) and hands committed entries to
// the apply loop (those already in the WAL before the write).
func (n *Node) handleReady(rd raft.Ready) error {
	if rd.SoftState != nil {
		n.lead.Store(rd.SoftState.Lead)
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		n.term.Store(rd.HardState.GetTerm())
	}
	if len(rd.ReadStates) > 0 {
		n.publishReadState(rd.ReadStates[len(rd.ReadStates)-1])
	}
	// The leader may send while it writes its own log (raft thesis 10.2.1): a quorum still
	// needs the followers' fsyncs. A follower's messages acknowledge what this Ready
	// persists (MsgAppResp, votes), so they go only once it is durable.
	leading := n.lead.Load() == n.id
	if leading {
		n.send(rd.Messages)
	}
	var ap Apply
	if !raft.IsEmptySnap(rd.Snapshot) {
		// The db file came first (ReceiveSnapshot saves it before raft sees the
		// message); without it the snapshot would stand for state nobody has.
		index := rd.Snapshot.GetMetadata().GetIndex()
		if _, err := n.snapshotter.DBPath(index); err != nil {
			return fmt.Errorf("raftnode: install snapshot %d: %w", index, err)
		}
		ap.Snapshot = rd.Snapshot
	}
	// Committed entries the WAL already holds (from earlier Readies) go to the apply loop
	// before this Ready is written, so applying them overlaps the write; those durable
	// only once it is written (a lone member's own) go after. Not with a snapshot, which
	// must be installed before them.
	committed := rd.CommittedEntries
	if ap.Snapshot == nil {
		// An index this Ready writes again (a follower's log overwritten by a new
		// leader's) holds other data in the WAL until the write: held back as well.
		held := n.durable
		if len(rd.Entries) > 0 {
			held = min(held, rd.Entries[0].GetIndex()-1)
		}
		i := 0
		for i < len(committed) && committed[i].GetIndex() <= held {
			i++
		}
		if i > 0 {
			n.committed.Store(committed[i-1].GetIndex())
			if err := n.deliver(Apply{Entries: committed[:i]}); err != nil {
				return err
			}
			committed = committed[i:]
		}
	}
	if rd.MustSync {
		n.syncWrite(true)
	}
	err := n.untilSpace(func() error { return n.persist(rd) })
	if rd.MustSync {
		n.syncWrite(false)
	}
	if err != nil {
		return err
	}
	if ap.Snapshot != nil {
		n.durable = ap.Snapshot.GetMetadata().GetIndex()
	}
	if len(rd.Entries) > 0 {
		n.durable = rd.Entries[len(rd.Entries)-1].GetIndex()
	}
	if ap.Snapshot != nil {
		if err := n.storage.ApplySnapshot(ap.Snapshot); err != nil {
			return fmt.Errorf("raftnode: apply snapshot to storage: %w", err)
		}
		n.committed.Store(max(n.committed.Load(), ap.Snapshot.GetMetadata().GetIndex()))
		n.lg.Info("installed snapshot from the leader",
			zap.Uint64("snapshot-index", ap.Snapshot.GetMetadata().GetIndex()),
			zap.Uint64("snapshot-term", ap.Snapshot.GetMetadata().GetTerm()))
	}
	if err := n.storage.Append(rd.Entries); err != nil {
		return fmt.Errorf("raftnode: append to storage: %w", err)
	}
	if !leading {
		n.send(rd.Messages)
	}
	if len(committed) > 0 {
		n.committed.Store(committed[len(committed)-1].GetIndex())
		ap.Entries = committed
	}
	if ap.Snapshot != nil || len(ap.Entries) > 0 {
		return n.deliver(ap)
	}
	return nil
}

// deliver hands ap to the apply loop.
func (n *Node) deliver(ap Apply) error {
	var confs uint64
	for _, e := range ap.Entries {
		if t := e.GetType(); t == raftpb.EntryConfChange || t == raftpb.EntryConfChangeV2 {
			confs++
		}
	}
	n.confDelivered.Add(confs) // before the apply loop can hand any of them back
	select {
	case n.applyc <- ap:
		return nil
	case <-n.stopc:
		return errStopped
	}
}

// persist makes a Ready's snapshot, entries and hard state durable. A snapshot goes
// first: a restart then finds its mark (and the db file, which stays until the store took
// it) before the log after it.
func (n *Node) persist(rd raft.Ready) error {
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := n.saveSnapshot(rd.Snapshot); err != nil {
			return err
		}
	}
	n.walMu.Lock()
	err := n.wal.Save(rd.HardState, rd.Entries)
	n.walMu.Unlock()
	if err != nil {
		return fmt.Errorf("raftnode: save to wal: %w", err)
	}
	return nil
}
