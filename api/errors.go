package api

import (
	"context"
	"errors"

	"github.com/cairn-kv/cairn/internal/errs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// gRPC errors as etcd's server sends them: code and message are exactly etcd 3.6's
// (api/v3rpc/rpctypes). clientv3 turns a received error back into its typed error by
// looking up the message text, so the text must not change.
var (
	ErrGRPCEmptyKey                = status.Error(codes.InvalidArgument, "etcdserver: key is not provided")
	ErrGRPCKeyNotFound             = status.Error(codes.InvalidArgument, "etcdserver: key not found")
	ErrGRPCValueProvided           = status.Error(codes.InvalidArgument, "etcdserver: value is provided")
	ErrGRPCLeaseProvided           = status.Error(codes.InvalidArgument, "etcdserver: lease is provided")
	ErrGRPCTooManyOps              = status.Error(codes.InvalidArgument, "etcdserver: too many operations in txn request")
	ErrGRPCDuplicateKey            = status.Error(codes.InvalidArgument, "etcdserver: duplicate key given in txn request")
	ErrGRPCInvalidClientAPIVersion = status.Error(codes.InvalidArgument, "etcdserver: invalid client api version")
	ErrGRPCInvalidSortOption       = status.Error(codes.InvalidArgument, "etcdserver: invalid sort option")
	ErrGRPCCompacted               = status.Error(codes.OutOfRange, "etcdserver: mvcc: required revision has been compacted")
	ErrGRPCFutureRev               = status.Error(codes.OutOfRange, "etcdserver: mvcc: required revision is a future revision")
	ErrGRPCNoSpace                 = status.Error(codes.ResourceExhausted, "etcdserver: mvcc: database space exceeded")

	ErrGRPCLeaseNotFound    = status.Error(codes.NotFound, "etcdserver: requested lease not found")
	ErrGRPCLeaseExist       = status.Error(codes.FailedPrecondition, "etcdserver: lease already exists")
	ErrGRPCLeaseTTLTooLarge = status.Error(codes.OutOfRange, "etcdserver: too large lease TTL")

	ErrGRPCWatchCanceled = status.Error(codes.Canceled, "etcdserver: watch canceled")

	ErrGRPCMemberExist            = status.Error(codes.FailedPrecondition, "etcdserver: member ID already exist")
	ErrGRPCPeerURLExist           = status.Error(codes.FailedPrecondition, "etcdserver: Peer URLs already exists")
	ErrGRPCMemberNotEnoughStarted = status.Error(codes.FailedPrecondition, "etcdserver: re-configuration failed due to not enough started members")
	ErrGRPCMemberBadURLs          = status.Error(codes.InvalidArgument, "etcdserver: given member URLs are invalid")
	ErrGRPCMemberNotFound         = status.Error(codes.NotFound, "etcdserver: member not found")
	ErrGRPCMemberNotLearner       = status.Error(codes.FailedPrecondition, "etcdserver: can only promote a learner member")
	ErrGRPCLearnerNotReady        = status.Error(codes.FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader")
	ErrGRPCTooManyLearners        = status.Error(codes.FailedPrecondition, "etcdserver: too many learner members in cluster")
	ErrGRPCClusterIDMismatch      = status.Error(codes.FailedPrecondition, "etcdserver: cluster ID mismatch")

	ErrGRPCRequestTooLarge        = status.Error(codes.InvalidArgument, "etcdserver: request is too large")
	ErrGRPCRequestTooManyRequests = status.Error(codes.ResourceExhausted, "etcdserver: too many requests")

	ErrGRPCRootUserNotExist     = status.Error(codes.FailedPrecondition, "etcdserver: root user does not exist")
	ErrGRPCRootRoleNotExist     = status.Error(codes.FailedPrecondition, "etcdserver: root user does not have root role")
	ErrGRPCUserAlreadyExist     = status.Error(codes.FailedPrecondition, "etcdserver: user name already exists")
	ErrGRPCUserEmpty            = status.Error(codes.InvalidArgument, "etcdserver: user name is empty")
	ErrGRPCUserNotFound         = status.Error(codes.FailedPrecondition, "etcdserver: user name not found")
	ErrGRPCRoleAlreadyExist     = status.Error(codes.FailedPrecondition, "etcdserver: role name already exists")
	ErrGRPCRoleNotFound         = status.Error(codes.FailedPrecondition, "etcdserver: role name not found")
	ErrGRPCRoleEmpty            = status.Error(codes.InvalidArgument, "etcdserver: role name is empty")
	ErrGRPCAuthFailed           = status.Error(codes.InvalidArgument, "etcdserver: authentication failed, invalid user ID or password")
	ErrGRPCPermissionNotGiven   = status.Error(codes.InvalidArgument, "etcdserver: permission not given")
	ErrGRPCPermissionDenied     = status.Error(codes.PermissionDenied, "etcdserver: permission denied")
	ErrGRPCRoleNotGranted       = status.Error(codes.FailedPrecondition, "etcdserver: role is not granted to the user")
	ErrGRPCPermissionNotGranted = status.Error(codes.FailedPrecondition, "etcdserver: permission is not granted to the role")
	ErrGRPCAuthNotEnabled       = status.Error(codes.FailedPrecondition, "etcdserver: authentication is not enabled")
	ErrGRPCInvalidAuthToken     = status.Error(codes.Unauthenticated, "etcdserver: invalid auth token")
	ErrGRPCInvalidAuthMgmt      = status.Error(codes.InvalidArgument, "etcdserver: invalid auth management")
	ErrGRPCAuthOldRevision      = status.Error(codes.InvalidArgument, "etcdserver: revision of auth store is old")

	ErrGRPCNoLeader                   = status.Error(codes.Unavailable, "etcdserver: no leader")
	ErrGRPCNotLeader                  = status.Error(codes.FailedPrecondition, "etcdserver: not leader")
	ErrGRPCLeaderChanged              = status.Error(codes.Unavailable, "etcdserver: leader changed")
	ErrGRPCNotCapable                 = status.Error(codes.FailedPrecondition, "etcdserver: not capable")
	ErrGRPCStopped                    = status.Error(codes.Unavailable, "etcdserver: server stopped")
	ErrGRPCTimeout                    = status.Error(codes.Unavailable, "etcdserver: request timed out")
	ErrGRPCTimeoutDueToLeaderFail     = status.Error(codes.Unavailable, "etcdserver: request timed out, possibly due to previous leader failure")
	ErrGRPCTimeoutDueToConnectionLost = status.Error(codes.Unavailable, "etcdserver: request timed out, possibly due to connection lost")
	ErrGRPCTimeoutWaitAppliedIndex    = status.Error(codes.Unavailable, "etcdserver: request timed out, waiting for the applied index took too long")
	ErrGRPCUnhealthy                  = status.Error(codes.Unavailable, "etcdserver: unhealthy cluster")
	ErrGRPCCorrupt                    = status.Error(codes.DataLoss, "etcdserver: corrupt cluster")
	ErrGRPCNotSupportedForLearner     = status.Error(codes.FailedPrecondition, "etcdserver: rpc not supported for learner")
	ErrGRPCBadLeaderTransferee        = status.Error(codes.FailedPrecondition, "etcdserver: bad leader transferee")
	ErrGRPCTimeoutLeaderTransfer      = status.Error(codes.Unavailable, "etcdserver: request timed out, leader transfer took too long")

	ErrGRPCWrongDowngradeVersionFormat   = status.Error(codes.InvalidArgument, "etcdserver: wrong downgrade target version format")
	ErrGRPCInvalidDowngradeTargetVersion = status.Error(codes.InvalidArgument, "etcdserver: invalid downgrade target version")
	ErrGRPCClusterVersionUnavailable     = status.Error(codes.FailedPrecondition, "etcdserver: cluster version not found during downgrade")
	ErrGRPCDowngradeInProcess            = status.Error(codes.FailedPrecondition, "etcdserver: cluster has a downgrade job in progress")
	ErrGRPCNoInflightDowngrade           = status.Error(codes.FailedPrecondition, "etcdserver: no inflight downgrade job")

	ErrGRPCCanceled         = status.Error(codes.Canceled, "etcdserver: request canceled")
	ErrGRPCDeadlineExceeded = status.Error(codes.DeadlineExceeded, "etcdserver: context deadline exceeded")
)

// ErrGRPCRangeStreamSort answers a RangeStream sorted other than ascending by key: etcd
// 3.7 answers codes.Unimplemented (use Range); the text is Cairn's.
var ErrGRPCRangeStreamSort = status.Error(codes.Unimplemented,
	"etcdserver: RangeStream supports no sort order other than ascending by key; use Range")

// errGRPCTooManyRequestsOnWire is what etcd actually puts on the wire for its server's
// "too many requests": etcd maps it to the client-side rpctypes value, which carries no
// gRPC status, so grpc-go sends it as codes.Unknown with the message. clientv3 still
// recognises it by message (and does not retry it either way).
var errGRPCTooManyRequestsOnWire = status.Error(codes.Unknown, "etcdserver: too many requests")

// backendErrors maps each error the member returns (internal/errs; server, lease and
// mvcc alias them) to etcd's gRPC error, as etcd's v3rpc togRPCError does for its own
// server errors. Matched with errors.Is, so wrapped errors map too; the first match in
// this order wins. api imports neither server nor mvcc: the values live in internal/errs.
// A withOwnText row sends its code with the whole error's text instead of a fixed
// message.
var backendErrors = []struct {
	err  error
	grpc error
}{
	{errs.ErrStopped, ErrGRPCStopped},
	{errs.ErrNoLeader, ErrGRPCNoLeader},
	{errs.ErrNotLeader, ErrGRPCNotLeader},
	{errs.ErrLeaderChanged, ErrGRPCLeaderChanged},
	{errs.ErrTimeout, ErrGRPCTimeout},
	{errs.ErrTooManyRequests, errGRPCTooManyRequestsOnWire},
	{errs.ErrNoSpace, ErrGRPCNoSpace},
	{errs.ErrKeyNotFound, ErrGRPCKeyNotFound},
	{errs.ErrCorrupt, ErrGRPCCorrupt},
	{errs.ErrRequestTooLarge, ErrGRPCRequestTooLarge},
	{errs.ErrUnhealthy, ErrGRPCUnhealthy},
	{errs.ErrBadLeaderTransferee, ErrGRPCBadLeaderTransferee},
	{errs.ErrTimeoutLeaderTransfer, ErrGRPCTimeoutLeaderTransfer},
	{errs.ErrIDNotFound, ErrGRPCMemberNotFound},
	{errs.ErrIDRemoved, ErrGRPCMemberNotFound},
	{errs.ErrIDExists, ErrGRPCMemberExist},
	{errs.ErrPeerURLExists, ErrGRPCPeerURLExist},
	{errs.ErrMemberNotLearner, ErrGRPCMemberNotLearner},
	{errs.ErrTooManyLearners, ErrGRPCTooManyLearners},
	{errs.ErrNotEnoughStartedMembers, ErrGRPCMemberNotEnoughStarted},
	{errs.ErrLearnerNotReady, ErrGRPCLearnerNotReady},
	{errs.ErrLeaseNotFound, ErrGRPCLeaseNotFound},
	{errs.ErrLeaseExists, ErrGRPCLeaseExist},
	{errs.ErrLeaseTTLTooLarge, ErrGRPCLeaseTTLTooLarge},
	{errs.ErrCompacted, ErrGRPCCompacted},
	{errs.ErrFutureRev, ErrGRPCFutureRev},
	{errs.ErrRootUserNotExist, ErrGRPCRootUserNotExist},
	{errs.ErrRootRoleNotExist, ErrGRPCRootRoleNotExist},
	{errs.ErrUserAlreadyExist, ErrGRPCUserAlreadyExist},
	{errs.ErrUserEmpty, ErrGRPCUserEmpty},
	{errs.ErrUserNotFound, ErrGRPCUserNotFound},
	{errs.ErrRoleAlreadyExist, ErrGRPCRoleAlreadyExist},
	{errs.ErrRoleNotFound, ErrGRPCRoleNotFound},
	{errs.ErrRoleEmpty, ErrGRPCRoleEmpty},
	{errs.ErrAuthFailed, ErrGRPCAuthFailed},
	{errs.ErrPermissionNotGiven, ErrGRPCPermissionNotGiven},
	{errs.ErrPermissionDenied, ErrGRPCPermissionDenied},
	{errs.ErrRoleNotGranted, ErrGRPCRoleNotGranted},
	{errs.ErrPermissionNotGranted, ErrGRPCPermissionNotGranted},
	{errs.ErrAuthNotEnabled, ErrGRPCAuthNotEnabled},
	{errs.ErrInvalidAuthToken, ErrGRPCInvalidAuthToken},
	{errs.ErrInvalidAuthMgmt, ErrGRPCInvalidAuthMgmt},
	{errs.ErrAuthOldRevision, ErrGRPCAuthOldRevision},
	{errs.ErrWrongDowngradeVersionFormat, ErrGRPCWrongDowngradeVersionFormat},
	{errs.ErrInvalidDowngradeTargetVersion, ErrGRPCInvalidDowngradeTargetVersion},
	{errs.ErrDowngradeInProcess, ErrGRPCDowngradeInProcess},
	{errs.ErrUnknownMethod, status.Error(codes.Unknown, errs.ErrUnknownMethod.Error())},
	// A request kind the member does not serve yet answers codes.Unimplemented, never a
	// fake success.
	{errs.ErrNotImplemented, status.Error(codes.Unimplemented, errs.ErrNotImplemented.Error())},
	// Cairn's member-local refusal while a disk is (nearly) full: etcd has no such error
	// (it panics on ENOSPC); ResourceExhausted as its NOSPACE, which clientv3 does not
	// retry.
	{errs.ErrDiskFull, withOwnText(codes.ResourceExhausted)},
}

// withOwnText, as a row's gRPC error, sends that code with the whole error's text: the
// error carries what the client needs to act on (which member, which directory, how
// many bytes are free).
type withOwnText codes.Code

func (c withOwnText) Error() string { return codes.Code(c).String() + " with the error's own text" }

// unmappedBackendErrors are the errs values no client request is answered with (why a
// member stops); like any unknown error they go out as codes.Unknown with their text.
//
// ErrNoPasswordUser is one of them as in etcd, which has no gRPC error for it: a client
// sees codes.Unknown with the auth package's text.
var unmappedBackendErrors = []error{errs.ErrNoPasswordUser, errs.ErrMemberRemoved, errs.ErrClusterIDMismatch, errs.ErrBackendFailed}

// toGRPCError turns a Backend error into the gRPC error etcd would send for it.
func toGRPCError(err error) error {
	if err == nil {
		return nil
	}
	// Already a gRPC status (e.g. from validation): pass it through unchanged.
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return err
	}
	// The caller's own cancellation or deadline: etcd hands these to grpc-go unchanged,
	// which sends codes.Canceled "context canceled" / codes.DeadlineExceeded "context
	// deadline exceeded" (status.FromContextError keeps the error's text).
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	for _, m := range backendErrors {
		if errors.Is(err, m.err) {
			if c, ok := m.grpc.(withOwnText); ok {
				return status.Error(codes.Code(c), err.Error())
			}
			return m.grpc
		}
	}
	return status.Error(codes.Unknown, err.Error())
}

// ToGRPCError is toGRPCError for packages that must check the mapping against the
// member's error values (cmd/cairn's tests).
func ToGRPCError(err error) error { return toGRPCError(err) }
