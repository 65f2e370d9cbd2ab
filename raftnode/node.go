package raftnode

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-kv/cairn/snap"
	"github.com/cairn-kv/cairn/wal"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// DefaultMaxSnapshots and DefaultMaxWALs are how many snapshot files and WAL segments a
// member keeps at most (etcd's --max-snapshots and --max-wals defaults).
const (
	DefaultMaxSnapshots = 5
	DefaultMaxWALs      = 5
)

// Transport sends raft messages to peers. A single-member cluster has none.
type Transport interface {
	Send(msgs []*raftpb.Message)
}

// Config describes the member to raft.
type Config struct {
	Logger         *zap.Logger
	ID             uint64
	TickInterval   time.Duration
	ElectionTicks  int
	HeartbeatTicks int
	WALDir         string
	SnapDir        string
	// MaxSnapshotBytes bounds the db a received snapshot may carry (the backend quota:
	// a db past it could not be written to anyway); 0 means no bound.
	MaxSnapshotBytes int64
	// MaxSnapshots and MaxWALs bound the snapshot files and WAL segments kept, purged
	// oldest first at each snapshot; WAL segments only once the newest snapshot no longer
	// needs them. 0 means DefaultMaxSnapshots / DefaultMaxWALs; a negative value keeps
	// them all (etcd's 0, "unlimited").
	MaxSnapshots int
	MaxWALs      int

	// For a new member: the WAL metadata to create it with and the initial peers. A
	// member joining an existing cluster has no peers: it learns the membership from the
	// leader's log.
	Metadata []byte
	Peers    []raft.Peer

	Transport Transport

	// SyncWrite, if set, is told when the Ready loop starts (true) and ends (false) a
	// write it fsyncs. Proposals made meanwhile could not be written sooner: raft puts
	// them in its next Ready, which comes only once this one is handled. It must not
	// block.
	SyncWrite func(writing bool)
}

// Apply is a batch of committed entries, in log order, for the apply loop. Every entry
// in it is durable in the local WAL. After a restart raft hands out again every entry
// after the newest snapshot: the apply loop must skip what its state machine already
// has, but still give every conf change to ApplyConfChange, which rebuilds raft's
// membership from them.
//
// Snapshot, when set, is a snapshot received from the leader, durable in the WAL and
// snapshot directory, to install before the entries (which follow it): its db file is
// SnapshotDB(index). raft's membership already is the snapshot's.
type Apply struct {
	Snapshot *raftpb.Snapshot
	Entries  []*raftpb.Entry
}

// MaxSizePerMsg is raft's MaxSizePerMsg: a MsgApp carries about this much of entries
// (and the server's batched proposals are no larger).
const MaxSizePerMsg = 1 << 20

// Node runs the raft Ready loop for one member.
type Node struct {
	lg *zap.Logger
	id uint64

	// mu guards rn, raft's state machine, which the callers' goroutines step directly
	// (rawnode.go) and the Ready loop takes Readies from: no goroutine of raft's own
	// between them and the Ready loop.
	mu sync.Mutex
	rn *raft.RawNode
	// leaderc is closed, and replaced, once a leader is known again while proposals wait
	// for one (leaderWaiters); both guarded by mu.
	leaderc       chan struct{}
	leaderWaiters bool
	// wakec tells the Ready loop that raft may have a Ready (cap 1: one pending wake-up
	// stands for any number of steps).
	wakec chan struct{}

	storage     *raft.MemoryStorage
	snapshotter *snap.Snapshotter
	// maxSnapshotBytes is Config.MaxSnapshotBytes.
	maxSnapshotBytes int64
	transport        Transport
	syncWrite        func(writing bool) // Config.SyncWrite, or a no-op
	tick             time.Duration
	maxSnaps         int // < 0: unlimited
	maxWALs          int // < 0: unlimited

	walMu sync.Mutex // the WAL has one writer at a time: the Ready loop or Snapshot
	wal   *wal.WAL

	applyc     chan Apply
	readStatec chan raft.ReadState
	freezec    chan time.Duration // FreezeReadyLoop's requests to the Ready loop
	// confDelivered counts the conf-change entries handed to the apply loop,
	// confApplied those it handed back (ApplyConfChange): raft counts an entry applied
	// once its Ready is advanced, before the apply loop even sees it.
	confDelivered, confApplied atomic.Uint64

	// durable is the last log index the WAL holds (owned by the Ready loop).
	durable uint64

	lead      atomic.Uint64
	term      atomic.Uint64
	committed atomic.Uint64
	// diskFull is the last persist failure for lack of space while the Ready loop waits
	// to retry it; nil otherwise.
	diskFull atomic.Pointer[error]

	stopOnce sync.Once
	stopc    chan struct{}
	donec    chan struct{}
	err      error
}

