package server

import (
	"context"
	"fmt"

	"github.com/cairn-kv/cairn/mvcc"
	"github.com/cairn-kv/cairn/raftnode"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// snapshotRequest asks the apply loop for a snapshot to send to a follower.
type snapshotRequest struct {
	reply chan snapshotReply
}

type snapshotReply struct {
	snap *raftpb.Snapshot
	db   *mvcc.Snapshot
	err  error
}

// makeSnapshot is the transport's snapshot source (raftnode.SnapshotSource). The apply
// loop makes it between two batches, so the db, the raft metadata and the membership
// all stand for the same applied index.
func (s *Server) makeSnapshot(ctx context.Context) (*raftpb.Snapshot, raftnode.SnapshotDB, error) {
	req := snapshotRequest{reply: make(chan snapshotReply, 1)}
	select {
	case s.snapshotRequests <- req:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-s.stopping:
		return nil, nil, ErrStopped
	}
	select {
	case r := <-req.reply:
		return r.snap, r.db, r.err
	case <-ctx.Done():
		// The apply loop still answers; the view it opened must be closed.
		go func() {
			if r := <-req.reply; r.db != nil {
				_ = r.db.Close()
			}
		}()
		return nil, nil, ctx.Err()
	}
}

// serveSnapshotRequest runs in the apply loop, between batches.
func (s *Server) serveSnapshotRequest(req snapshotRequest) {
	applied := s.applied.Load()
	db, err := s.store.Snapshot()
	if err != nil {
		req.reply <- snapshotReply{err: err}
		return
	}
	// The db must hold everything up to the snapshot's index: the follower applies only
	// the entries after it.
	if ci, _ := s.store.ConsistentIndex(); ci < applied {
		_ = db.Close()
		req.reply <- snapshotReply{err: fmt.Errorf("server: store's applied index %d is behind %d", ci, applied)}
		return
	}
	snap, err := s.node.SnapshotAt(applied, s.members.marshalSnapshot())
	if err != nil {
		_ = db.Close()
		req.reply <- snapshotReply{err: err}
		return
	}
	s.lg.Info("sending snapshot to a follower", zap.Uint64("snapshot-index", applied), zap.Int64("db-bytes", db.Size()))
	req.reply <- snapshotReply{snap: snap, db: db}
}

// installSnapshot replaces the member's state with the leader's snapshot, which raft has
// made durable: the db received with it becomes the store (whose applied index may be
// ahead of the snapshot's: later entries up to it are skipped), the membership is the one
// it carries, and the leases are the db's.
func (s *Server) installSnapshot(snap *raftpb.Snapshot) error {
	index := snap.GetMetadata().GetIndex()
	if len(snap.GetData()) == 0 {
		return fmt.Errorf("server: snapshot %d from the leader carries no membership", index)
	}
	path, err := s.node.SnapshotDB(index)
	if err != nil {
		return err
	}
	if err := s.store.Restore(path); err != nil {
		return err
	}
	ci, _ := s.store.ConsistentIndex()
	if ci < index {
		return fmt.Errorf("server: snapshot %d came with a db applied only up to %d", index, ci)
	}
	before := s.members.all()
	if err := s.members.restoreSnapshot(snap.GetData()); err != nil {
		return err
	}
	s.replayMembership = true
	for _, m := range before {
		if s.members.get(m.ID) == nil {
			s.peers.RemovePeer(m.ID)
		}
	}
	s.addPeers(s.members.all())
	if err := s.restoreLeases(); err != nil {
		return err
	}
	if err := s.loadAlarms(); err != nil {
		return err
	}
	if err := s.loadAuth(); err != nil {
		return err
	}
	if err := s.loadVersions(); err != nil {
		return err
	}
	s.storeIndex = ci
	s.retention.snapshotted()
	if index > s.applied.Load() {
		s.applied.Store(index)
		s.appliedW.trigger(index)
	}
	if err := s.node.PurgeSnapshotDBs(index); err != nil {
		s.lg.Warn("failed to purge received snapshot db files", zap.Error(err))
	}
	s.lg.Info("installed snapshot from the leader", zap.Uint64("snapshot-index", index),
		zap.Uint64("store-applied-index", ci), zap.Int64("revision", s.store.Rev()))
	return nil
}

// recoverSnapshotDB finishes installing a snapshot received before a crash: its db file
// is still there and the store is behind it.
func recoverSnapshotDB(lg *zap.Logger, store *mvcc.Store, p *raftnode.Persisted) error {
	if p == nil || p.Snapshot == nil {
		return nil
	}
	index := p.Snapshot.GetMetadata().GetIndex()
	if ci, _ := store.ConsistentIndex(); ci >= index {
		return nil
	}
	if p.SnapshotDB == "" {
		ci, _ := store.ConsistentIndex()
		return fmt.Errorf("server: the backend is applied up to %d but the newest snapshot is at %d and the db file received with it is missing", ci, index)
	}
	lg.Info("installing the db received with the newest snapshot", zap.Uint64("snapshot-index", index), zap.String("path", p.SnapshotDB))
	return store.Restore(p.SnapshotDB)
}
