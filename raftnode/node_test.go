package raftnode

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"
)

func testConfig(t *testing.T, dir string) Config {
	return Config{
		Logger:         zaptest.NewLogger(t),
		ID:             1,
		TickInterval:   10 * time.Millisecond,
		ElectionTicks:  10,
		HeartbeatTicks: 1,
		WALDir:         filepath.Join(dir, "wal"),
		SnapDir:        filepath.Join(dir, "snap"),
		Metadata:       []byte("meta"),
		Peers:          []raft.Peer{{ID: 1}},
	}
}

// applyUntil reads committed entries until one carries want, returning every normal
// entry's data seen on the way.
func applyUntil(t *testing.T, n *Node, want string) []string {
	t.Helper()
	var got []string
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ap, ok := <-n.Apply():
			if !ok {
				t.Fatalf("apply channel closed: %v", n.Err())
			}
			for _, e := range ap.Entries {
				if e.GetType() == raftpb.EntryConfChange {
					var cc raftpb.ConfChange
					if err := proto.Unmarshal(e.Data, &cc); err == nil {
						n.ApplyConfChange(&cc)
					}
				}
				if e.GetType() == raftpb.EntryNormal && len(e.Data) > 0 {
					got = append(got, string(e.Data))
					if string(e.Data) == want {
						return got
					}
				}
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %q; saw %v", want, got)
		}
	}
}

func propose(t *testing.T, n *Node, data string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Propose(ctx, []byte(data)); err != nil {
		t.Fatalf("propose %s: %v", data, err)
	}
}

func TestSingleMemberCommitsAndRestarts(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	if p, err := LoadPersisted(cfg.Logger, cfg.WALDir, cfg.SnapDir); err != nil || p != nil {
		t.Fatalf("fresh dir: persisted %v, err %v", p, err)
	}
	n, err := Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		propose(t, n, fmt.Sprint("e", i))
	}
	if got := applyUntil(t, n, "e9"); len(got) != 10 {
		t.Fatalf("applied %v", got)
	}
	if n.Leader() != 1 || n.Term() == 0 {
		t.Fatalf("leader %d term %d", n.Leader(), n.Term())
	}
	n.Stop()

	p, err := LoadPersisted(cfg.Logger, cfg.WALDir, cfg.SnapDir)
	if err != nil || p == nil {
		t.Fatalf("reload: %v %v", p, err)
	}
	if string(p.Metadata) != "meta" {
		t.Fatalf("metadata %q", p.Metadata)
	}
	var data []string
	for _, e := range p.Entries {
		if e.GetType() == raftpb.EntryNormal && len(e.Data) > 0 {
			data = append(data, string(e.Data))
		}
	}
	if len(data) != 10 || data[9] != "e9" {
		t.Fatalf("entries in WAL: %v", data)
	}
	// Without a snapshot, a restart hands out the whole log again, then new entries.
	n, err = Start(cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	if got := applyUntil(t, n, "e9"); len(got) != 10 || got[0] != "e0" {
		t.Fatalf("after restart applied %v, want the 10 old entries again", got)
	}
	propose(t, n, "after")
	if got := applyUntil(t, n, "after"); len(got) != 1 {
		t.Fatalf("then applied %v, want only the new entry", got)
	}
}

func TestSnapshotReleasesLogAndRestartsFromIt(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	n, err := Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		propose(t, n, fmt.Sprint("e", i))
	}
	applyUntil(t, n, "e19")
	applied := n.CommittedIndex()
	if err := n.Snapshot(applied, 0, nil); err != nil {
		t.Fatal(err)
	}
	n.Stop()
	snaps, _ := filepath.Glob(filepath.Join(cfg.SnapDir, "*.snap"))
	if len(snaps) != 1 {
		t.Fatalf("snapshot files %v", snaps)
	}
	p, err := LoadPersisted(cfg.Logger, cfg.WALDir, cfg.SnapDir)
	if err != nil {
		t.Fatal(err)
	}
	if p.Snapshot.GetMetadata().GetIndex() != applied {
		t.Fatalf("snapshot index %d, want %d", p.Snapshot.GetMetadata().GetIndex(), applied)
	}
	if vs := p.Snapshot.GetMetadata().GetConfState().GetVoters(); len(vs) != 1 || vs[0] != 1 {
		t.Fatalf("snapshot voters %v, want [1]", vs)
	}
	n, err = Start(cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	propose(t, n, "after")
	if got := applyUntil(t, n, "after"); len(got) != 1 {
		t.Fatalf("after restart from a snapshot at the end of the log applied %v, want only the new entry", got)
	}
}

// spyTransport checks, when a follower's acknowledgement is sent, that what it
// acknowledges is already persisted (storage is appended to only after the WAL's fsync).
type spyTransport struct {
	node atomic.Pointer[Node]
	acks chan string
}

func (s *spyTransport) Send(msgs []*raftpb.Message) {
	for _, m := range msgs {
		if m.GetType() != raftpb.MsgAppResp || m.GetReject() {
			continue
		}
		last, _ := s.node.Load().storage.LastIndex()
		s.acks <- fmt.Sprintf("ack %d persisted up to %d", m.GetIndex(), last)
	}
}

// A follower acknowledges appended entries only after they are durable: the leader
// counts the acknowledgement towards the quorum that commits them.
func TestFollowerAcksOnlyPersistedEntries(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.ID = 2
	cfg.ElectionTicks = 1000 // never campaigns during the test
	cfg.Peers = []raft.Peer{{ID: 1}, {ID: 2}}
	spy := &spyTransport{acks: make(chan string, 16)}
	cfg.Transport = spy
	n, err := Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	spy.node.Store(n)
	defer n.Stop()
	go func() {
		for range n.Apply() {
		}
	}()
	typ := raftpb.MsgApp
	ent := raftpb.EntryNormal
	m := &raftpb.Message{Type: &typ, From: proto.Uint64(1), To: proto.Uint64(2), Term: proto.Uint64(2),
		LogTerm: proto.Uint64(1), Index: proto.Uint64(2), Commit: proto.Uint64(2),
		Entries: []*raftpb.Entry{{Type: &ent, Term: proto.Uint64(2), Index: proto.Uint64(3), Data: []byte("x")}}}
	if err := n.Step(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-spy.acks:
		if got != "ack 3 persisted up to 3" {
			t.Fatalf("follower sent %q before persisting", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no acknowledgement")
	}
}

// A frozen Ready loop persists and applies nothing (a proposal raft accepts meanwhile
// stays unapplied) until the freeze is ended early, and then carries on; Stop ends a
// freeze too.
func TestFreezeReadyLoop(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	n, err := Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	propose(t, n, "before")
	applyUntil(t, n, "before")

	n.FreezeReadyLoop(time.Minute)
	propose(t, n, "during")
	select {
	case ap := <-n.Apply():
		t.Fatalf("applied %v while the ready loop was frozen", ap.Entries)
	case <-time.After(300 * time.Millisecond):
	}
	n.FreezeReadyLoop(0)
	if got := applyUntil(t, n, "during"); len(got) != 1 {
		t.Fatalf("after the thaw applied %v, want the entry proposed during the freeze", got)
	}

	n.FreezeReadyLoop(time.Minute)
	stopped := make(chan struct{})
	go func() { n.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not end a freeze")
	}
}
