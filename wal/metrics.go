package wal

import "github.com/prometheus/client_golang/prometheus"

// WAL metrics, under etcd's names.
var (
	fsyncDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "etcd", Subsystem: "disk", Name: "wal_fsync_duration_seconds",
		Help:    "The latency distributions of fsync called by WAL.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})
	writeDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "etcd", Subsystem: "disk", Name: "wal_write_duration_seconds",
		Help:    "The latency distributions of write called by WAL.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})
	writeBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "etcd", Subsystem: "disk", Name: "wal_write_bytes_total",
		Help: "Total number of bytes written in WAL.",
	})
)

// Collectors are the WAL's metrics, for registering with a registry.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{fsyncDuration, writeDuration, writeBytes}
}
