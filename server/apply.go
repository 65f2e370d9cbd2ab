package server

import (
	"errors"
	"fmt"
	"time"

	"github.com/cairn-kv/cairn/internal/fsutil"
	"github.com/cairn-kv/cairn/mvcc"

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
		s.retention.applied(e)
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

// applyEntry applies one committed entry. Whatever its type, the store sees it in exactly
// one store.Update, which records the entry as applied in the same batch as its changes:
// a restart replays exactly the entries after it. A request that fails changes nothing
// (Update undoes it); only a storage failure stops the member.
func (s *Server) applyEntry(e *raftpb.Entry) error {
	if e.GetIndex() <= s.storeIndex {
		return s.replayEntry(e)
	}
	var (
		apply func(tx *mvcc.WriteTxn) error
		after func() // runs once the store txn has ended: answers the proposer
	)
	switch e.GetType() {
	case raftpb.EntryNormal:
		if len(e.Data) == 0 { // a new leader's empty entry: only recorded
			break
		}
		var r pb.InternalRaftRequest
		if err := r.UnmarshalVT(e.Data); err != nil {
			return fmt.Errorf("server: decode request at %d: %w", e.GetIndex(), err)
		}
		if len(r.Batch) > 0 {
			return s.applyBatched(e, r.Batch)
		}
		var res applyResult
		apply = func(tx *mvcc.WriteTxn) error {
			res = s.applyRequest(tx, &r, e.GetIndex())
			return res.err
		}
		after = func() {
			if res.err == nil && res.done != nil {
				res.done()
			}
			s.proposals.trigger(r.Id, res)
		}
	case raftpb.EntryConfChange:
		cc, m, err := decodeConfChange(e)
		if err != nil {
			return err
		}
		apply = func(tx *mvcc.WriteTxn) error {
			s.applyConfChange(tx, cc, m)
			return nil
		}
	case raftpb.EntryConfChangeV2:
		var cc raftpb.ConfChangeV2
		if err := proto.Unmarshal(e.Data, &cc); err != nil {
			return fmt.Errorf("server: decode conf change at %d: %w", e.GetIndex(), err)
		}
		after = func() { s.node.ApplyConfChange(&cc) }
	default:
		return fmt.Errorf("server: unknown entry type %v at %d", e.GetType(), e.GetIndex())
	}
	if err := s.store.Update(e.GetIndex(), e.GetTerm(), apply); errors.Is(err, mvcc.ErrBackendFailed) {
		return fmt.Errorf("server: apply entry %d: %w", e.GetIndex(), err)
	}
	if after != nil {
		after()
	}
	return nil
}

// replayEntry handles an entry the store already has (replayed after a restart, or
// covered by the db of a snapshot): raft and the in-memory membership, rebuilt from the
// snapshot's, still need it; the store does not.
func (s *Server) replayEntry(e *raftpb.Entry) error {
	switch e.GetType() {
	case raftpb.EntryNormal:
		return s.replayNormal(e)
	case raftpb.EntryConfChange:
		cc, m, err := decodeConfChange(e)
		if err != nil {
			return err
		}
		s.replayConfChange(cc, m)
	case raftpb.EntryConfChangeV2:
		var cc raftpb.ConfChangeV2
		if err := proto.Unmarshal(e.Data, &cc); err != nil {
			return fmt.Errorf("server: decode conf change at %d: %w", e.GetIndex(), err)
		}
		s.node.ApplyConfChange(&cc)
	default:
		return fmt.Errorf("server: unknown entry type %v at %d", e.GetType(), e.GetIndex())
	}
	return nil
}

// replayNormal: of a normal entry the store already has, only the attributes members
// published matter, to a membership rebuilt from the snapshot's (never in a batched
// entry, which holds only KV writes).
func (s *Server) replayNormal(e *raftpb.Entry) error {
	if !s.replayMembership || len(e.Data) == 0 {
		return nil
	}
	var r pb.InternalRaftRequest
	if err := r.UnmarshalVT(e.Data); err != nil {
		return fmt.Errorf("server: decode request at %d: %w", e.GetIndex(), err)
	}
	if a := r.MemberAttributes; a != nil {
		s.members.setAttributes(a.MemberId, a.Name, a.ClientUrls)
	}
	return nil
}

// applyRequest applies one client or member request (raft entry index) inside the
// entry's store txn.
func (s *Server) applyRequest(tx *mvcc.WriteTxn, r *pb.InternalRaftRequest, index uint64) applyResult {
	if err := s.refusedByAlarm(r); err != nil {
		return applyResult{err: err}
	}
	switch {
	case r.Alarm != nil:
		return s.applyAlarm(tx, r.Alarm)
	case r.Put != nil, r.DeleteRange != nil, r.Txn != nil:
		return s.applyKV(tx, r)
	case r.Compaction != nil:
		var res applyResult
		res.compacted, res.err = tx.Compact(r.Compaction.Revision)
		if res.err == nil {
			res.resp = &pb.CompactionResponse{Header: &pb.ResponseHeader{Revision: tx.Rev()}}
		}
		return res
	case r.Authenticate != nil, isAuthRequest(r):
		return s.applyAuth(tx, r, index)
	case r.MemberAttributes != nil:
		return s.applyMemberAttributes(tx, r.MemberAttributes)
	case r.LeaseGrant != nil:
		return s.applyLeaseGrant(tx, r.LeaseGrant)
	case r.LeaseRevoke != nil:
		return s.applyLeaseRevoke(tx, r.LeaseRevoke, r.Header)
	case r.LeaseCheckpoint != nil:
		return s.applyLeaseCheckpoint(tx, r.LeaseCheckpoint)
	case r.DowngradeInfoSet != nil:
		return s.applyDowngradeInfoSet(tx, r.DowngradeInfoSet)
	case r.ClusterVersionSet != nil:
		return s.applyClusterVersionSet(tx, r.ClusterVersionSet)
	}
	return applyResult{err: ErrNotImplemented}
}

// applyKV runs a Put, DeleteRange or Txn. The lessor's key sets follow only once the
// request succeeded (res.done): a failed one is undone in the store and never reaches
// the lessor.
func (s *Server) applyKV(tx *mvcc.WriteTxn, r *pb.InternalRaftRequest) applyResult {
	if err := s.checkKVAuth(r); err != nil {
		return applyResult{err: err}
	}
	v := s.newWriteView(tx)
	var res applyResult
	switch {
	case r.Put != nil:
		prev, err := s.checkPut(v, r.Put)
		if err != nil {
			return applyResult{err: err}
		}
		res.resp = executePut(v, r.Put, prev)
	case r.DeleteRange != nil:
		res.resp = executeDeleteRange(v, r.DeleteRange)
	default:
		res.resp, res.err = s.executeTxn(v, r.Txn)
	}
	res.done = v.applyLeaseChanges
	return res
}

// maybeSnapshot takes a raft snapshot every SnapshotCount applied requests (the requests
// of a batched entry each count, as each is an entry of its own in etcd). The store is
// committed first, so the snapshot never stands for state that is not on disk.
//
// On a full disk it waits: while the store's commits fail for lack of space (the store
// logs and retries them) no snapshot is taken, so no WAL segment the store still needs
// is released; a snapshot file that cannot be written is tried again after
// snapshotNoSpaceRetry.
func (s *Server) maybeSnapshot(applied uint64) {
	if s.retention.since <= s.cfg.SnapshotCount || time.Now().Before(s.snapRetryAt) {
		return
	}
	if err := s.store.Commit(); errors.Is(err, mvcc.ErrDiskFull) {
		return
	} else if err != nil {
		s.lg.Error("failed to commit backend before snapshot", zap.Error(err))
		return
	}
	if err := s.node.Snapshot(applied, s.retention.keepFrom(), s.members.marshalSnapshot()); fsutil.IsNoSpace(err) {
		s.snapRetryAt = time.Now().Add(snapshotNoSpaceRetry)
		s.lg.Warn("cannot save a snapshot for lack of disk space; trying again later",
			zap.Uint64("applied-index", applied), zap.Duration("retry-in", snapshotNoSpaceRetry), zap.Error(err))
		return
	} else if err != nil {
		s.lg.Error("failed to snapshot", zap.Error(err))
		return
	}
	s.retention.snapshotted()
}

// snapshotNoSpaceRetry is how long the apply loop waits before it tries again a snapshot
// that could not be saved for lack of disk space.
const snapshotNoSpaceRetry = 5 * time.Second
