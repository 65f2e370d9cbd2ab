package raftnode

import "github.com/prometheus/client_golang/prometheus"

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
)

// Collectors are the peer transport's metrics, for registering with a registry.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{peerSentBytes, peerReceivedBytes, peerSentFailures}
}
