package server

import (
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
)

// readNotifier is shared by every linearizable read waiting on the same ReadIndex round.
type readNotifier struct {
	c   chan struct{}
	err error
	// led is what the round confirmed of this member's leadership (zero if it did not
	// lead throughout it).
	led leadership
}

// leadership is a ReadIndex round's confirmation that this member led: a quorum
// acknowledged it as the leader of term after started (lease renewal relies on it, see
// renewAsLeader).
type leadership struct {
	started time.Time
	term    uint64
}

func newReadNotifier() *readNotifier { return &readNotifier{c: make(chan struct{})} }

func (n *readNotifier) notify(led leadership, err error) {
	n.led, n.err = led, err
	close(n.c)
}

// readIndexBatcher serves linearizable reads: all reads that arrive while one raft
// ReadIndex round is in flight share the next round, so a burst of reads costs one
// round trip to the quorum, not one each.
type readIndexBatcher struct {
	s      *Server
	wakec  chan struct{}
	mu     sync.RWMutex
	next   *readNotifier
	nextID atomic.Uint64
	// last is the newest round's confirmation of this member's leadership.
	last atomic.Pointer[leadership]
}

// newReadIndexBatcher makes the batcher of a member booted at boot. Its rounds' ids go
// on from boot in nanoseconds, not from 0: after a restart a peer may still deliver the
// answer to a round of the member's previous run (the leader queued it while the member
// was down), and that answer, with an index the restarted member may have applied
// already, must not answer a round of this run.
func newReadIndexBatcher(s *Server, boot time.Time) *readIndexBatcher {
	b := &readIndexBatcher{s: s, wakec: make(chan struct{}, 1), next: newReadNotifier()}
	b.nextID.Store(uint64(boot.UnixNano()))
	return b
}

// answers reports whether rs answers the round with id. Raft hands over every answer it
// gets: late ones to earlier rounds of this run and, after a restart, ones to rounds of
// the previous run, which only an exact match tells apart.
func answers(rs raft.ReadState, id uint64) bool {
	return len(rs.RequestCtx) == 8 && binary.BigEndian.Uint64(rs.RequestCtx) == id
}

// wait blocks until the member has applied everything committed before the call.
func (b *readIndexBatcher) wait(ctx context.Context) error {
	_, err := b.confirm(ctx)
	return err
}

// confirm is wait, and also returns what the ReadIndex round that answered confirmed of
// this member's leadership. The round began after the call (a round already in flight is
// not joined), so it confirms that the quorum still followed whoever this member then
// followed, at that time or later.
func (b *readIndexBatcher) confirm(ctx context.Context) (leadership, error) {
	b.mu.RLock()
	n := b.next
	b.mu.RUnlock()
	select {
	case b.wakec <- struct{}{}:
	default:
	}
	select {
	case <-n.c:
		return n.led, n.err
	case <-ctx.Done():
		return leadership{}, ctx.Err()
	case <-b.s.stopping:
		return leadership{}, ErrStopped
	}
}

// recent is the newest round's confirmation that this member leads in term, if that
// round began within maxAge; ok is false otherwise.
func (b *readIndexBatcher) recent(term uint64, maxAge time.Duration) (led leadership, ok bool) {
	l := b.last.Load()
	if l == nil || l.term != term || time.Since(l.started) > maxAge {
		return leadership{}, false
	}
	return *l, true
}

func (b *readIndexBatcher) run() {
	for {
		select {
		case <-b.wakec:
		case <-b.s.stopping:
			b.mu.Lock()
			b.next.notify(leadership{}, ErrStopped)
			b.mu.Unlock()
			return
		}
		b.mu.Lock()
		n := b.next
		b.next = newReadNotifier()
		b.mu.Unlock()
		// Leading in the same term when the round began and when it was answered (as the
		// Ready loop saw it, which handles a Ready's leader and term before its answers):
		// the quorum that answered acknowledged this member as that term's leader.
		led := leadership{started: time.Now(), term: b.s.node.Term()}
		leading := b.s.leadsAsSeen(led.term)
		err := b.round()
		if err == nil && leading && b.s.leadsAsSeen(led.term) {
			b.last.Store(&led)
		} else {
			led = leadership{}
		}
		n.notify(led, err)
	}
}

// leaderPoll is how often a ReadIndex round looks for a leader to ask again.
const leaderPoll = 10 * time.Millisecond

// round runs one ReadIndex and waits until that index is applied.
func (b *readIndexBatcher) round() error {
	s := b.s
	n := b.nextID.Add(1)
	id := make([]byte, 8)
	binary.BigEndian.PutUint64(id, n)
	timeout := time.NewTimer(s.requestTimeout())
	defer timeout.Stop()
	// Ask again every so often: raft drops a ReadIndex it cannot serve (no leader yet),
	// and at once when a leader appears after one was asked without (a member's first
	// reads after a restart come before its election).
	resend := s.cfg.HeartbeatInterval * 5
	retry := time.NewTicker(min(leaderPoll, resend))
	defer retry.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	noLeader, sent := s.node.Leader() == 0, time.Now()
	if err := s.node.ReadIndex(ctx, id); err != nil {
		return ErrStopped
	}
	for {
		select {
		case rs := <-s.node.ReadStates():
			if !answers(rs, n) {
				continue // an answer to another round, of this run or the previous one
			}
			select {
			case <-s.appliedW.wait(rs.Index):
				return nil
			case <-timeout.C:
				return ErrTimeout
			case <-s.stopping:
				return ErrStopped
			}
		case <-retry.C:
			if s.node.Leader() == 0 {
				noLeader = true
				continue
			}
			if !noLeader && time.Since(sent) < resend {
				continue
			}
			noLeader, sent = false, time.Now()
			if err := s.node.ReadIndex(ctx, id); err != nil {
				return ErrStopped
			}
		case <-timeout.C:
			if s.node.Leader() == 0 {
				return ErrNoLeader
			}
			return ErrTimeout
		case <-s.stopping:
			return ErrStopped
		}
	}
}

// linearizableRead waits until a read on this member reflects every write acknowledged
// before it started.
func (s *Server) linearizableRead(ctx context.Context) error {
	return s.reads.wait(ctx)
}

// requestTimeout is how long a request may wait for raft, etcd's rule: 5 s plus two
// election timeouts.
func (s *Server) requestTimeout() time.Duration {
	return 5*time.Second + 2*s.cfg.ElectionTimeout
}

// idGenerator makes proposal ids unique across members and restarts: the member id's
// low 16 bits, then a counter that starts at the boot time in milliseconds.
type idGenerator struct {
	prefix uint64
	suffix atomic.Uint64
}

func newIDGenerator(memberID uint64, now time.Time) *idGenerator {
	g := &idGenerator{prefix: (memberID & 0xffff) << 48}
	g.suffix.Store(uint64(now.UnixMilli()) << 8 & (1<<48 - 1))
	return g
}

func (g *idGenerator) next() uint64 {
	return g.prefix | (g.suffix.Add(1) & (1<<48 - 1))
}
