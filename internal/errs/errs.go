package errs

import "errors"

var (
	ErrStopped               = errors.New("etcdserver: server stopped")
	ErrNoLeader              = errors.New("etcdserver: no leader")
	ErrNotLeader             = errors.New("etcdserver: not leader")
	ErrLeaderChanged         = errors.New("etcdserver: leader changed")
	ErrTimeout               = errors.New("etcdserver: request timed out")
	ErrTooManyRequests       = errors.New("etcdserver: too many requests")
	ErrNoSpace               = errors.New("mvcc: database space exceeded")
	ErrKeyNotFound           = errors.New("etcdserver: key not found")
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

	// Lease errors: etcd's lease package texts.
	ErrLeaseNotFound    = errors.New("lease not found")
	ErrLeaseExists      = errors.New("lease already exists")
	ErrLeaseTTLTooLarge = errors.New("too large lease TTL")

	// Store errors: etcd's mvcc package texts.
	ErrCompacted = errors.New("mvcc: required revision has been compacted")
	ErrFutureRev = errors.New("mvcc: required revision is a future revision")

	// Auth errors: etcd's auth package texts.
	ErrRootUserNotExist     = errors.New("auth: root user does not exist")
	ErrRootRoleNotExist     = errors.New("auth: root user does not have root role")
	ErrUserAlreadyExist     = errors.New("auth: user already exists")
	ErrUserEmpty            = errors.New("auth: user name is empty")
	ErrUserNotFound         = errors.New("auth: user not found")
	ErrRoleAlreadyExist     = errors.New("auth: role already exists")
	ErrRoleNotFound         = errors.New("auth: role not found")
	ErrRoleEmpty            = errors.New("auth: role name is empty")
	ErrPermissionNotGiven   = errors.New("auth: permission not given")
	ErrAuthFailed           = errors.New("auth: authentication failed, invalid user ID or password")
	ErrNoPasswordUser       = errors.New("auth: authentication failed, password was given for no password user")
	ErrPermissionDenied     = errors.New("auth: permission denied")
	ErrRoleNotGranted       = errors.New("auth: role is not granted to the user")
	ErrPermissionNotGranted = errors.New("auth: permission is not granted to the role")
	ErrAuthNotEnabled       = errors.New("auth: authentication is not enabled")
	ErrAuthOldRevision      = errors.New("auth: revision in header is old")
	ErrInvalidAuthToken     = errors.New("auth: invalid auth token")
	ErrInvalidAuthMgmt      = errors.New("auth: invalid auth management")
	// Downgrade errors: etcd's texts.
	ErrWrongDowngradeVersionFormat   = errors.New("etcdserver: wrong downgrade target version format")
	ErrInvalidDowngradeTargetVersion = errors.New("etcdserver: invalid downgrade target version")
	ErrDowngradeInProcess            = errors.New("etcdserver: cluster has a downgrade job in progress")
	// ErrUnknownMethod is etcd's answer to a request kind it does not know (etcd sends it
	// as codes.Unknown).
	ErrUnknownMethod = errors.New("etcdserver: unknown method")

	// ErrNotImplemented marks a request kind this member does not serve yet; api turns it
	// into codes.Unimplemented, never a success.
	ErrNotImplemented = errors.New("cairn: not implemented")

	// Why a member stops; never an answer to a client request (api maps them to nothing).
	ErrMemberRemoved     = errors.New("the member has been permanently removed from the cluster")
	ErrClusterIDMismatch = errors.New("cluster ID mismatch")
	// ErrBackendFailed marks a storage failure (a failed bbolt write or commit, a stored
	// value that does not decode): the store takes no more writes and the member stops.
	ErrBackendFailed = errors.New("mvcc: backend failed")

	// ErrDiskFull is a member refusing a write because a file system it writes to is
	// (nearly) full, or a write to it just failed with ENOSPC. It is member-local and
	// lifted by the member itself once space returns (unlike the NOSPACE alarm, which
	// is raised through raft and needs a disarm). It goes out wrapped with the member,
	// the directory and its free bytes, and the client gets that whole text.
	ErrDiskFull = errors.New("cairn: not enough free disk space, writes refused")
)

// All lists every error above, so a test can check that each one is mapped (or
// deliberately left unmapped) at the client edge. Add a new error here too.
func All() []error {
	return []error{
		ErrStopped, ErrNoLeader, ErrNotLeader, ErrLeaderChanged, ErrTimeout,
		ErrTooManyRequests, ErrNoSpace, ErrKeyNotFound, ErrCorrupt, ErrRequestTooLarge,
		ErrUnhealthy, ErrBadLeaderTransferee, ErrTimeoutLeaderTransfer,
		ErrIDNotFound, ErrIDRemoved, ErrIDExists, ErrPeerURLExists, ErrMemberNotLearner,
		ErrTooManyLearners, ErrNotEnoughStartedMembers, ErrLearnerNotReady,
		ErrLeaseNotFound, ErrLeaseExists, ErrLeaseTTLTooLarge,
		ErrCompacted, ErrFutureRev,
		ErrRootUserNotExist, ErrRootRoleNotExist, ErrUserAlreadyExist, ErrUserEmpty,
		ErrUserNotFound, ErrRoleAlreadyExist, ErrRoleNotFound, ErrRoleEmpty,
		ErrPermissionNotGiven, ErrAuthFailed, ErrNoPasswordUser, ErrPermissionDenied,
		ErrRoleNotGranted, ErrPermissionNotGranted, ErrAuthNotEnabled, ErrAuthOldRevision,
		ErrInvalidAuthToken, ErrInvalidAuthMgmt,
		ErrWrongDowngradeVersionFormat, ErrInvalidDowngradeTargetVersion, ErrDowngradeInProcess, ErrUnknownMethod,
		ErrNotImplemented,
		ErrMemberRemoved, ErrClusterIDMismatch, ErrBackendFailed, ErrDiskFull,
	}
}

// FromMessage returns the error of All whose text is msg, or a new error with that text.
// Only for errors that crossed a process boundary as bare text (a peer's gRPC status
// message): inside a process errors are compared by value.
func FromMessage(msg string) error {
	for _, e := range All() {
		if e.Error() == msg {
			return e
		}
	}
	return errors.New(msg)
}
