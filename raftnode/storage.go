package raftnode

import (
	"errors"
	"fmt"

	"github.com/cairn-kv/cairn/snap"
	"github.com/cairn-kv/cairn/wal"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// Persisted is what a member found on disk: its WAL opened after the newest snapshot,
// with the hard state and entries read back, ready to restart raft from.
type Persisted struct {
	WAL      *wal.WAL
	Metadata []byte
	Snapshot *raftpb.Snapshot // nil when there is none
	// SnapshotDB is the db file received with Snapshot from the leader, "" if there is
	// none. The store must take it (mvcc.Store.Restore) when its applied index is below
	// the snapshot's: the member crashed between saving the snapshot and installing it.
	SnapshotDB string
	HardState  *raftpb.HardState
	Entries    []*raftpb.Entry
}

// LoadPersisted opens an existing member's WAL and newest snapshot. It returns (nil, nil)
// when walDir holds no WAL: the member is new.
func LoadPersisted(lg *zap.Logger, walDir, snapDir string) (*Persisted, error) {
	if !wal.Exist(walDir) {
		return nil, nil
	}
	var p Persisted
	s, err := snap.New(lg, snapDir).Load()
	switch {
	case errors.Is(err, snap.ErrNoSnapshot):
	case err != nil:
		return nil, fmt.Errorf("raftnode: load snapshot: %w", err)
	default:
		p.Snapshot = s
		if path, err := snap.New(lg, snapDir).DBPath(s.GetMetadata().GetIndex()); err == nil {
			p.SnapshotDB = path
		}
	}
	mark := wal.Snapshot{Index: p.Snapshot.GetMetadata().GetIndex(), Term: p.Snapshot.GetMetadata().GetTerm()}
	w, err := wal.Open(lg, walDir, mark)
	if err != nil {
		return nil, fmt.Errorf("raftnode: open wal: %w", err)
	}
	p.Metadata, p.HardState, p.Entries, err = w.ReadAll()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("raftnode: read wal: %w", err)
	}
	p.WAL = w
	return &p, nil
}

// restore loads the persisted state into a fresh raft memory storage.
func (p *Persisted) restore() (*raft.MemoryStorage, error) {
	ms := raft.NewMemoryStorage()
	if p.Snapshot != nil && !raft.IsEmptySnap(p.Snapshot) {
		if err := ms.ApplySnapshot(p.Snapshot); err != nil {
			return nil, fmt.Errorf("raftnode: apply snapshot: %w", err)
		}
	}
	if p.HardState == nil {
		p.HardState = &raftpb.HardState{}
	}
	if err := ms.SetHardState(p.HardState); err != nil {
		return nil, fmt.Errorf("raftnode: set hard state: %w", err)
	}
	if err := ms.Append(p.Entries); err != nil {
		return nil, fmt.Errorf("raftnode: append entries: %w", err)
	}
	return ms, nil
}
