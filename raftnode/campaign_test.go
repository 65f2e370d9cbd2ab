package raftnode

import (
	"testing"
	"time"

	"github.com/cairn-kv/cairn/internal/testutil"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// applyConfChanges stands in for the server's apply loop: it hands every committed conf
// change back to raft until the node stops.
func applyConfChanges(n *Node) {
	for ap := range n.Apply() {
		for _, e := range ap.Entries {
			if e.GetType() != raftpb.EntryConfChange {
				continue
			}
			var cc raftpb.ConfChange
			if err := proto.Unmarshal(e.Data, &cc); err == nil {
				n.ApplyConfChange(&cc)
			}
		}
	}
}

// restartNode starts the stopped node of cfg again from what it persisted; it is
// stopped when the test ends.
func restartNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	p, err := LoadPersisted(cfg.Logger, cfg.WALDir, cfg.SnapDir)
	if err != nil || p == nil {
		t.Fatalf("reload: %v %v", p, err)
	}
	n, err := Start(cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n
}

// A lone voter leads at once, fresh and restarted, instead of waiting out an election
// timeout: here the timeout is 100 s (10,000 ticks of 10 ms), and leading takes far less
// than half of it. Fresh, raft refuses to campaign until the bootstrap conf changes are
// applied, and restarted it learns its configuration only from the entries it replays,
// so a campaign at Start alone would wait out the timeout in both cases.
func TestLoneVoterLeadsWithoutElectionTimeout(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.ElectionTicks = 10000
	leads := func(n *Node, what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for n.Leader() != cfg.ID {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no leader 20 s after Start (election timeout 100 s)", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	n, err := Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	go applyConfChanges(n)
	leads(n, "fresh")
	propose(t, n, "a")
	n.Stop()

	n = restartNode(t, cfg)
	go applyConfChanges(n)
	leads(n, "restarted")
}

// A restarted member of a 3-member cluster whose log still holds the bootstrap conf
// changes is not a lone voter while the apply loop has handed back only the first of
// them: it must not elect itself (raft already counts them all applied).
func TestRestartedMemberWaitsForItsConfiguration(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.ElectionTicks = 10000 // no election of raft's own during the test
	cfg.Peers = []raft.Peer{{ID: 1}, {ID: 2}, {ID: 3}}
	n, err := Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	applied := make(chan struct{})
	go func() {
		applyConfChanges(n)
		close(applied)
	}()
	testutil.Eventually(t, 10*time.Second, "the bootstrap conf changes were never applied", func() bool {
		return n.confApplied.Load() == 3
	})
	n.Stop()
	<-applied

	n = restartNode(t, cfg)
	release := make(chan struct{})
	go func() { // the apply loop: the first conf change at once, the others later
		first := true
		for ap := range n.Apply() {
			for _, e := range ap.Entries {
				if e.GetType() != raftpb.EntryConfChange {
					continue
				}
				var cc raftpb.ConfChange
				if err := proto.Unmarshal(e.Data, &cc); err != nil {
					continue
				}
				if !first {
					<-release
				}
				first = false
				n.ApplyConfChange(&cc)
			}
		}
	}()
	testutil.Eventually(t, 10*time.Second, "the first conf change was never applied", func() bool {
		return n.confApplied.Load() == 1
	})
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if st := n.Status(); st.RaftState == raft.StateLeader || n.Leader() != 0 {
			close(release)
			t.Fatalf("elected itself (%v, leader %x) with 1 of its 3 voters' conf changes applied", st.RaftState, n.Leader())
		}
	}
	close(release)
	testutil.Eventually(t, 10*time.Second, "the other conf changes were never applied", func() bool {
		return len(n.Status().Config.Voters[0]) == 3
	})
}
