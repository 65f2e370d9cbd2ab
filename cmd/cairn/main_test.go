package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-kv/cairn/api"
	"github.com/cairn-kv/cairn/lease"
	"github.com/cairn-kv/cairn/mvcc"
	"github.com/cairn-kv/cairn/server"
)

// The member's packages return their errors under their own names (server.ErrX,
// lease.ErrX, mvcc.ErrX); each must be the value api maps, with etcd's code and message,
// also when wrapped.
func TestServerErrorsMapToEtcd(t *testing.T) {
	tests := []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{server.ErrStopped, codes.Unavailable, "etcdserver: server stopped"},
		{server.ErrNoLeader, codes.Unavailable, "etcdserver: no leader"},
		{server.ErrNotLeader, codes.FailedPrecondition, "etcdserver: not leader"},
		{server.ErrLeaderChanged, codes.Unavailable, "etcdserver: leader changed"},
		{server.ErrTimeout, codes.Unavailable, "etcdserver: request timed out"},
		// etcd sends this one without a gRPC code (codes.Unknown); clients match the text.
		{server.ErrTooManyRequests, codes.Unknown, "etcdserver: too many requests"},
		{server.ErrNoSpace, codes.ResourceExhausted, "etcdserver: mvcc: database space exceeded"},
		{server.ErrKeyNotFound, codes.InvalidArgument, "etcdserver: key not found"},
		{server.ErrLeaseNotFound, codes.NotFound, "etcdserver: requested lease not found"},
		{server.ErrCorrupt, codes.DataLoss, "etcdserver: corrupt cluster"},
		{server.ErrRequestTooLarge, codes.InvalidArgument, "etcdserver: request is too large"},
		{server.ErrUnhealthy, codes.Unavailable, "etcdserver: unhealthy cluster"},
		{server.ErrBadLeaderTransferee, codes.FailedPrecondition, "etcdserver: bad leader transferee"},
		{server.ErrTimeoutLeaderTransfer, codes.Unavailable, "etcdserver: request timed out, leader transfer took too long"},
		{server.ErrIDNotFound, codes.NotFound, "etcdserver: member not found"},
		{server.ErrIDRemoved, codes.NotFound, "etcdserver: member not found"},
		{server.ErrIDExists, codes.FailedPrecondition, "etcdserver: member ID already exist"},
		{server.ErrPeerURLExists, codes.FailedPrecondition, "etcdserver: Peer URLs already exists"},
		{server.ErrMemberNotLearner, codes.FailedPrecondition, "etcdserver: can only promote a learner member"},
		{server.ErrTooManyLearners, codes.FailedPrecondition, "etcdserver: too many learner members in cluster"},
		{server.ErrNotEnoughStartedMembers, codes.FailedPrecondition, "etcdserver: re-configuration failed due to not enough started members"},
		{server.ErrLearnerNotReady, codes.FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader"},
		{server.ErrNotImplemented, codes.Unimplemented, server.ErrNotImplemented.Error()},
		{lease.ErrLeaseNotFound, codes.NotFound, "etcdserver: requested lease not found"},
		{lease.ErrLeaseExists, codes.FailedPrecondition, "etcdserver: lease already exists"},
		{lease.ErrLeaseTTLTooLarge, codes.OutOfRange, "etcdserver: too large lease TTL"},
		{mvcc.ErrCompacted, codes.OutOfRange, "etcdserver: mvcc: required revision has been compacted"},
		{mvcc.ErrFutureRev, codes.OutOfRange, "etcdserver: mvcc: required revision is a future revision"},
	}
	for _, tt := range tests {
		for _, err := range []error{tt.err, fmt.Errorf("server: apply: %w", tt.err)} {
			s, _ := status.FromError(api.ToGRPCError(err))
			if s.Code() != tt.code || s.Message() != tt.msg {
				t.Errorf("%q -> code=%v msg=%q; want %v %q", err, s.Code(), s.Message(), tt.code, tt.msg)
			}
		}
	}
}

func TestRunVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--version"}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	if out.String() != versionText() || !strings.HasPrefix(out.String(), "etcd Version: "+server.EtcdVersion+"\nGit SHA: ") ||
		!strings.HasSuffix(out.String(), "Cairn Version: "+server.CairnVersion+"\n") {
		t.Fatalf("--version printed %q", out.String())
	}
}

func TestRunBadValueExits1(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--snapshot-count", "abc"}, nil, &out, &errb); code != 1 {
		t.Fatalf("exit %d; want 1", code)
	}
	if !strings.Contains(errb.String(), `invalid value "abc" for flag -snapshot-count`) {
		t.Fatalf("stderr %q", errb.String())
	}
	errb.Reset()
	if code := run([]string{"--election-timeout=200"}, nil, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "--election-timeout[200ms] should be at least as 5 times as --heartbeat-interval[100ms]") {
		t.Fatalf("exit %d stderr %q", code, errb.String())
	}
}
