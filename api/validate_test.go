package api

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-kv/cairn/internal/errs"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

func put(k string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k)}}}
}

func get(k string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte(k)}}}
}

func del(k, end string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte(k), RangeEnd: []byte(end)}}}
}

func txn(then, els []*pb.RequestOp) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: then, Failure: els}}}
}

func ops(n int, f func(i int) *pb.RequestOp) []*pb.RequestOp {
	out := make([]*pb.RequestOp, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

func ops1(o ...*pb.RequestOp) []*pb.RequestOp { return o }

// wantStatus checks code and message exactly.
func wantStatus(t *testing.T, name string, got error, want error) {
	t.Helper()
	if want == nil {
		if got != nil {
			t.Errorf("%s: got %v, want success", name, got)
		}
		return
	}
	gs, ok := status.FromError(got)
	ws, _ := status.FromError(want)
	if !ok || got == nil {
		t.Errorf("%s: got %v (not a status), want %v", name, got, want)
		return
	}
	if gs.Code() != ws.Code() || gs.Message() != ws.Message() {
		t.Errorf("%s: got code=%v msg=%q, want code=%v msg=%q", name, gs.Code(), gs.Message(), ws.Code(), ws.Message())
	}
}

func TestTxnValidation(t *testing.T) {
	many := func(n int) []*pb.RequestOp {
		return ops(n, func(i int) *pb.RequestOp { return put(fmt.Sprint("k", i)) })
	}
	nested := func(n int) *pb.RequestOp {
		return txn(ops(n, func(i int) *pb.RequestOp { return put(fmt.Sprint("n", i)) }), nil)
	}
	cmps := func(n int) []*pb.Compare {
		out := make([]*pb.Compare, n)
		for i := range out {
			out[i] = &pb.Compare{Key: []byte("c")}
		}
		return out
	}
	tests := []struct {
		name string
		r    *pb.TxnRequest
		want error
	}{
		{"empty txn", &pb.TxnRequest{}, nil},
		{"128 ops", &pb.TxnRequest{Success: many(128), Failure: many(128), Compare: cmps(128)}, nil},
		{"129 success", &pb.TxnRequest{Success: many(129)}, ErrGRPCTooManyOps},
		{"129 failure", &pb.TxnRequest{Failure: many(129)}, ErrGRPCTooManyOps},
		{"129 compares", &pb.TxnRequest{Compare: cmps(129)}, ErrGRPCTooManyOps},
		{"nested within parent's leftover", &pb.TxnRequest{Success: append(many(99), nested(28))}, nil},
		{"nested over parent's leftover", &pb.TxnRequest{Success: append(many(99), nested(29))}, ErrGRPCTooManyOps},
		{"compare empty key", &pb.TxnRequest{Compare: []*pb.Compare{{Key: nil}}}, ErrGRPCEmptyKey},
		{"op without request", &pb.TxnRequest{Success: []*pb.RequestOp{{}}}, ErrGRPCKeyNotFound},
		{"put empty key", &pb.TxnRequest{Success: ops1(put(""))}, ErrGRPCEmptyKey},
		{"range empty key in failure", &pb.TxnRequest{Failure: ops1(get(""))}, ErrGRPCEmptyKey},
		{"delete empty key in nested", &pb.TxnRequest{Success: ops1(txn(nil, ops1(del("", ""))))}, ErrGRPCEmptyKey},
		{"put ignore_value with value", &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{
			RequestPut: &pb.PutRequest{Key: []byte("a"), Value: []byte("v"), IgnoreValue: true}}}}}, ErrGRPCValueProvided},
		{"bad sort in txn range", &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{
			RequestRange: &pb.RangeRequest{Key: []byte("a"), SortOrder: 9}}}}}, ErrGRPCInvalidSortOption},
		// validity before duplicates: an empty key is reported even with a duplicate
		{"empty key beats duplicate", &pb.TxnRequest{Success: ops1(put("a"), put("a"), put(""))}, ErrGRPCEmptyKey},

		// duplicate keys
		{"two puts", &pb.TxnRequest{Success: ops1(put("a"), put("a"))}, ErrGRPCDuplicateKey},
		{"two puts in failure", &pb.TxnRequest{Failure: ops1(put("a"), put("a"))}, ErrGRPCDuplicateKey},
		{"same put in both branches", &pb.TxnRequest{Success: ops1(put("a")), Failure: ops1(put("a"))}, nil},
		{"put and delete key", &pb.TxnRequest{Success: ops1(put("a"), del("a", ""))}, ErrGRPCDuplicateKey},
		{"put inside deleted range", &pb.TxnRequest{Success: ops1(del("a", "c"), put("b"))}, ErrGRPCDuplicateKey},
		{"put at range end", &pb.TxnRequest{Success: ops1(del("a", "c"), put("c"))}, nil},
		{"put at range start", &pb.TxnRequest{Success: ops1(put("a"), del("a", "c"))}, ErrGRPCDuplicateKey},
		{"put before range", &pb.TxnRequest{Success: ops1(put("0"), del("a", "c"))}, nil},
		{"overlapping deletes", &pb.TxnRequest{Success: ops1(del("a", "z"), del("b", "c"), del("b", ""))}, nil},
		{"put vs delete prefix-style", &pb.TxnRequest{Success: ops1(del("foo", "fop"), put("foo/bar"))}, ErrGRPCDuplicateKey},
		// range_end "\x00" deletes every key from key on (etcd's check misses this one)
		{"put vs delete from-key", &pb.TxnRequest{Success: ops1(del("a", "\x00"), put("b"))}, ErrGRPCDuplicateKey},
		{"put vs delete from-key, put first", &pb.TxnRequest{Success: ops1(put("b"), del("a", "\x00"))}, ErrGRPCDuplicateKey},
		{"put at from-key start", &pb.TxnRequest{Success: ops1(del("a", "\x00"), put("a"))}, ErrGRPCDuplicateKey},
		{"put below from-key", &pb.TxnRequest{Success: ops1(del("b", "\x00"), put("a"))}, nil},
		{"nested put vs outer from-key delete", &pb.TxnRequest{Success: ops1(del("a", "\x00"), txn(nil, ops1(put("zz"))))}, ErrGRPCDuplicateKey},
		{"put vs delete of every key", &pb.TxnRequest{Success: ops1(del("\x00", "\x00"), put("k"))}, ErrGRPCDuplicateKey},
		{"inverted range deletes nothing", &pb.TxnRequest{Success: ops1(del("c", "a"), put("b"))}, nil},
		// etcd checks a put only against the deletes before it at each level
		{"nested put then nested delete", &pb.TxnRequest{Success: ops1(txn(ops1(put("b")), nil), txn(ops1(del("a", "c")), nil))}, nil},
		{"touching deletes merged", &pb.TxnRequest{Success: ops1(del("a", "b"), del("b", "c"), put("b"))}, ErrGRPCDuplicateKey},
		{"put and range same key", &pb.TxnRequest{Success: ops1(put("a"), get("a"))}, nil},
		{"nested put vs outer put", &pb.TxnRequest{Success: ops1(put("a"), txn(ops1(put("a")), nil))}, ErrGRPCDuplicateKey},
		{"nested else put vs outer put", &pb.TxnRequest{Success: ops1(txn(nil, ops1(put("a"))), put("a"))}, ErrGRPCDuplicateKey},
		{"nested then/else same key", &pb.TxnRequest{Success: ops1(txn(ops1(put("a")), ops1(put("a"))))}, nil},
		{"two nested txns same key", &pb.TxnRequest{Success: ops1(txn(ops1(put("a")), nil), txn(nil, ops1(put("a"))))}, ErrGRPCDuplicateKey},
		{"nested put in outer delete", &pb.TxnRequest{Success: ops1(del("a", "c"), txn(ops1(put("b")), nil))}, ErrGRPCDuplicateKey},
		{"outer put in nested delete", &pb.TxnRequest{Success: ops1(txn(nil, ops1(del("b", ""))), put("b"))}, ErrGRPCDuplicateKey},
		{"nested delete then nested put", &pb.TxnRequest{Success: ops1(txn(ops1(del("a", "c")), nil), txn(ops1(put("b")), nil))}, ErrGRPCDuplicateKey},
		{"nested put in own other-branch delete", &pb.TxnRequest{Success: ops1(txn(ops1(put("b")), ops1(del("b", ""))))}, nil},
		{"nested duplicate inside", &pb.TxnRequest{Failure: ops1(txn(ops1(put("b"), put("b")), nil))}, ErrGRPCDuplicateKey},
		{"deep nesting", &pb.TxnRequest{Success: ops1(put("x"), txn(ops1(txn(ops1(txn(ops1(put("x")), nil)), nil)), nil))}, ErrGRPCDuplicateKey},
	}
	for _, tt := range tests {
		err := checkTxn(tt.r, 128)
		wantStatus(t, tt.name, err, tt.want)
	}
}

