package server

import (
	"github.com/cairn-kv/cairn/lease"
	"github.com/cairn-kv/cairn/mvcc"
	"github.com/cairn-kv/cairn/raftnode"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// serverMetrics are the member's own metrics, with etcd's names so existing dashboards
// and alerts work unchanged.
type serverMetrics struct {
	proposalsPending prometheus.Gauge
	proposalsFailed  prometheus.Counter
	// proposalBatchRequests: requests per raft entry the proposal batcher proposed.
	proposalBatchRequests prometheus.Histogram
	// Built-in backups (Cairn only).
	backupLastSuccess prometheus.Gauge
	backupFailures    prometheus.Counter
	backupDuration    prometheus.Histogram
	collectors        []prometheus.Collector
}

func newServerMetrics(s *Server) *serverMetrics {
	m := &serverMetrics{
		proposalsPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "etcd", Subsystem: "server", Name: "proposals_pending",
			Help: "The current number of pending proposals to commit.",
		}),
		proposalsFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "etcd", Subsystem: "server", Name: "proposals_failed_total",
			Help: "The total number of failed proposals seen.",
		}),
		proposalBatchRequests: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "cairn", Subsystem: "server", Name: "proposal_batch_requests",
			Help:    "Client writes per raft entry proposed (proposal batching; 1: proposed alone).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 8),
		}),
		backupLastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "cairn", Subsystem: "backup", Name: "last_success_timestamp_seconds",
			Help: "Unix time of the last backup saved and verified in --backup-dir (0: none yet).",
		}),
		backupFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "backup", Name: "failures_total",
			Help: "Backups that failed (the error is logged).",
		}),
		backupDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "cairn", Subsystem: "backup", Name: "duration_seconds",
			Help:    "How long a backup took, saving and verifying.",
			Buckets: prometheus.ExponentialBuckets(.01, 2, 16),
		}),
	}
	gaugeFunc := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "etcd", Subsystem: "server", Name: name, Help: help}, f)
	}
	m.collectors = []prometheus.Collector{
		m.proposalsPending, m.proposalsFailed, m.proposalBatchRequests, m.backupLastSuccess, m.backupFailures, m.backupDuration,
		gaugeFunc("has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.", func() float64 {
			if s.node.Leader() != 0 {
				return 1
			}
			return 0
		}),
		gaugeFunc("is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.", func() float64 {
			if s.node.Leader() == s.id {
				return 1
			}
			return 0
		}),
		gaugeFunc("proposals_committed_total", "The total number of consensus proposals committed.", func() float64 {
			return float64(s.node.CommittedIndex())
		}),
		gaugeFunc("proposals_applied_total", "The total number of consensus proposals applied.", func() float64 {
			return float64(s.applied.Load())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "etcd", Subsystem: "server", Name: "quota_backend_bytes",
			Help: "Current backend storage quota size in bytes.",
		}, func() float64 { return float64(s.quota()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}
	m.collectors = append(m.collectors, s.disk.collectors()...)
	return m
}

func (s *Server) registerMetrics() {
	for _, c := range s.metrics.collectors {
		s.reg.MustRegister(c)
	}
	for _, c := range append(append(mvcc.Collectors(), lease.Collectors()...), raftnode.Collectors()...) {
		s.reg.MustRegister(c)
	}
}
