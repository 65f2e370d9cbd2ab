package framework

import (
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RequireGRPCError asserts that err, as returned by a raw gRPC client stub
// (pb.NewKVClient(cli.ActiveConnection()) etc.), is a gRPC status with
// exactly the given code and message: what the server put on the wire.
func RequireGRPCError(t testing.TB, err error, code codes.Code, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want gRPC %v %q", code, msg)
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("got non-status error %T %v, want gRPC %v %q", err, err, code, msg)
	}
	if st.Code() != code || st.Message() != msg {
		t.Fatalf("got gRPC %v %q, want %v %q", st.Code(), st.Message(), code, msg)
	}
}

// RequireClientError asserts that err, as returned by clientv3, is the
// rpctypes error want (clientv3 maps server errors by exact message text to
// rpctypes.EtcdError values) and that its message is want's.
func RequireClientError(t testing.TB, err error, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("got error %T %q, want %T %q", err, err.Error(), want, want.Error())
	}
	var ee rpctypes.EtcdError
	if !errors.As(err, &ee) {
		t.Fatalf("error %T %v is not an rpctypes.EtcdError", err, err)
	}
	if ee.Error() != want.Error() {
		t.Fatalf("got message %q, want %q", ee.Error(), want.Error())
	}
}

// StatusOf returns the code and message of a gRPC status error, or
// (codes.Unknown, err.Error()) for another error, or (OK, "") for nil.
func StatusOf(err error) (codes.Code, string) {
	if err == nil {
		return codes.OK, ""
	}
	if st, ok := status.FromError(err); ok {
		return st.Code(), st.Message()
	}
	return codes.Unknown, err.Error()
}
