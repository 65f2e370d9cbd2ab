package server

import (
	"fmt"
	"sync/atomic"
	"time"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/wal"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// bboltReserve is the backend's part of the default disk reserve: a commit writes its
// whole batch to new pages (copy on write) and grows the file by up to 16 MiB, bbolt's
// growth step once the file is past that size.
const bboltReserve = 16 << 20

// defaultDiskReserve is what a member may still have to write once it refuses client
// writes: the next WAL cut preallocates a whole segment (wal.SegmentSizeBytes, 64 MiB)
// and a backend commit needs up to bboltReserve; a raft snapshot file holds only the
// membership (a few KiB). A db a lagging member receives from the leader is the leader's
// size and is not reserved: a member without room for it fails that transfer, which the
// leader retries.
func defaultDiskReserve() int64 { return wal.SegmentSizeBytes + bboltReserve }

// diskGuard refuses the client writes that make the store grow (the requests etcd's
// NOSPACE alarm refuses: puts, txns with a put, lease grants; reads, deletes, compaction,
// lease revokes and member changes go on) while a disk the member writes to is full:
//
//   - proactively, while the free space of the data dir's or the WAL dir's file system,
//     read every DiskCheckInterval (statfs; requests only read the cached result), is
//     below DiskReserveBytes;
//   - reactively, while a write that failed for lack of space is being retried: a
//     backend commit (mvcc.Store.CommitBlocked) or the raft log (raftnode.Node.DiskFull).
//
// It is member-local and lifts the refusal by itself once space returns: it is not the
// NOSPACE alarm (raised through raft for --quota-backend-bytes, disarmed by hand). Each
// change between refusing and accepting is logged once, with its reason.
type diskGuard struct {
	s         *Server
	dirs      []string
	reserve   int64 // < 0: no free-space check
	freeBytes func(dir string) (uint64, error)

	free     []atomic.Int64        // last free bytes read, per dir (-1: unreadable)
	low      atomic.Pointer[error] // why free space is below the reserve, as of the last check
	refusing bool                  // as of the last check; owned by check's caller

	refused prometheus.Counter
}

func newDiskGuard(s *Server) *diskGuard {
	g := &diskGuard{
		s:         s,
		dirs:      []string{s.cfg.SnapPath(), s.cfg.WALPath()},
		reserve:   s.cfg.DiskReserveBytes,
		freeBytes: s.cfg.FreeBytes,
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "disk", Name: "writes_refused_total",
			Help: "Client writes this member refused because a disk it writes to is full.",
		}),
	}
	g.free = make([]atomic.Int64, len(g.dirs))
	return g
}

// refusal is why client writes are refused now, or nil: a cheap check for every request
// (atomic loads only).
func (g *diskGuard) refusal() error {
	if p := g.low.Load(); p != nil {
		return *p
	}
	if err := g.s.store.CommitBlocked(); err != nil {
		return fmt.Errorf("%w: member %x: a backend commit failed for lack of space and is being retried: %w", ErrDiskFull, g.s.id, err)
	}
	if err := g.s.node.DiskFull(); err != nil {
		return fmt.Errorf("%w: member %x: a raft log write failed for lack of space and is being retried: %w", ErrDiskFull, g.s.id, err)
	}
	return nil
}

// checkDiskSpace refuses, before it is proposed, a request that would make the store grow
// while the guard refuses writes.
func (s *Server) checkDiskSpace(r *pb.InternalRaftRequest) error {
	if quotaCost(r) == 0 {
		return nil
	}
	err := s.disk.refusal()
	if err != nil {
		s.disk.refused.Inc()
	}
	return err
}

// check reads the free space of every dir, and logs a change between refusing and
// accepting writes.
func (g *diskGuard) check() {
	var low error
	for i, dir := range g.dirs {
		free, err := g.freeBytes(dir)
		if err != nil {
			if g.free[i].Swap(-1) != -1 {
				g.s.lg.Warn("cannot read the free disk space", zap.String("dir", dir), zap.Error(err))
			}
			continue
		}
		g.free[i].Store(int64(min(free, 1<<62)))
		if g.reserve >= 0 && free < uint64(g.reserve) && low == nil {
			low = fmt.Errorf("%w: member %x: %s has %d bytes free, below the reserve of %d bytes (--disk-reserve-bytes)",
				ErrDiskFull, g.s.id, dir, free, g.reserve)
		}
	}
	if low != nil {
		g.low.Store(&low)
	} else {
		g.low.Store(nil)
	}
	why := g.refusal()
	switch {
	case why != nil && !g.refusing:
		g.s.lg.Warn("refusing client writes (puts, txns with a put, lease grants) until disk space returns; reads, deletes and compaction go on",
			g.fields(why)...)
	case why == nil && g.refusing:
		g.s.lg.Info("disk space is back; accepting client writes again", g.fields(nil)...)
	}
	g.refusing = why != nil
}

func (g *diskGuard) fields(why error) []zap.Field {
	fs := []zap.Field{zap.Int64("reserve-bytes", g.reserve)}
	for i, dir := range g.dirs {
		fs = append(fs, zap.Dict("dir", zap.String("path", dir), zap.Int64("free-bytes", g.free[i].Load())))
	}
	if why != nil {
		fs = append(fs, zap.String("reason", why.Error()))
	}
	return fs
}

// run checks every DiskCheckInterval until the member stops.
func (g *diskGuard) run() {
	t := time.NewTicker(g.s.cfg.DiskCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-g.s.stopping:
			return
		case <-t.C:
			g.check()
		}
	}
}

// collectors are the guard's metrics: free bytes per directory, the reserve, whether
// writes are refused and how many were.
func (g *diskGuard) collectors() []prometheus.Collector {
	cs := []prometheus.Collector{
		g.refused,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "cairn", Subsystem: "disk", Name: "reserve_bytes",
			Help: "Free space each file system the member writes to must keep (--disk-reserve-bytes; negative: not checked).",
		}, func() float64 { return float64(g.reserve) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "cairn", Subsystem: "disk", Name: "writes_refused",
			Help: "1 while this member refuses client writes because a disk it writes to is full, else 0.",
		}, func() float64 {
			if g.refusal() != nil {
				return 1
			}
			return 0
		}),
	}
	for i, dir := range g.dirs {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "cairn", Subsystem: "disk", Name: "free_bytes",
			Help:        "Free space on the file system of a directory the member writes to, as last read (-1: unreadable).",
			ConstLabels: prometheus.Labels{"dir": dir},
		}, func() float64 { return float64(g.free[i].Load()) }))
	}
	return cs
}
