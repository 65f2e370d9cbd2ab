package raftnode

import (
	"fmt"
	"slices"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// ForceNewCluster turns a restarting member's persisted state into a one-member
// cluster's, as etcd's --force-new-cluster does: the entries after the commit index are
// dropped, and conf changes removing every other member (the voters and learners of the
// newest snapshot, as the committed log changes them) and, if self is not a member,
// adding self with selfContext, are appended to the WAL as committed entries of the
// current term. Applying the log then leaves self the only voter, with all its data.
// It returns the ids removed. Call it on p from LoadPersisted, before Start.
func (p *Persisted) ForceNewCluster(lg *zap.Logger, self uint64, selfContext []byte) ([]uint64, error) {
	hs := p.HardState
	if hs == nil {
		hs = &raftpb.HardState{}
	}
	commit := hs.GetCommit()
	if snapIndex := p.Snapshot.GetMetadata().GetIndex(); commit < snapIndex {
		commit = snapIndex
	}
	kept := p.Entries
	for i, e := range p.Entries {
		if e.GetIndex() > commit {
			kept = p.Entries[:i]
			lg.Info("discarding uncommitted WAL entries", zap.Uint64("entry-index", e.GetIndex()),
				zap.Uint64("commit-index-from-wal", commit), zap.Int("number-of-discarded-entries", len(p.Entries)-i))
			break
		}
	}
	ids, err := memberIDs(p.Snapshot, kept)
	if err != nil {
		return nil, err
	}
	var (
		ccs     []*raftpb.ConfChange
		removed []uint64
		found   bool
	)
	for _, id := range ids {
		if id == self {
			found = true
			continue
		}
		removed = append(removed, id)
		ccs = append(ccs, &raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: proto.Uint64(id)})
	}
	if !found {
		ccs = append(ccs, &raftpb.ConfChange{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: proto.Uint64(self), Context: selfContext})
	}
	next := commit + 1
	ents := make([]*raftpb.Entry, 0, len(ccs))
	for _, cc := range ccs {
		data, err := proto.Marshal(cc)
		if err != nil {
			return nil, fmt.Errorf("raftnode: force new cluster: encode conf change: %w", err)
		}
		ents = append(ents, &raftpb.Entry{Type: raftpb.EntryConfChange.Enum(), Term: proto.Uint64(hs.GetTerm()), Index: proto.Uint64(next), Data: data})
		next++
	}
	newHS := proto.Clone(hs).(*raftpb.HardState)
	newHS.Commit = proto.Uint64(next - 1)
	// Durable before raft starts: a crash now restarts from a log that already commits
	// the removals (they replace the dropped uncommitted entries).
	if err := p.WAL.Save(newHS, ents); err != nil {
		return nil, fmt.Errorf("raftnode: force new cluster: save conf changes: %w", err)
	}
	p.Entries = append(slices.Clip(kept), ents...)
	p.HardState = newHS
	lg.Info("forcing restart as a one-member cluster", zap.String("local-member-id", fmt.Sprintf("%x", self)),
		zap.Uint64("commit-index", next-1), zap.Int("removed-members", len(removed)))
	return removed, nil
}

// memberIDs are the raft members (voters and learners) of the snapshot as the conf
// changes in ents change them, sorted.
func memberIDs(s *raftpb.Snapshot, ents []*raftpb.Entry) ([]uint64, error) {
	ids := map[uint64]bool{}
	cs := s.GetMetadata().GetConfState()
	for _, id := range append(slices.Clone(cs.GetVoters()), cs.GetLearners()...) {
		ids[id] = true
	}
	for _, e := range ents {
		if e.GetType() != raftpb.EntryConfChange {
			continue
		}
		var cc raftpb.ConfChange
		if err := proto.Unmarshal(e.Data, &cc); err != nil {
			return nil, fmt.Errorf("raftnode: decode conf change at %d: %w", e.GetIndex(), err)
		}
		switch cc.GetType() {
		case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
			ids[cc.GetNodeId()] = true
		case raftpb.ConfChangeRemoveNode:
			delete(ids, cc.GetNodeId())
		}
	}
	out := make([]uint64, 0, len(ids))
	for id := range ids {
		out = append(out, id)
	}
	slices.Sort(out)
	return out, nil
}
