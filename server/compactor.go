package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/cairn-kv/cairn/mvcc"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"go.uber.org/zap"
)

// Auto-compaction (--auto-compaction-mode, --auto-compaction-retention), with etcd 3.6's
// schedules (its v3compactor package):
//
//   - periodic: retention is a duration. Every retention/10 (at most 6 minutes: the
//     interval is capped at 1h/10) the member samples the current revision and keeps the
//     last retention/interval+1 samples, so the oldest is the revision of about retention
//     ago. The first compaction comes retention after start, later ones every
//     min(retention, 1h) after the last success, each to the oldest sample; none when that
//     revision was already compacted to.
//   - revision: every 5 minutes, compact to current revision - retention, when that is
//     positive and not the revision compacted to last time.
//
// Every member runs the schedule and samples revisions, but only the leader compacts
// (etcd pauses the compactor on followers and resumes it on the leader): a new leader
// compacts at its next check to the revision its own samples hold for retention ago. The
// compaction is an ordinary Compaction request through raft (not physical); a failed one
// is retried at the next check, and ErrCompacted counts as done.

// Compactor modes, etcd's names.
const (
	CompactorModePeriodic = "periodic"
	CompactorModeRevision = "revision"
)

const (
	// revisionCompactInterval is how often the revision mode checks (etcd's revInterval).
	revisionCompactInterval = 5 * time.Minute
	// periodicDivisor splits the periodic retention into sampling intervals (etcd's
	// retryDivisor).
	periodicDivisor = 10
)

// ParseCompactionRetention reads --auto-compaction-retention as etcd does: a bare
// non-negative integer is hours in periodic mode and a revision count in revision mode
// (returned as a Duration of that many nanoseconds, as etcd keeps it); anything else
// must be a Go duration.
func ParseCompactionRetention(mode, retention string) (time.Duration, error) {
	if h, err := strconv.Atoi(retention); err == nil && h >= 0 {
		switch mode {
		case CompactorModeRevision:
			return time.Duration(int64(h)), nil
		case CompactorModePeriodic:
			return time.Duration(int64(h)) * time.Hour, nil
		case "":
			return 0, errors.New("--auto-compaction-mode is undefined")
		}
	}
	d, err := time.ParseDuration(retention)
	if err != nil {
		return 0, fmt.Errorf("error parsing CompactionRetention: %w", err)
	}
	return d, nil
}

// clock is the compactor's time source; tests drive a fake one.
type clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// autoCompactor runs one of the two schedules until stop is closed.
type autoCompactor struct {
	lg        *zap.Logger
	clock     clock
	mode      string
	retention time.Duration // periodic: the duration; revision: a revision count
	rev       func() int64  // the current revision
	leading   func() bool   // only the leader compacts
	compact   func(ctx context.Context, rev int64) error
	stop      <-chan struct{}
}

func (s *Server) newAutoCompactor() *autoCompactor {
	return &autoCompactor{
		lg:        s.lg,
		clock:     realClock{},
		mode:      s.cfg.AutoCompactionMode,
		retention: s.cfg.AutoCompactionRetention,
		rev:       s.store.Rev,
		leading:   func() bool { return s.node.Leader() == s.id && s.isReady() },
		compact: func(ctx context.Context, rev int64) error {
			_, err := s.Compact(ctx, &pb.CompactionRequest{Revision: rev})
			return err
		},
		stop: s.stopping,
	}
}

func (c *autoCompactor) run() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	if c.mode == CompactorModeRevision {
		c.runRevision(ctx)
		return
	}
	c.runPeriodic(ctx)
}

// periodicInterval is the sampling (and retry) interval: retention/10, with retention
// capped at 1h.
func (c *autoCompactor) periodicInterval() time.Duration {
	return min(c.retention, time.Hour) / periodicDivisor
}

func (c *autoCompactor) runPeriodic(ctx context.Context) {
	interval := c.periodicInterval()
	if interval <= 0 {
		c.lg.Warn("auto periodic compaction disabled: retention too short", zap.Duration("compact-period", c.retention))
		return
	}
	keep := int(c.retention/interval) + 1
	revs := make([]int64, 0, keep)
	var lastRev int64
	lastSuccess := c.clock.Now()
	wait := c.retention // the first compaction waits the whole retention
	for {
		revs = append(revs, c.rev())
		if len(revs) > keep {
			revs = revs[1:] // revs[0] is the revision of about retention ago
		}
		select {
		case <-ctx.Done():
			return
		case <-c.clock.After(interval):
		}
		if !c.leading() {
			continue
		}
		rev := revs[0]
		if c.clock.Now().Sub(lastSuccess) < wait || rev == lastRev {
			continue
		}
		wait = min(c.retention, time.Hour)
		c.lg.Info("starting auto periodic compaction", zap.Int64("revision", rev), zap.Duration("compact-period", c.retention))
		start := c.clock.Now()
		if err := c.compact(ctx, rev); err != nil && !errors.Is(err, mvcc.ErrCompacted) {
			c.lg.Warn("failed auto periodic compaction", zap.Int64("revision", rev), zap.Duration("compact-period", c.retention),
				zap.Duration("retry-interval", interval), zap.Error(err))
			continue
		}
		c.lg.Info("completed auto periodic compaction", zap.Int64("revision", rev), zap.Duration("compact-period", c.retention),
			zap.Duration("took", c.clock.Now().Sub(start)))
		lastRev = rev
		lastSuccess = c.clock.Now()
	}
}

func (c *autoCompactor) runRevision(ctx context.Context) {
	retention := int64(c.retention)
	var prev int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.clock.After(revisionCompactInterval):
		}
		if !c.leading() {
			continue
		}
		rev := c.rev() - retention
		if rev <= 0 || rev == prev {
			continue
		}
		c.lg.Info("starting auto revision compaction", zap.Int64("revision", rev), zap.Int64("revision-compaction-retention", retention))
		start := c.clock.Now()
		if err := c.compact(ctx, rev); err != nil && !errors.Is(err, mvcc.ErrCompacted) {
			c.lg.Warn("failed auto revision compaction", zap.Int64("revision", rev), zap.Int64("revision-compaction-retention", retention),
				zap.Duration("retry-interval", revisionCompactInterval), zap.Error(err))
			continue
		}
		prev = rev
		c.lg.Info("completed auto revision compaction", zap.Int64("revision", rev), zap.Int64("revision-compaction-retention", retention),
			zap.Duration("took", c.clock.Now().Sub(start)))
	}
}
