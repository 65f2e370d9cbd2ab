package server

import "github.com/cairn-kv/cairn/internal/errs"

// Errors the member returns, defined once in internal/errs (api maps them to etcd's gRPC
// code and client-facing message by value); these names keep server's callers as they were.
var (
	ErrStopped               = errs.ErrStopped
	ErrNoLeader              = errs.ErrNoLeader
	ErrNotLeader             = errs.ErrNotLeader
	ErrLeaderChanged         = errs.ErrLeaderChanged
	ErrTimeout               = errs.ErrTimeout
	ErrTooManyRequests       = errs.ErrTooManyRequests
	ErrNoSpace               = errs.ErrNoSpace
	ErrKeyNotFound           = errs.ErrKeyNotFound
	ErrLeaseNotFound         = errs.ErrLeaseNotFound
	ErrCorrupt               = errs.ErrCorrupt
	ErrRequestTooLarge       = errs.ErrRequestTooLarge
	ErrUnhealthy             = errs.ErrUnhealthy
	ErrBadLeaderTransferee   = errs.ErrBadLeaderTransferee
	ErrTimeoutLeaderTransfer = errs.ErrTimeoutLeaderTransfer

	ErrIDNotFound              = errs.ErrIDNotFound
	ErrIDRemoved               = errs.ErrIDRemoved
	ErrIDExists                = errs.ErrIDExists
	ErrPeerURLExists           = errs.ErrPeerURLExists
	ErrMemberNotLearner        = errs.ErrMemberNotLearner
	ErrTooManyLearners         = errs.ErrTooManyLearners
	ErrNotEnoughStartedMembers = errs.ErrNotEnoughStartedMembers
	ErrLearnerNotReady         = errs.ErrLearnerNotReady

	// ErrMemberRemoved is why a member stops once it applied its own removal.
	ErrMemberRemoved = errs.ErrMemberRemoved
	// ErrClusterIDMismatch is why a member stops when its peers belong to another cluster.
	ErrClusterIDMismatch = errs.ErrClusterIDMismatch
	// ErrNotImplemented marks a request kind this member does not serve yet.
	ErrNotImplemented = errs.ErrNotImplemented
	// ErrDiskFull is this member refusing a write while a disk it writes to is full.
	ErrDiskFull = errs.ErrDiskFull
)
