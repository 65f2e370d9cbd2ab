package server

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A follower gets the leader's error of a forwarded request as status text; it must
// become the member's error value again, or api could not map it (e.g. a promote of a
// learner not in sync, forwarded to the leader).
func TestLeaseForwardErrorKeepsMemberErrorValue(t *testing.T) {
	s := &Server{}
	for _, want := range []error{ErrLearnerNotReady, ErrMemberNotLearner, ErrIDNotFound, ErrNoSpace} {
		err := s.leaseForwardError("member promote", 1, "http://127.0.0.1:1", status.Error(codes.Unknown, want.Error()))
		if !errors.Is(err, want) {
			t.Errorf("leader's %q came back as %v, not that error", want, err)
		}
	}
}
