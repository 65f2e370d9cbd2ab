package api

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-kv/cairn/internal/errs"
)

// wireOf is what etcd 3.6 sends for each member error (v3rpc togRPCError and rpctypes):
// the contract backendErrors must keep, written out so a changed table fails here.
var wireOf = map[error]struct {
	code codes.Code
	msg  string
}{
	errs.ErrStopped:                 {codes.Unavailable, "etcdserver: server stopped"},
	errs.ErrNoLeader:                {codes.Unavailable, "etcdserver: no leader"},
	errs.ErrNotLeader:               {codes.FailedPrecondition, "etcdserver: not leader"},
	errs.ErrLeaderChanged:           {codes.Unavailable, "etcdserver: leader changed"},
	errs.ErrTimeout:                 {codes.Unavailable, "etcdserver: request timed out"},
	errs.ErrTooManyRequests:         {codes.Unknown, "etcdserver: too many requests"},
	errs.ErrNoSpace:                 {codes.ResourceExhausted, "etcdserver: mvcc: database space exceeded"},
	errs.ErrKeyNotFound:             {codes.InvalidArgument, "etcdserver: key not found"},
	errs.ErrCorrupt:                 {codes.DataLoss, "etcdserver: corrupt cluster"},
	errs.ErrRequestTooLarge:         {codes.InvalidArgument, "etcdserver: request is too large"},
	errs.ErrUnhealthy:               {codes.Unavailable, "etcdserver: unhealthy cluster"},
	errs.ErrBadLeaderTransferee:     {codes.FailedPrecondition, "etcdserver: bad leader transferee"},
	errs.ErrTimeoutLeaderTransfer:   {codes.Unavailable, "etcdserver: request timed out, leader transfer took too long"},
	errs.ErrIDNotFound:              {codes.NotFound, "etcdserver: member not found"},
	errs.ErrIDRemoved:               {codes.NotFound, "etcdserver: member not found"},
	errs.ErrIDExists:                {codes.FailedPrecondition, "etcdserver: member ID already exist"},
	errs.ErrPeerURLExists:           {codes.FailedPrecondition, "etcdserver: Peer URLs already exists"},
	errs.ErrMemberNotLearner:        {codes.FailedPrecondition, "etcdserver: can only promote a learner member"},
	errs.ErrTooManyLearners:         {codes.FailedPrecondition, "etcdserver: too many learner members in cluster"},
	errs.ErrNotEnoughStartedMembers: {codes.FailedPrecondition, "etcdserver: re-configuration failed due to not enough started members"},
	errs.ErrLearnerNotReady:         {codes.FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader"},
	errs.ErrLeaseNotFound:           {codes.NotFound, "etcdserver: requested lease not found"},
	errs.ErrLeaseExists:             {codes.FailedPrecondition, "etcdserver: lease already exists"},
	errs.ErrLeaseTTLTooLarge:        {codes.OutOfRange, "etcdserver: too large lease TTL"},
	errs.ErrCompacted:               {codes.OutOfRange, "etcdserver: mvcc: required revision has been compacted"},
	errs.ErrFutureRev:               {codes.OutOfRange, "etcdserver: mvcc: required revision is a future revision"},
	errs.ErrNotImplemented:          {codes.Unimplemented, "cairn: not implemented"},

	errs.ErrRootUserNotExist:     {codes.FailedPrecondition, "etcdserver: root user does not exist"},
	errs.ErrRootRoleNotExist:     {codes.FailedPrecondition, "etcdserver: root user does not have root role"},
	errs.ErrUserAlreadyExist:     {codes.FailedPrecondition, "etcdserver: user name already exists"},
	errs.ErrUserEmpty:            {codes.InvalidArgument, "etcdserver: user name is empty"},
	errs.ErrUserNotFound:         {codes.FailedPrecondition, "etcdserver: user name not found"},
	errs.ErrRoleAlreadyExist:     {codes.FailedPrecondition, "etcdserver: role name already exists"},
	errs.ErrRoleNotFound:         {codes.FailedPrecondition, "etcdserver: role name not found"},
	errs.ErrRoleEmpty:            {codes.InvalidArgument, "etcdserver: role name is empty"},
	errs.ErrAuthFailed:           {codes.InvalidArgument, "etcdserver: authentication failed, invalid user ID or password"},
	errs.ErrPermissionNotGiven:   {codes.InvalidArgument, "etcdserver: permission not given"},
	errs.ErrPermissionDenied:     {codes.PermissionDenied, "etcdserver: permission denied"},
	errs.ErrRoleNotGranted:       {codes.FailedPrecondition, "etcdserver: role is not granted to the user"},
	errs.ErrPermissionNotGranted: {codes.FailedPrecondition, "etcdserver: permission is not granted to the role"},
	errs.ErrAuthNotEnabled:       {codes.FailedPrecondition, "etcdserver: authentication is not enabled"},
	errs.ErrInvalidAuthToken:     {codes.Unauthenticated, "etcdserver: invalid auth token"},
	errs.ErrInvalidAuthMgmt:      {codes.InvalidArgument, "etcdserver: invalid auth management"},
	errs.ErrAuthOldRevision:      {codes.InvalidArgument, "etcdserver: revision of auth store is old"},
	// Downgrade (kept apart so the rows above keep their alignment).
	errs.ErrWrongDowngradeVersionFormat:   {codes.InvalidArgument, "etcdserver: wrong downgrade target version format"},
	errs.ErrInvalidDowngradeTargetVersion: {codes.InvalidArgument, "etcdserver: invalid downgrade target version"},
	errs.ErrDowngradeInProcess:            {codes.FailedPrecondition, "etcdserver: cluster has a downgrade job in progress"},
	errs.ErrUnknownMethod:                 {codes.Unknown, "etcdserver: unknown method"},
	// Cairn only; an empty message means the error's own (wrapped) text.
	errs.ErrDiskFull: {codes.ResourceExhausted, ""},
}

// TestBackendErrorsCoverEveryError checks every row of backendErrors against etcd's wire
// code and message, bare and wrapped, and that every error of internal/errs has a row
// or is deliberately unmapped.
func TestBackendErrorsCoverEveryError(t *testing.T) {
	inTable := make(map[error]bool)
	for _, m := range backendErrors {
		if inTable[m.err] {
			t.Errorf("%q has two rows", m.err)
		}
		inTable[m.err] = true
		want, ok := wireOf[m.err]
		if !ok {
			t.Errorf("%q: row without an expected wire error in this test", m.err)
			continue
		}
		for _, err := range []error{m.err, fmt.Errorf("server: txn put: %w", m.err), errors.Join(errors.New("x"), fmt.Errorf("a: %w", m.err))} {
			s, ok := status.FromError(toGRPCError(err))
			msg := want.msg
			if msg == "" {
				msg = err.Error()
			}
			if !ok || s.Code() != want.code || s.Message() != msg {
				t.Errorf("toGRPCError(%q) = %v %q; want %v %q", err, s.Code(), s.Message(), want.code, msg)
			}
		}
	}
	if len(inTable) != len(wireOf) {
		t.Errorf("table has %d rows, test expects %d", len(inTable), len(wireOf))
	}
	unmapped := make(map[error]bool)
	for _, e := range unmappedBackendErrors {
		unmapped[e] = true
		if inTable[e] {
			t.Errorf("%q is both mapped and unmapped", e)
		}
		if s, _ := status.FromError(toGRPCError(e)); s.Code() != codes.Unknown || s.Message() != e.Error() {
			t.Errorf("unmapped %q -> %v %q; want Unknown with its text", e, s.Code(), s.Message())
		}
	}
	for _, e := range errs.All() {
		if !inTable[e] && !unmapped[e] {
			t.Errorf("internal/errs.%q has no row in backendErrors and is not listed as unmapped", e)
		}
	}
	// Same text is not the same error: only the values map.
	if s, _ := status.FromError(toGRPCError(errors.New(errs.ErrNoLeader.Error()))); s.Code() != codes.Unknown {
		t.Errorf("a copy of ErrNoLeader's text mapped to %v; only the value may map", s.Code())
	}
}
