package raftnode

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/wal"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"
)

func confChangeEntry(t *testing.T, index, term uint64, typ raftpb.ConfChangeType, id uint64) *raftpb.Entry {
	data, err := proto.Marshal(&raftpb.ConfChange{Type: typ.Enum(), NodeId: proto.Uint64(id)})
	if err != nil {
		t.Fatal(err)
	}
	return &raftpb.Entry{Type: raftpb.EntryConfChange.Enum(), Index: proto.Uint64(index), Term: proto.Uint64(term), Data: data}
}

// ForceNewCluster drops the uncommitted tail, and appends, durably and committed,
// the removal of every other member of the log's membership; the member then commits
// alone.
func TestForceNewCluster(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	lg := zaptest.NewLogger(t)
	w, err := wal.Create(lg, cfg.WALDir, []byte("meta"))
	if err != nil {
		t.Fatal(err)
	}
	ents := []*raftpb.Entry{
		confChangeEntry(t, 1, 1, raftpb.ConfChangeAddNode, 1),
		confChangeEntry(t, 2, 1, raftpb.ConfChangeAddNode, 2),
		confChangeEntry(t, 3, 1, raftpb.ConfChangeAddNode, 3),
		{Index: proto.Uint64(4), Term: proto.Uint64(2), Data: []byte("a")},
		confChangeEntry(t, 5, 2, raftpb.ConfChangeAddLearnerNode, 4),
		confChangeEntry(t, 6, 2, raftpb.ConfChangeRemoveNode, 2),
		{Index: proto.Uint64(7), Term: proto.Uint64(2), Data: []byte("b")},
		{Index: proto.Uint64(8), Term: proto.Uint64(3), Data: []byte("uncommitted")},
	}
	hs := &raftpb.HardState{Term: proto.Uint64(3), Vote: proto.Uint64(3), Commit: proto.Uint64(7)}
	if err := w.Save(hs, ents); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	p, err := LoadPersisted(lg, cfg.WALDir, cfg.SnapDir)
	if err != nil {
		t.Fatal(err)
	}
	removed, err := p.ForceNewCluster(lg, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []uint64{3, 4}) {
		t.Fatalf("removed %v, want [3 4]", removed)
	}
	check := func(p *Persisted) {
		t.Helper()
		if p.HardState.GetCommit() != 9 || p.HardState.GetTerm() != 3 {
			t.Fatalf("hard state %v", p.HardState)
		}
		var got []string
		for _, e := range p.Entries {
			s := fmt.Sprintf("%d/%d:%s", e.GetIndex(), e.GetTerm(), e.Data)
			if e.GetType() == raftpb.EntryConfChange {
				var cc raftpb.ConfChange
				_ = proto.Unmarshal(e.Data, &cc)
				s = fmt.Sprintf("%d/%d:%v %d", e.GetIndex(), e.GetTerm(), cc.GetType(), cc.GetNodeId())
			}
			got = append(got, s)
		}
		want := []string{"1/1:ConfChangeAddNode 1", "2/1:ConfChangeAddNode 2", "3/1:ConfChangeAddNode 3", "4/2:a",
			"5/2:ConfChangeAddLearnerNode 4", "6/2:ConfChangeRemoveNode 2", "7/2:b",
			"8/3:ConfChangeRemoveNode 3", "9/3:ConfChangeRemoveNode 4"}
		if !slices.Equal(got, want) {
			t.Fatalf("entries\n%v\nwant\n%v", got, want)
		}
	}
	check(p)
	// Durable: a plain restart sees the same log.
	if err := p.WAL.Close(); err != nil {
		t.Fatal(err)
	}
	p, err = LoadPersisted(lg, cfg.WALDir, cfg.SnapDir)
	if err != nil {
		t.Fatal(err)
	}
	check(p)
	n, err := Start(cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	// Apply the log up to the forced removals, as the server's apply loop does.
	for last := uint64(0); last < 9; {
		select {
		case ap := <-n.Apply():
			for _, e := range ap.Entries {
				if e.GetType() == raftpb.EntryConfChange {
					var cc raftpb.ConfChange
					if err := proto.Unmarshal(e.Data, &cc); err != nil {
						t.Fatal(err)
					}
					n.ApplyConfChange(&cc)
				}
				last = e.GetIndex()
			}
		case <-time.After(10 * time.Second):
			t.Fatal("log not applied")
		}
	}
	propose(t, n, "alone")
	applyUntil(t, n, "alone")
	if n.Leader() != 1 {
		t.Fatalf("leader %d", n.Leader())
	}
}
