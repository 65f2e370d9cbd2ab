package mvcc

import "github.com/prometheus/client_golang/prometheus"

// Metrics are shared by every Store in the process, under etcd's names.
var (
	rangeCounter = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "etcd", Subsystem: "mvcc", Name: "range_total",
		Help: "Total number of ranges seen by this member.",
	})
	putCounter = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "etcd", Subsystem: "mvcc", Name: "put_total",
		Help: "Total number of puts seen by this member.",
	})
	deleteCounter = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "etcd", Subsystem: "mvcc", Name: "delete_total",
		Help: "Total number of deletes seen by this member.",
	})
	txnCounter = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "etcd", Subsystem: "mvcc", Name: "txn_total",
		Help: "Total number of txns seen by this member.",
	})
	keysGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "etcd_debugging", Subsystem: "mvcc", Name: "keys_total",
		Help: "Total number of keys.",
	})
	compactionKeys = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "etcd_debugging", Subsystem: "mvcc", Name: "db_compaction_keys_total",
		Help: "Total number of db keys compacted.",
	})
	indexCompactionPause = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "etcd_debugging", Subsystem: "mvcc", Name: "index_compaction_pause_duration_milliseconds",
		Help:    "Bucketed histogram of index compaction pause duration.",
		Buckets: prometheus.ExponentialBuckets(0.5, 2, 12),
	})
	defragDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "etcd", Subsystem: "disk", Name: "backend_defrag_duration_seconds",
		Help: "The latency distribution of backend defragmentation.",
		// 100 ms to 409.6 s, as etcd's.
		Buckets: prometheus.ExponentialBuckets(.1, 2, 13),
	})
	dbTotalSize = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "etcd", Subsystem: "mvcc", Name: "db_total_size_in_bytes",
		Help: "Total size of the underlying database physically allocated in bytes.",
	})
	dbInUseSize = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "etcd", Subsystem: "mvcc", Name: "db_total_size_in_use_in_bytes",
		Help: "Total size of the underlying database logically in use in bytes.",
	})
	commitDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "etcd", Subsystem: "disk", Name: "backend_commit_duration_seconds",
		Help:    "The latency distributions of commit called by backend.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})

	watchStreamGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "etcd_debugging", Subsystem: "mvcc", Name: "watch_stream_total",
		Help: "Total number of watch streams.",
	})
	watcherGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "etcd_debugging", Subsystem: "mvcc", Name: "watcher_total",
		Help: "Total number of watchers.",
	})
	slowWatcherGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "etcd_debugging", Subsystem: "mvcc", Name: "slow_watcher_total",
		Help: "Total number of unsynced slow watchers.",
	})
	totalEventsCounter = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "etcd_debugging", Subsystem: "mvcc", Name: "events_total",
		Help: "Total number of events sent by this member.",
	})
	// A gauge, as in etcd: events queued on watch streams and not yet taken off them
	// (see ReportEventReceived).
	pendingEventsGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "etcd_debugging", Subsystem: "mvcc", Name: "pending_events_total",
		Help: "Total number of pending events to be sent.",
	})
)

// Collectors returns the package's metrics for registration.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		rangeCounter, putCounter, deleteCounter, txnCounter, keysGauge, compactionKeys,
		indexCompactionPause, dbTotalSize, dbInUseSize, commitDuration, defragDuration,
		watchStreamGauge, watcherGauge, slowWatcherGauge, totalEventsCounter, pendingEventsGauge,
	}
}