// nestedTxn is a txn whose every level carries k compares and k success ops (nested txns
// down to depth, puts of distinct keys at the bottom): within etcd's per-level budget
// when k*(depth+1) <= maxTxnOps, with k + k^2 + ... compares and ops in all.
func nestedTxn(k, depth int, prefix string) *pb.TxnRequest {
	r := &pb.TxnRequest{}
	for i := range k {
		r.Compare = append(r.Compare, &pb.Compare{Key: []byte("c")})
		if depth == 0 {
			r.Success = append(r.Success, put(fmt.Sprintf("%s/%d", prefix, i)))
		} else {
			r.Success = append(r.Success, &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: nestedTxn(k, depth-1, fmt.Sprintf("%s/%d", prefix, i))}})
		}
	}
	return r
}

func TestTxnTotalOpsBound(t *testing.T) {
	const maxOps = 128
	limit := txnTotalOpsFactor * maxOps
	tooLarge := status.Errorf(codes.InvalidArgument,
		"cairn: txn has more than %d compares and operations counting every nested txn (%d x --max-txn-ops)", limit, txnTotalOpsFactor)
	flat := func(n int) []*pb.RequestOp {
		return ops(n, func(i int) *pb.RequestOp { return put(fmt.Sprint("k", i)) })
	}
	cmps := make([]*pb.Compare, maxOps)
	for i := range cmps {
		cmps[i] = &pb.Compare{Key: []byte("c")}
	}
	// 16 compares + 16 txns, each 16 + 16 (+ 16 x (16 + 16) below): 16*2 + 16*32 + 256*32.
	deep := nestedTxn(16, 2, "k")
	if n := countTxnOps(deep, 1<<30); n != 16*2+16*32+256*32 {
		t.Fatalf("countTxnOps(deep) = %d", n)
	}
	tests := []struct {
		name string
		r    *pb.TxnRequest
		want error
	}{
		{"largest flat txn", &pb.TxnRequest{Compare: cmps, Success: flat(maxOps), Failure: flat(maxOps)}, nil},
		{"nested within etcd's per-level budget, over the total", deep, tooLarge},
		{"etcd's too-many-ops first", &pb.TxnRequest{Success: append(flat(129), txn(flat(600), nil))}, ErrGRPCTooManyOps},
		{"duplicate key first", &pb.TxnRequest{Success: ops1(put("k/0/0/0"), &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: deep}})}, ErrGRPCDuplicateKey},
	}
	for _, tt := range tests {
		wantStatus(t, tt.name, checkTxn(tt.r, maxOps), tt.want)
	}
	// Exactly at the bound is accepted, one more is not: 2 nested txns (budget 126 each)
	// of 1 + 124 + 124 + 6 and 1 + 126 + 126 + 4 = 512 = 4 x 128.
	prefixed := func(p string, n int) []*pb.RequestOp {
		return ops(n, func(i int) *pb.RequestOp { return put(fmt.Sprint(p, i)) })
	}
	at := &pb.TxnRequest{Success: ops1(
		&pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Compare: cmps[:124], Success: prefixed("a", 124), Failure: prefixed("a", 6)}}},
		&pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Compare: cmps[:126], Success: prefixed("b", 126), Failure: prefixed("b", 4)}}},
	)}
	if n := countTxnOps(at, 1<<30); n != limit {
		t.Fatalf("count %d, want %d", n, limit)
	}
	wantStatus(t, "exactly at the bound", checkTxn(at, maxOps), nil)
	at.Success[1].GetRequestTxn().Failure = prefixed("b", 5)
	wantStatus(t, "one over the bound", checkTxn(at, maxOps), tooLarge)
	if err := checkTxnRequest(at, maxOps); err != nil {
		t.Fatalf("one over the bound breaks etcd's own limits: %v", err)
	}
}