// Start creates (p == nil) or restarts (p from LoadPersisted) the raft node and runs its
// Ready loop until Stop. A restarting caller must have installed p.SnapshotDB first if
// its store needed it: Start removes received db files.
func Start(cfg Config, p *Persisted) (*Node, error) {
	n := &Node{
		lg:               cfg.Logger,
		id:               cfg.ID,
		snapshotter:      snap.New(cfg.Logger, cfg.SnapDir),
		maxSnapshotBytes: cfg.MaxSnapshotBytes,
		transport:        cfg.Transport,
		syncWrite:        cfg.SyncWrite,
		tick:             cfg.TickInterval,
		maxSnaps:         cmp.Or(cfg.MaxSnapshots, DefaultMaxSnapshots),
		maxWALs:          cmp.Or(cfg.MaxWALs, DefaultMaxWALs),
		applyc:           make(chan Apply, 64),
		readStatec:       make(chan raft.ReadState, 1),
		freezec:          make(chan time.Duration),
		leaderc:          make(chan struct{}),
		wakec:            make(chan struct{}, 1),
		stopc:            make(chan struct{}),
		donec:            make(chan struct{}),
	}
	if n.syncWrite == nil {
		n.syncWrite = func(bool) {}
	}
	rc := &raft.Config{
		ID:              cfg.ID,
		ElectionTick:    cfg.ElectionTicks,
		HeartbeatTick:   cfg.HeartbeatTicks,
		MaxSizePerMsg:   MaxSizePerMsg,
		MaxInflightMsgs: 512,
		CheckQuorum:     true,
		PreVote:         true,
		Logger:          newRaftLogger(cfg.Logger),
	}
	if p == nil {
		w, err := wal.Create(cfg.Logger, cfg.WALDir, cfg.Metadata)
		if err != nil {
			return nil, fmt.Errorf("raftnode: create wal: %w", err)
		}
		n.wal = w
		n.storage = raft.NewMemoryStorage()
		rc.Storage = n.storage
	} else {
		ms, err := p.restore()
		if err != nil {
			return nil, err
		}
		n.wal = p.WAL
		n.storage = ms
		rc.Storage = ms
		n.committed.Store(p.HardState.GetCommit())
	}
	if err := n.startRaft(rc, p == nil, cfg.Peers); err != nil {
		if p == nil {
			n.wal.Close() // the caller closes a restarting member's
		}
		return nil, err
	}
	n.durable, _ = n.storage.LastIndex()
	// Received db files are used up: the caller installed the one the newest snapshot
	// needed (Persisted.SnapshotDB), and raft asks the leader again for anything newer.
	if err := n.snapshotter.PurgeDBs(math.MaxUint64); err != nil {
		n.lg.Warn("failed to purge received snapshot db files", zap.Error(err))
	}
	go n.run()
	return n, nil
}

func (n *Node) run() {
	defer close(n.donec)
	defer close(n.applyc)
	ticker := time.NewTicker(n.tick)
	defer ticker.Stop()
	seeking := n.seekingLeader()
	// A Ready handled, the next is looked for at once (again, always ready), after a due
	// tick, stop or freeze if any: select picks among ready cases at random.
	readyAgain := make(chan struct{})
	close(readyAgain)
	for {
		var again <-chan struct{}
		if rd, ok := n.ready(); ok {
			if err := n.handleReady(rd); err != nil {
				n.err = err
				n.lg.Error("raft ready loop stopped", zap.Error(err))
				return
			}
			n.advance()
			if seeking {
				seeking = n.seekingLeader()
			}
			again = readyAgain
		}
		select {
		case <-again:
		case <-n.wakec:
			if seeking {
				seeking = n.seekingLeader()
			}
		case <-ticker.C:
			n.tickRaft()
			if seeking {
				seeking = n.seekingLeader()
			}
		case d := <-n.freezec:
			if !n.frozen(d) {
				return
			}
		case <-n.stopc:
			return
		}
	}
}

// FreezeReadyLoop is a fault hook for tests: the Ready loop stops for d (no ticks, no
// Ready handled: nothing is persisted, sent or applied, as when the WAL's disk stalls),
// while raft itself still steps the messages peers send. d <= 0 ends a freeze early; a
// new freeze replaces the running one's deadline. It returns once the loop took the
// request.
func (n *Node) FreezeReadyLoop(d time.Duration) {
	select {
	case n.freezec <- d:
	case <-n.donec:
	}
}

