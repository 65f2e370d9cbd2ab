package server

import "errors"

// Errors the member returns. Their text is etcd's server-side text; api maps each to
// etcd's gRPC code and client-facing message (clientv3 matches errors by message).
var (
	ErrStopped               = errors.New("etcdserver: server stopped")
	ErrNoLeader              = errors.New("etcdserver: no leader")
	ErrNotLeader             = errors.New("etcdserver: not leader")
	ErrLeaderChanged         = errors.New("etcdserver: leader changed")
	ErrTimeout               = errors.New("etcdserver: request timed out")
	ErrTooManyRequests       = errors.New("etcdserver: too many requests")
	ErrNoSpace               = errors.New("mvcc: database space exceeded")
	ErrKeyNotFound           = errors.New("etcdserver: key not found")
	ErrLeaseNotFound         = errors.New("lease not found")
	ErrCorrupt               = errors.New("etcdserver: corrupt cluster")
	ErrRequestTooLarge       = errors.New("etcdserver: request is too large")
	ErrUnhealthy             = errors.New("etcdserver: unhealthy cluster")
	ErrBadLeaderTransferee   = errors.New("etcdserver: bad leader transferee")
	ErrTimeoutLeaderTransfer = errors.New("etcdserver: request timed out, leader transfer took too long")
	// Membership errors: etcd's texts (its membership package and etcdserver).
	ErrIDNotFound              = errors.New("membership: ID not found")
	ErrIDRemoved               = errors.New("membership: ID removed")
	ErrIDExists                = errors.New("membership: ID exists")
	ErrPeerURLExists           = errors.New("membership: peerURL exists")
	ErrMemberNotLearner        = errors.New("membership: can only promote a learner member")
	ErrTooManyLearners         = errors.New("membership: too many learner members in cluster")
	ErrNotEnoughStartedMembers = errors.New("etcdserver: re-configuration failed due to not enough started members")
	ErrLearnerNotReady         = errors.New("etcdserver: can only promote a learner member which is in sync with leader")
	// ErrMemberRemoved is why a member stops once it applied its own removal.
	ErrMemberRemoved = errors.New("the member has been permanently removed from the cluster")
	// ErrClusterIDMismatch is why a member stops when its peers belong to another cluster.
	ErrClusterIDMismatch = errors.New("cluster ID mismatch")
	// ErrNotImplemented marks a request kind this member does not serve yet; api turns it
	// into codes.Unimplemented, never a success.
	ErrNotImplemented = errors.New("cairn: not implemented")
)