func TestKVValidationReachesNoBackend(t *testing.T) {
	b := newFakeBackend()
	kv := &kvServer{b: b, maxTxnOps: 128}
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"range empty key", func() error { _, err := kv.Range(ctx, &pb.RangeRequest{}); return err }, ErrGRPCEmptyKey},
		{"range empty key with range_end", func() error {
			_, err := kv.Range(ctx, &pb.RangeRequest{RangeEnd: []byte("z")})
			return err
		}, ErrGRPCEmptyKey},
		{"range bad sort order", func() error {
			_, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("a"), SortOrder: 3})
			return err
		}, ErrGRPCInvalidSortOption},
		{"range bad sort target", func() error {
			_, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("a"), SortTarget: 5})
			return err
		}, ErrGRPCInvalidSortOption},
		{"put empty key", func() error { _, err := kv.Put(ctx, &pb.PutRequest{Value: []byte("v")}); return err }, ErrGRPCEmptyKey},
		{"put ignore_value with value", func() error {
			_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("a"), Value: []byte("v"), IgnoreValue: true})
			return err
		}, ErrGRPCValueProvided},
		{"put ignore_lease with lease", func() error {
			_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("a"), Lease: 5, IgnoreLease: true})
			return err
		}, ErrGRPCLeaseProvided},
		{"put empty key beats ignore_value", func() error {
			_, err := kv.Put(ctx, &pb.PutRequest{Value: []byte("v"), IgnoreValue: true})
			return err
		}, ErrGRPCEmptyKey},
		{"delete empty key", func() error { _, err := kv.DeleteRange(ctx, &pb.DeleteRangeRequest{}); return err }, ErrGRPCEmptyKey},
		{"txn too many", func() error {
			_, err := kv.Txn(ctx, &pb.TxnRequest{Success: ops(129, func(i int) *pb.RequestOp { return get("a") })})
			return err
		}, ErrGRPCTooManyOps},
		{"txn duplicate", func() error {
			_, err := kv.Txn(ctx, &pb.TxnRequest{Success: ops1(put("a"), put("a"))})
			return err
		}, ErrGRPCDuplicateKey},
	}
	for _, tt := range tests {
		wantStatus(t, tt.name, tt.call(), tt.want)
	}
	if n := b.numCalls(); n != 0 {
		t.Fatalf("invalid requests reached the backend %d times: %v", n, b.calls)
	}

	// Valid requests reach it, with the header filled.
	resp, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("a"), IgnoreValue: true, IgnoreLease: true})
	if err != nil {
		t.Fatal(err)
	}
	if h := resp.Header; h.ClusterId != 100 || h.MemberId != 42 || h.RaftTerm != 3 || h.Revision != 9 {
		t.Fatalf("header not filled: %v", h)
	}
	rr, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("a")})
	if err != nil {
		t.Fatal(err)
	}
	if rr.Header.Revision != 7 {
		t.Fatalf("member's revision overwritten: %v", rr.Header)
	}
	// Compact is not validated by etcd: negative revisions go to the member.
	if _, err := kv.Compact(ctx, &pb.CompactionRequest{Revision: -1}); err != nil {
		t.Fatal(err)
	}
}