// frozen holds the Ready loop for d or until a thaw request; false means Stop was called.
func (n *Node) frozen(d time.Duration) bool {
	if d <= 0 {
		return true // not frozen: nothing to end
	}
	for d > 0 {
		n.lg.Warn("fault injection: raft ready loop frozen", zap.Duration("for", d))
		t := time.NewTimer(d)
		select {
		case <-t.C:
			d = 0
		case d = <-n.freezec:
			t.Stop()
		case <-n.stopc:
			t.Stop()
			return false
		}
	}
	n.lg.Warn("fault injection: raft ready loop resumed")
	return true
}

// ReceiveSnapshot takes a snapshot message from the leader with its db (see
// SnapshotReceiver): the db is saved first, so the snapshot raft then hands to the
// Ready loop always has it.
func (n *Node) ReceiveSnapshot(ctx context.Context, m *raftpb.Message, r io.Reader) error {
	index := m.GetSnapshot().GetMetadata().GetIndex()
	if err := n.checkSnapshotSender(m); err != nil {
		return err
	}
	if max := n.maxSnapshotBytes; max > 0 {
		r = &limitedReader{r: r, left: max}
	}
	if _, err := n.snapshotter.SaveDB(index, r); err != nil {
		return err
	}
	if err := n.Step(ctx, m); err != nil {
		return fmt.Errorf("raftnode: step snapshot %d: %w", index, err)
	}
	return nil
}

// ErrSnapshotRefused is why a received snapshot is not even saved: it comes from a
// term older than this member's, or from a member that is not the leader of its term as
// this member knows it, or its db is larger than the backend quota.
var ErrSnapshotRefused = errors.New("raftnode: snapshot refused")

// checkSnapshotSender refuses, before any of its db is written to disk, a snapshot only a
// stale or false leader could send: raft would drop its message anyway, but only after
// the whole db was received and saved.
func (n *Node) checkSnapshotSender(m *raftpb.Message) error {
	st := n.Status()
	term := st.HardState.GetTerm()
	switch {
	case m.GetTerm() < term:
		return fmt.Errorf("%w: from %x at term %d, this member is at term %d", ErrSnapshotRefused, m.GetFrom(), m.GetTerm(), term)
	case m.GetTerm() == term && st.Lead != raft.None && st.Lead != m.GetFrom():
		return fmt.Errorf("%w: from %x, but the leader of term %d is %x", ErrSnapshotRefused, m.GetFrom(), term, st.Lead)
	}
	return nil
}

// limitedReader fails once more than left bytes are read.
type limitedReader struct {
	r    io.Reader
	left int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if l.left -= int64(n); l.left < 0 {
		return n, fmt.Errorf("%w: its db is larger than the backend quota", ErrSnapshotRefused)
	}
	return n, err
}

// SnapshotDB is the db file received with the snapshot at index.
func (n *Node) SnapshotDB(index uint64) (string, error) { return n.snapshotter.DBPath(index) }

// PurgeSnapshotDBs removes db files of snapshots at or below index (see snap.PurgeDBs).
func (n *Node) PurgeSnapshotDBs(index uint64) error { return n.snapshotter.PurgeDBs(index) }

var errStopped = errors.New("raftnode: stopped")

// send hands msgs to the transport's per-peer senders, then yields to them: readied on
// this goroutine's P, they would otherwise wait for what the Ready loop does next, a
// leader's WAL write and fsync (the P stays with the syscall) or a follower's hand-off to
// the apply loop, unless another thread woke to take them.
func (n *Node) send(msgs []*raftpb.Message) {
	if n.transport != nil && len(msgs) > 0 {
		n.transport.Send(msgs)
		runtime.Gosched()
	}
}

// publishReadState keeps only the newest read state: a reader waiting for an older one
// is satisfied by a newer index too, and the Ready loop must never block on readers.
func (n *Node) publishReadState(rs raft.ReadState) {
	for {
		select {
		case n.readStatec <- rs:
			return
		default:
		}
		select {
		case <-n.readStatec:
		default:
		}
	}
}

// Apply delivers committed entries; it is closed when the node stops.
func (n *Node) Apply() <-chan Apply { return n.applyc }

// ReadStates delivers answers to ReadIndex requests.
func (n *Node) ReadStates() <-chan raft.ReadState { return n.readStatec }

// Leader is the current leader's id, 0 when there is none.
func (n *Node) Leader() uint64 { return n.lead.Load() }

// Term is the current raft term.
func (n *Node) Term() uint64 { return n.term.Load() }

// CommittedIndex is the newest index known committed.
func (n *Node) CommittedIndex() uint64 { return n.committed.Load() }

// Done is closed when the Ready loop has ended; Err says why if it failed.
func (n *Node) Done() <-chan struct{} { return n.donec }

