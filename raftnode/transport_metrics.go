package raftnode

import (
	"github.com/cairn-kv/cairn/wal"
	"github.com/prometheus/client_golang/prometheus"
)

// Peer transport metrics, under etcd's names and labels (member ids in hex).
var (
	peerSentBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "etcd", Subsystem: "network", Name: "peer_sent_bytes_total",
		Help: "The total number of bytes sent to peers.",
	}, []string{"To"})
	peerReceivedBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "etcd", Subsystem: "network", Name: "peer_received_bytes_total",
		Help: "The total number of bytes received from peers.",
	}, []string{"From"})
	peerSentFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "etcd", Subsystem: "network", Name: "peer_sent_failures_total",
		Help: "The total number of send failures from peers.",
	}, []string{"To"})

	peerRoundTrip = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "etcd", Subsystem: "network", Name: "peer_round_trip_time_seconds",
		Help:    "Round-Trip-Time histogram between peers",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	}, []string{"To"})
	snapshotSendSuccess = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "etcd", Subsystem: "network", Name: "snapshot_send_success",
		Help: "Total number of successful snapshot sends",
	}, []string{"To"})
	snapshotSendFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "etcd", Subsystem: "network", Name: "snapshot_send_failures",
		Help: "Total number of snapshot send failures",
	}, []string{"To"})
	snapshotSendSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "etcd", Subsystem: "network", Name: "snapshot_send_total_duration_seconds",
		Help:    "Total latency distributions of v3 snapshot sends",
		Buckets: prometheus.ExponentialBuckets(0.1, 2, 10),
	}, []string{"To"})
	snapshotReceiveSuccess = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "etcd", Subsystem: "network", Name: "snapshot_receive_success",
		Help: "Total number of successful snapshot receives",
	}, []string{"From"})
	snapshotReceiveFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "etcd", Subsystem: "network", Name: "snapshot_receive_failures",
		Help: "Total number of snapshot receive failures",
	}, []string{"From"})
	snapshotReceiveSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "etcd", Subsystem: "network", Name: "snapshot_receive_total_duration_seconds",
		Help:    "Total latency distributions of v3 snapshot receives",
		Buckets: prometheus.ExponentialBuckets(0.1, 2, 10),
	}, []string{"From"})
)

// Collectors are the metrics of the peer transport and the WAL, for registering with a
// registry.
func Collectors() []prometheus.Collector {
	return append(wal.Collectors(), peerSentBytes, peerReceivedBytes, peerSentFailures, peerRoundTrip,
		snapshotSendSuccess, snapshotSendFailures, snapshotSendSeconds,
		snapshotReceiveSuccess, snapshotReceiveFailures, snapshotReceiveSeconds)
}