func TestToGRPCError(t *testing.T) {
	tests := []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{errCompacted, codes.OutOfRange, "etcdserver: mvcc: required revision has been compacted"},
		{wrap(errCompacted), codes.OutOfRange, "etcdserver: mvcc: required revision has been compacted"},
		{errFutureRev, codes.OutOfRange, "etcdserver: mvcc: required revision is a future revision"},
		{errNoLeader, codes.Unavailable, "etcdserver: no leader"},
		{wrap(errNoLeader), codes.Unavailable, "etcdserver: no leader"},
		{errs.ErrNotLeader, codes.FailedPrecondition, "etcdserver: not leader"},
		{errs.ErrLeaderChanged, codes.Unavailable, "etcdserver: leader changed"},
		{errTimeout, codes.Unavailable, "etcdserver: request timed out"},
		{errStopped, codes.Unavailable, "etcdserver: server stopped"},
		// etcd maps its "too many requests" to a value without a gRPC status, so grpc-go
		// sends it as Unknown; the message is what clients match.
		{errTooManyRequests, codes.Unknown, "etcdserver: too many requests"},
		{errs.ErrNoSpace, codes.ResourceExhausted, "etcdserver: mvcc: database space exceeded"},
		{errs.ErrKeyNotFound, codes.InvalidArgument, "etcdserver: key not found"},
		{errs.ErrLeaseNotFound, codes.NotFound, "etcdserver: requested lease not found"},
		{errs.ErrRequestTooLarge, codes.InvalidArgument, "etcdserver: request is too large"},
		{errs.ErrCorrupt, codes.DataLoss, "etcdserver: corrupt cluster"},
		{errs.ErrUnhealthy, codes.Unavailable, "etcdserver: unhealthy cluster"},
		{errs.ErrNotImplemented, codes.Unimplemented, "cairn: not implemented"},
		{context.Canceled, codes.Canceled, "context canceled"},
		{wrap(context.DeadlineExceeded), codes.DeadlineExceeded, "applying request: context deadline exceeded"},
		{context.DeadlineExceeded, codes.DeadlineExceeded, "context deadline exceeded"},
		{ErrGRPCDuplicateKey, codes.InvalidArgument, "etcdserver: duplicate key given in txn request"},
		{errors.Join(errors.New("x"), errNoLeader), codes.Unavailable, "etcdserver: no leader"},
		{errors.New("boom"), codes.Unknown, "boom"},
	}
	for _, tt := range tests {
		got := toGRPCError(tt.err)
		s, ok := status.FromError(got)
		if !ok || s.Code() != tt.code || s.Message() != tt.msg {
			t.Errorf("toGRPCError(%q) = %v; want code=%v msg=%q", tt.err, got, tt.code, tt.msg)
		}
	}
	if toGRPCError(nil) != nil {
		t.Error("toGRPCError(nil) != nil")
	}
}