// Err is the error that stopped the Ready loop, if any.
func (n *Node) Err() error { return n.err }

// Snapshot records that the state machine (already durable up to applied) may stand in
// for the log up to applied: it writes a snapshot, trims the in-memory log and releases
// WAL segments the snapshot makes unnecessary. data is the caller's state that the log
// up to applied no longer rebuilds on restart (the server's membership); it comes back
// in Persisted.Snapshot. The in-memory log keeps the entries from keepFrom on for slow
// followers (the caller's policy: the server's counts requests); 0 keeps them all.
//
// It must be called from the goroutine that applies entries (and conf changes), so raft's
// current configuration is the one as of applied.
func (n *Node) Snapshot(applied, keepFrom uint64, data []byte) error {
	s, err := n.storage.CreateSnapshot(applied, confState(n.Status().Config), data)
	if err != nil {
		if errors.Is(err, raft.ErrSnapOutOfDate) {
			return nil
		}
		return fmt.Errorf("raftnode: create snapshot at %d: %w", applied, err)
	}
	if err := n.saveSnapshot(s); err != nil {
		return err
	}
	if keepFrom > 1 {
		if err := n.storage.Compact(min(keepFrom-1, applied)); err != nil && !errors.Is(err, raft.ErrCompacted) {
			return fmt.Errorf("raftnode: compact log: %w", err)
		}
	}
	if n.maxWALs > 0 {
		n.walMu.Lock()
		err = n.wal.ReleaseToKeep(applied, n.maxWALs)
		n.walMu.Unlock()
		if err != nil {
			return fmt.Errorf("raftnode: release wal: %w", err)
		}
	}
	keepSnaps := n.maxSnaps
	if keepSnaps < 0 {
		keepSnaps = math.MaxInt // still clears temp files of interrupted saves
	}
	if err := n.snapshotter.Purge(keepSnaps); err != nil {
		n.lg.Warn("failed to purge old snapshots", zap.Error(err))
	}
	n.lg.Info("saved snapshot", zap.Uint64("snapshot-index", applied))
	return nil
}

// SnapshotAt describes the state machine as of applied, for a snapshot sent to a
// follower: applied's term, raft's current membership and data (the caller's state the
// db does not hold). Like Snapshot, it must be called from the goroutine that applies
// entries, so the membership is the one as of applied.
func (n *Node) SnapshotAt(applied uint64, data []byte) (*raftpb.Snapshot, error) {
	term, err := n.storage.Term(applied)
	if err != nil {
		return nil, fmt.Errorf("raftnode: term of applied index %d: %w", applied, err)
	}
	return &raftpb.Snapshot{
		Data: data,
		Metadata: &raftpb.SnapshotMetadata{
			ConfState: confState(n.Status().Config),
			Index:     proto.Uint64(applied),
			Term:      proto.Uint64(term),
		},
	}, nil
}

// saveSnapshot writes the WAL mark before the snapshot file: a crash in between leaves a
// mark without a file, and restart then uses the older snapshot, whose mark and log are
// still there. The other order could leave a snapshot the WAL cannot be opened from.
func (n *Node) saveSnapshot(s *raftpb.Snapshot) error {
	n.walMu.Lock()
	err := n.wal.SaveSnapshot(wal.Snapshot{Index: s.GetMetadata().GetIndex(), Term: s.GetMetadata().GetTerm()})
	n.walMu.Unlock()
	if err != nil {
		return fmt.Errorf("raftnode: save snapshot mark: %w", err)
	}
	if err := n.snapshotter.Save(s); err != nil {
		return fmt.Errorf("raftnode: save snapshot: %w", err)
	}
	return nil
}

// Stop ends the Ready loop and closes the WAL.
func (n *Node) Stop() {
	n.stopOnce.Do(func() {
		close(n.stopc)
		<-n.donec
		n.walMu.Lock()
		if err := n.wal.Close(); err != nil {
			n.lg.Warn("failed to close wal", zap.Error(err))
		}
		n.walMu.Unlock()
	})
}

// confState is the membership raft currently uses, in the form a snapshot records.
func confState(c tracker.Config) *raftpb.ConfState {
	cs := &raftpb.ConfState{
		Voters:         c.Voters[0].Slice(),
		VotersOutgoing: c.Voters[1].Slice(),
		AutoLeave:      proto.Bool(c.AutoLeave),
	}
	for id := range c.Learners {
		cs.Learners = append(cs.Learners, id)
	}
	for id := range c.LearnersNext {
		cs.LearnersNext = append(cs.LearnersNext, id)
	}
	slices.Sort(cs.Learners)
	slices.Sort(cs.LearnersNext)
	return cs
}
