package api

import (
	"context"
	"errors"
	"io"
	"testing"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/errs"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// recvAll reads a RangeStream to its end: the chunks, and the error that ended it (nil
// at io.EOF).
func recvAll(t *testing.T, kv pb.KVClient, r *pb.RangeRequest) ([]*pb.RangeResponse, error) {
	t.Helper()
	st, err := kv.RangeStream(context.Background(), r)
	if err != nil {
		return nil, err
	}
	var out []*pb.RangeResponse
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, m.GetRangeResponse())
	}
}

// RangeStream refuses what Range refuses with the same errors, and sorts other than
// by key ascending with Unimplemented, all before the member is asked.
func TestRangeStreamValidation(t *testing.T) {
	fb := newFakeBackend()
	addr, _ := startClientPort(t, fb)
	kv := pb.NewKVClient(dial(t, addr))
	for _, tc := range []struct {
		name string
		r    *pb.RangeRequest
		want error
	}{
		{"empty key", &pb.RangeRequest{}, ErrGRPCEmptyKey},
		{"bad order", &pb.RangeRequest{Key: []byte("a"), SortOrder: 7}, ErrGRPCInvalidSortOption},
		{"bad target", &pb.RangeRequest{Key: []byte("a"), SortTarget: 9}, ErrGRPCInvalidSortOption},
		{"descend by key", &pb.RangeRequest{Key: []byte("a"), SortOrder: pb.RangeRequest_DESCEND}, ErrGRPCRangeStreamSort},
		{"by version", &pb.RangeRequest{Key: []byte("a"), SortTarget: pb.RangeRequest_VERSION}, ErrGRPCRangeStreamSort},
		{"ascend by mod", &pb.RangeRequest{Key: []byte("a"), SortOrder: pb.RangeRequest_ASCEND, SortTarget: pb.RangeRequest_MOD}, ErrGRPCRangeStreamSort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := fb.numCalls()
			_, err := recvAll(t, kv, tc.r)
			if status.Code(err) != status.Code(tc.want) || status.Convert(err).Message() != status.Convert(tc.want).Message() {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.want != ErrGRPCRangeStreamSort {
				_, rerr := kv.Range(context.Background(), tc.r)
				if status.Convert(rerr).Message() != status.Convert(err).Message() {
					t.Fatalf("Range answers %v, RangeStream %v", rerr, err)
				}
			}
			if fb.numCalls() != before {
				t.Fatalf("the member was asked: %v", fb.calls)
			}
		})
	}
	for _, r := range []*pb.RangeRequest{
		{Key: []byte("a"), SortOrder: pb.RangeRequest_ASCEND},
		{Key: []byte("a"), SortOrder: pb.RangeRequest_ASCEND, SortTarget: pb.RangeRequest_KEY},
	} {
		if _, err := recvAll(t, kv, r); err != nil {
			t.Fatalf("%v: %v", r, err)
		}
	}
}

// The member's chunks arrive in order, one message each; only the last has a header,
// filled as Range's is; merged they are the answer.
func TestRangeStreamChunks(t *testing.T) {
	fb := newFakeBackend()
	fb.streamChunks = [][]*mvccpb.KeyValue{
		{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("b")}},
		{{Key: []byte("c")}},
		{{Key: []byte("d")}},
	}
	addr, _ := startClientPort(t, fb)
	kv := pb.NewKVClient(dial(t, addr))
	got, err := recvAll(t, kv, &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z")})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d messages, want 3", len(got))
	}
	merged := &pb.RangeResponse{}
	for i, m := range got {
		if (m.Header != nil) != (i == 2) || (i < 2 && (m.Count != 0 || m.More)) {
			t.Fatalf("message %d: %v", i, m)
		}
		proto.Merge(merged, m)
	}
	want := &pb.RangeResponse{
		Header: &pb.ResponseHeader{ClusterId: 100, MemberId: 42, RaftTerm: 3, Revision: 7},
		Kvs:    []*mvccpb.KeyValue{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("b")}, {Key: []byte("c")}, {Key: []byte("d")}},
		Count:  99, More: true,
	}
	if !proto.Equal(merged, want) {
		t.Fatalf("merged %v, want %v", merged, want)
	}
}

// A member error after chunks went out ends the stream with etcd's error for it; a
// learner serves no RangeStream (etcd serves no stream but Snapshot on a learner).
func TestRangeStreamErrors(t *testing.T) {
	fb := newFakeBackend()
	fb.streamChunks = [][]*mvccpb.KeyValue{{{Key: []byte("a")}}, {{Key: []byte("b")}}}
	fb.rangeErr = errs.ErrCompacted
	addr, _ := startClientPort(t, fb)
	kv := pb.NewKVClient(dial(t, addr))
	got, err := recvAll(t, kv, &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z")})
	if len(got) != 1 || status.Convert(err).Message() != status.Convert(ErrGRPCCompacted).Message() ||
		status.Code(err) != status.Code(ErrGRPCCompacted) {
		t.Fatalf("%d messages, err %v; want 1 then %v", len(got), err, ErrGRPCCompacted)
	}
	fb.mu.Lock()
	fb.learner, fb.rangeErr = true, nil
	fb.mu.Unlock()
	if _, err := recvAll(t, kv, &pb.RangeRequest{Key: []byte("a"), Serializable: true}); status.Convert(err).Message() != status.Convert(ErrGRPCNotSupportedForLearner).Message() {
		t.Fatalf("on a learner: %v, want %v", err, ErrGRPCNotSupportedForLearner)
	}
}
