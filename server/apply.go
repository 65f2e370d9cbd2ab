package server

import (
	"fmt"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/raftnode"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// applyLoop applies committed entries in log order, the only writer of the store.
// It also makes the snapshots sent to followers, between batches.
func (s *Server) applyLoop() {
	defer close(s.donec)
	for {
		select {
		case ap, ok := <-s.node.Apply():
			if !ok {
				if err := s.node.Err(); err != nil {
					s.lg.Error("raft stopped", zap.Error(err))
					go s.Stop()
				}
				return
			}
			if err := s.applyBatch(ap); err != nil {
				s.lg.Error("failed to apply; stopping member", zap.Error(err))
				go s.Stop()
				return
			}
		case req := <-s.snapshotRequests:
			s.serveSnapshotRequest(req)
		}
	}
}

func (s *Server) applyBatch(ap raftnode.Apply) error {
	if ap.Snapshot != nil {
		if err := s.installSnapshot(ap.Snapshot); err != nil {
			return err
		}
	}
	for _, e := range ap.Entries {
		if err := s.applyEntry(e); err != nil {
			return fmt.Errorf("entry %d: %w", e.GetIndex(), err)
		}
	}
	if len(ap.Entries) == 0 {
		s.maybeReady()
		return nil
	}
	// Entries up to storeIndex were already in the store (replayed after a restart, or
	// covered by the db that came with a snapshot): applied may be past them already.
	last := ap.Entries[len(ap.Entries)-1].GetIndex()
	if last > s.applied.Load() {
		s.applied.Store(last)
		s.appliedW.trigger(last)
	}
	s.maybeReady()
	if last > s.storeIndex {
		s.maybeSnapshot(last)
	}
	return nil
}

func (s *Server) applyEntry(e *raftpb.Entry) error {
	switch e.GetType() {
	case raftpb.EntryNormal:
		return s.applyNormal(e)
	case raftpb.EntryConfChange:
		var cc raftpb.ConfChange
		if err := proto.Unmarshal(e.Data, &cc); err != nil {
			return fmt.Errorf("server: decode conf change at %d: %w", e.Index, err)
		}
		return s.applyConfChange(e, &cc)
	case raftpb.EntryConfChangeV2:
		var cc raftpb.ConfChangeV2
		if err := proto.Unmarshal(e.Data, &cc); err != nil {
			return fmt.Errorf("server: decode conf change at %d: %w", e.Index, err)
		}
		s.node.ApplyConfChange(&cc)
		if e.GetIndex() <= s.storeIndex {
			return nil
		}
		s.store.SetConsistentIndex(e.GetIndex(), e.GetTerm())
		return nil
	}
	return fmt.Errorf("server: unknown entry type %v at %d", e.GetType(), e.GetIndex())
}

// replayNormal handles an entry the store already has: only the in-memory membership,
// rebuilt from the snapshot's, still needs the attributes members published.
func (s *Server) replayNormal(e *raftpb.Entry) error {
	if !s.replayMembership || len(e.Data) == 0 {
		return nil
	}
	var r pb.InternalRaftRequest
	if err := proto.Unmarshal(e.Data, &r); err != nil {
		return fmt.Errorf("server: decode request at %d: %w", e.GetIndex(), err)
	}
	if a := r.MemberAttributes; a != nil {
		s.members.setAttributes(a.MemberId, a.Name, a.ClientUrls)
	}
	return nil
}

func (s *Server) applyNormal(e *raftpb.Entry) error {
	if e.GetIndex() <= s.storeIndex {
		return s.replayNormal(e)
	}
	if len(e.Data) == 0 { // a new leader's empty entry
		s.store.SetConsistentIndex(e.GetIndex(), e.GetTerm())
		return nil
	}
	var r pb.InternalRaftRequest
	if err := proto.Unmarshal(e.Data, &r); err != nil {
		return fmt.Errorf("server: decode request at %d: %w", e.Index, err)
	}
	if err := s.refusedByAlarm(&r); err != nil {
		s.store.SetConsistentIndex(e.GetIndex(), e.GetTerm())
		s.proposals.trigger(r.Id, applyResult{err: err})
		return nil
	}
	var res applyResult
	switch {
	case r.Alarm != nil:
		res = s.applyAlarm(r.Alarm, e.GetIndex(), e.GetTerm())
	case r.Put != nil, r.DeleteRange != nil, r.Txn != nil:
		v := s.newWriteView()
		switch {
		case r.Put != nil:
			prev, err := s.checkPut(v, r.Put)
			if err != nil {
				res.err = err
			} else {
				res.resp = executePut(v, r.Put, prev)
			}
		case r.DeleteRange != nil:
			res.resp = executeDeleteRange(v, r.DeleteRange)
		default:
			res.resp, res.err = s.executeTxn(v, r.Txn)
		}
		// End also hands the events to the watch hub.
		v.tw.End(e.GetIndex(), e.GetTerm())
	case r.Compaction != nil:
		res.compacted, res.err = s.store.Compact(r.Compaction.Revision)
		if res.err == nil {
			res.resp = &pb.CompactionResponse{Header: &pb.ResponseHeader{Revision: s.store.Rev()}}
		}
		s.store.SetConsistentIndex(e.GetIndex(), e.GetTerm())
	case r.MemberAttributes != nil:
		res = s.applyMemberAttributes(r.MemberAttributes, e.GetIndex(), e.GetTerm())
	case r.LeaseGrant != nil:
		res = s.applyLeaseGrant(r.LeaseGrant, e.GetIndex(), e.GetTerm())
	case r.LeaseRevoke != nil:
		res = s.applyLeaseRevoke(r.LeaseRevoke, e.GetIndex(), e.GetTerm())
	case r.LeaseCheckpoint != nil:
		res = s.applyLeaseCheckpoint(r.LeaseCheckpoint, e.GetIndex(), e.GetTerm())
	default:
		res.err = ErrNotImplemented
		s.store.SetConsistentIndex(e.GetIndex(), e.GetTerm())
	}
	s.proposals.trigger(r.Id, res)
	return nil
}

// maybeSnapshot takes a raft snapshot every SnapshotCount applied entries. The store is
// committed first, so the snapshot never stands for state that is not on disk.
func (s *Server) maybeSnapshot(applied uint64) {
	if applied-s.snapIndex <= s.cfg.SnapshotCount {
		return
	}
	if err := s.store.Commit(); err != nil {
		s.lg.Error("failed to commit backend before snapshot", zap.Error(err))
		return
	}
	if err := s.node.Snapshot(applied, s.members.marshalSnapshot()); err != nil {
		s.lg.Error("failed to snapshot", zap.Error(err))
		return
	}
	s.snapIndex = applied
}
