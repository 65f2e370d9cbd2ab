package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/mvcc"
	"go.uber.org/zap"
)

// fakeClock is a clock the test moves by hand. Each After call is announced on waits, so
// the test knows the compactor is parked before it advances time.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	timer chan time.Time
	at    time.Time
	waits chan time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1_000_000, 0), waits: make(chan time.Duration, 1)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	c.timer, c.at = ch, c.now.Add(d)
	c.mu.Unlock()
	c.waits <- d
	return ch
}

// parked waits until the compactor waits on the clock and returns how long it waits.
func (c *fakeClock) parked(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-c.waits:
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("compactor did not wait on the clock")
		return 0
	}
}

// fire moves the clock to the compactor's deadline and wakes it.
func (c *fakeClock) fire() {
	c.mu.Lock()
	c.now = c.at
	ch := c.timer
	c.mu.Unlock()
	ch <- c.now
}

// compactorHarness runs an autoCompactor on a fake clock with a settable revision,
// leadership and compaction result.
type compactorHarness struct {
	t       *testing.T
	clock   *fakeClock
	wait    time.Duration // the interval the parked compactor waits
	rev     atomic.Int64
	leading atomic.Bool
	err     atomic.Pointer[error] // what compact answers; nil: success
	calls   chan int64
	stop    chan struct{}
	done    chan struct{}
}

// startCompactor starts a compactor whose first sample is rev and waits until it parks.
func startCompactor(t *testing.T, mode string, retention time.Duration, rev int64) *compactorHarness {
	h := &compactorHarness{t: t, clock: newFakeClock(), calls: make(chan int64, 100), stop: make(chan struct{}), done: make(chan struct{})}
	h.leading.Store(true)
	h.rev.Store(rev)
	c := &autoCompactor{
		lg: zap.NewNop(), clock: h.clock, mode: mode, retention: retention,
		rev:     h.rev.Load,
		leading: h.leading.Load,
		compact: func(_ context.Context, rev int64) error {
			h.calls <- rev
			if p := h.err.Load(); p != nil {
				return *p
			}
			return nil
		},
		stop: h.stop,
	}
	go func() { defer close(h.done); c.run() }()
	t.Cleanup(func() {
		close(h.stop)
		<-h.done
	})
	h.wait = h.clock.parked(t)
	return h
}

// tick advances the clock by the interval the compactor waits, the current revision
// being rev from then on, and returns the compactions made at that check, once the
// compactor has parked again.
func (h *compactorHarness) tick(want time.Duration, rev int64) []int64 {
	h.t.Helper()
	if h.wait != want {
		h.t.Fatalf("compactor waits %v, want %v", h.wait, want)
	}
	h.rev.Store(rev)
	h.clock.fire()
	h.wait = h.clock.parked(h.t)
	var out []int64
	for {
		select {
		case r := <-h.calls:
			out = append(out, r)
		default:
			return out
		}
	}
}

func requireCompacted(t *testing.T, step string, got []int64, want ...int64) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: compacted to %v, want %v", step, got, want)
	}
}

// TestAutoCompactPeriodicHour: retention 1h samples every 6 minutes, compacts first an
// hour after start to the revision at start, then every hour to the oldest of the last
// 11 samples (the revision of 66 minutes before).
func TestAutoCompactPeriodicHour(t *testing.T) {
	const step = 6 * time.Minute
	h := startCompactor(t, CompactorModePeriodic, time.Hour, 100) // minute m: revision 100+m
	for m := 6; m <= 120; m += 6 {
		got := h.tick(step, int64(100+m))
		switch m {
		case 60:
			requireCompacted(t, "minute 60", got, 100)
		case 120:
			requireCompacted(t, "minute 120", got, 154)
		default:
			requireCompacted(t, fmt.Sprintf("minute %d", m), got)
		}
	}
}

// TestAutoCompactPeriodicLong: a retention over an hour still samples every 6 minutes
// and waits the whole retention for the first compaction, then compacts hourly to the
// oldest of the last retention/6m+1 samples.
func TestAutoCompactPeriodicLong(t *testing.T) {
	const step = 6 * time.Minute
	h := startCompactor(t, CompactorModePeriodic, 3*time.Hour, 1000)
	for m := 6; m <= 240; m += 6 {
		got := h.tick(step, int64(1000+m))
		switch m {
		case 180:
			requireCompacted(t, "3h", got, 1000)
		case 240:
			// The 31 samples kept at minute 234 start at minute 54.
			requireCompacted(t, "4h", got, 1054)
		default:
			requireCompacted(t, fmt.Sprintf("minute %d", m), got)
		}
	}
}

