package server

import "errors"

// Errors the member returns. Their text is etcd's server-side text; api maps each to
// etcd's gRPC code and client-facing message (clientv3 matches errors by message).
var (
	ErrStopped         = errors.New("etcdserver: server stopped")
	ErrNoLeader        = errors.New("etcdserver: no leader")
	ErrNotLeader       = errors.New("etcdserver: not leader")
	ErrLeaderChanged   = errors.New("etcdserver: leader changed")
	ErrTimeout         = errors.New("etcdserver: request timed out")
	ErrTooManyRequests = errors.New("etcdserver: too many requests")
	ErrNoSpace         = errors.New("mvcc: database space exceeded")
	ErrKeyNotFound     = errors.New("etcdserver: key not found")
	ErrLeaseNotFound   = errors.New("lease not found")
	ErrCorrupt         = errors.New("etcdserver: corrupt cluster")
	ErrRequestTooLarge = errors.New("etcdserver: request is too large")
	ErrUnhealthy       = errors.New("etcdserver: unhealthy cluster")
	// ErrNotImplemented marks a request kind this member does not serve yet; api turns it
	// into codes.Unimplemented, never a success.
	ErrNotImplemented = errors.New("cairn: not implemented")
)