// TestAutoCompactPeriodicShort: a sub-hour retention (etcd accepts "2s") compacts every
// retention, checking every retention/10; with no new revision there is no compaction;
// a failed compaction is retried at the next check; ErrCompacted counts as done.
func TestAutoCompactPeriodicShort(t *testing.T) {
	const step = 200 * time.Millisecond
	h := startCompactor(t, CompactorModePeriodic, 2*time.Second, 5)
	for i := 1; i <= 10; i++ {
		got := h.tick(step, 5)
		if i < 10 {
			requireCompacted(t, fmt.Sprint("check ", i), got)
		} else {
			requireCompacted(t, "2s", got, 5)
		}
	}
	for i := 0; i < 20; i++ {
		requireCompacted(t, "idle", h.tick(step, 5)) // the oldest sample is 5, done already
	}
	injected := errors.New("injected: no leader")
	h.err.Store(&injected)
	// The revision is 9 from the next sample on; the check 12 intervals later is the first
	// whose oldest sample (of 11, the last taken one interval before it) is 9.
	var got []int64
	for i := 0; i < 12; i++ {
		got = append(got, h.tick(step, 9)...)
	}
	requireCompacted(t, "failing", got, 9)
	requireCompacted(t, "retry", h.tick(step, 9), 9)
	h.err.Store(nil)
	requireCompacted(t, "retry succeeds", h.tick(step, 9), 9)
	requireCompacted(t, "after success", h.tick(step, 9))

	compacted := fmt.Errorf("compact at 12: %w", mvcc.ErrCompacted)
	h.err.Store(&compacted)
	got = nil
	for i := 0; i < 20; i++ {
		got = append(got, h.tick(step, 12)...)
	}
	requireCompacted(t, "already compacted", got, 12)
}

// TestAutoCompactOnlyLeader: a follower samples but never compacts; once it leads it
// compacts at its next check to the revision of retention ago.
func TestAutoCompactOnlyLeader(t *testing.T) {
	const step = 6 * time.Minute
	h := startCompactor(t, CompactorModePeriodic, time.Hour, 0)
	h.leading.Store(false)
	for m := 6; m <= 180; m += 6 {
		requireCompacted(t, fmt.Sprintf("follower, minute %d", m), h.tick(step, int64(m)))
	}
	h.leading.Store(true)
	// Samples kept at minute 180: minutes 120..180.
	requireCompacted(t, "new leader", h.tick(step, 186), 120)
	requireCompacted(t, "next check", h.tick(step, 192))
}

// TestAutoCompactRevision: every 5 minutes, current revision - retention, when positive
// and new; only on the leader; ErrCompacted counts as done, other errors are retried.
func TestAutoCompactRevision(t *testing.T) {
	const step = 5 * time.Minute
	h := startCompactor(t, CompactorModeRevision, 10, 8)
	requireCompacted(t, "rev 8", h.tick(step, 8))
	requireCompacted(t, "rev 10", h.tick(step, 10))
	requireCompacted(t, "rev 25", h.tick(step, 25), 15)
	requireCompacted(t, "rev 25 again", h.tick(step, 25))
	h.leading.Store(false)
	requireCompacted(t, "follower", h.tick(step, 40))
	h.leading.Store(true)
	requireCompacted(t, "leader again", h.tick(step, 40), 30)
	injected := errors.New("injected")
	h.err.Store(&injected)
	requireCompacted(t, "failing", h.tick(step, 50), 40)
	compacted := fmt.Errorf("x: %w", mvcc.ErrCompacted)
	h.err.Store(&compacted)
	requireCompacted(t, "retried, already compacted", h.tick(step, 50), 40)
	requireCompacted(t, "done", h.tick(step, 50))
}

func TestParseCompactionRetention(t *testing.T) {
	for _, tc := range []struct {
		mode, in string
		want     time.Duration
		err      string
	}{
		{CompactorModePeriodic, "1", time.Hour, ""},
		{CompactorModePeriodic, "0", 0, ""},
		{CompactorModePeriodic, "1h30m", 90 * time.Minute, ""},
		{CompactorModePeriodic, "2s", 2 * time.Second, ""},
		{CompactorModeRevision, "1000", 1000, ""},
		{CompactorModeRevision, "5m", 5 * time.Minute, ""},
		{"", "1", 0, "--auto-compaction-mode is undefined"},
		{CompactorModePeriodic, "abc", 0, `error parsing CompactionRetention: time: invalid duration "abc"`},
		{CompactorModePeriodic, "-1", 0, `error parsing CompactionRetention: time: missing unit in duration "-1"`},
		{CompactorModeRevision, "1.5", 0, `error parsing CompactionRetention: time: missing unit in duration "1.5"`},
	} {
		got, err := ParseCompactionRetention(tc.mode, tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%s %q: err %v, want %q", tc.mode, tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s %q = %v, %v; want %v", tc.mode, tc.in, got, err, tc.want)
		}
	}
}
