package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/cairn-kv/cairn/tests/framework"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// diffClients are the raw stubs one differential step talks to.
type diffClients struct {
	kv    pb.KVClient
	lease pb.LeaseClient
}

// diffStep is one scripted request; it returns the response message (or
// nil) and the error.
type diffStep struct {
	name string
	do   func(ctx context.Context, c diffClients) (diffMsg, error)
}

type diffMsg interface {
	Marshal() ([]byte, error)
	Unmarshal([]byte) error
	String() string
}

// Request builders.
func bs(s string) []byte { return []byte(s) }

func rangeReq(key, end string, mod ...func(*pb.RangeRequest)) *pb.RangeRequest {
	r := &pb.RangeRequest{Key: bs(key)}
	if end != "" {
		r.RangeEnd = bs(end)
	}
	for _, f := range mod {
		f(r)
	}
	return r
}

func opRange(r *pb.RangeRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: r}}
}

func opPut(k, v string, prev bool) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: bs(k), Value: bs(v), PrevKv: prev}}}
}

func opDel(k, end string, prev bool) *pb.RequestOp {
	d := &pb.DeleteRangeRequest{Key: bs(k), PrevKv: prev}
	if end != "" {
		d.RangeEnd = bs(end)
	}
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: d}}
}

func opTxn(t *pb.TxnRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: t}}
}

func cmp(key string, target pb.Compare_CompareTarget, result pb.Compare_CompareResult, v any) *pb.Compare {
	c := &pb.Compare{Key: bs(key), Target: target, Result: result}
	switch target {
	case pb.Compare_VALUE:
		c.TargetUnion = &pb.Compare_Value{Value: bs(v.(string))}
	case pb.Compare_VERSION:
		c.TargetUnion = &pb.Compare_Version{Version: int64(v.(int))}
	case pb.Compare_CREATE:
		c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: int64(v.(int))}
	case pb.Compare_MOD:
		c.TargetUnion = &pb.Compare_ModRevision{ModRevision: int64(v.(int))}
	case pb.Compare_LEASE:
		c.TargetUnion = &pb.Compare_Lease{Lease: int64(v.(int))}
	}
	return c
}

func step[T diffMsg](name string, f func(ctx context.Context, c diffClients) (T, error)) diffStep {
	return diffStep{name, func(ctx context.Context, c diffClients) (diffMsg, error) {
		r, err := f(ctx, c)
		if err != nil {
			return nil, err
		}
		return r, nil
	}}
}

func put(name string, r *pb.PutRequest) diffStep {
	return step(name, func(ctx context.Context, c diffClients) (*pb.PutResponse, error) { return c.kv.Put(ctx, r) })
}

func rng(name string, r *pb.RangeRequest) diffStep {
	return step(name, func(ctx context.Context, c diffClients) (*pb.RangeResponse, error) { return c.kv.Range(ctx, r) })
}

func del(name string, r *pb.DeleteRangeRequest) diffStep {
	return step(name, func(ctx context.Context, c diffClients) (*pb.DeleteRangeResponse, error) {
		return c.kv.DeleteRange(ctx, r)
	})
}

func txn(name string, r *pb.TxnRequest) diffStep {
	return step(name, func(ctx context.Context, c diffClients) (*pb.TxnResponse, error) { return c.kv.Txn(ctx, r) })
}

func compact(name string, r *pb.CompactionRequest) diffStep {
	return step(name, func(ctx context.Context, c diffClients) (*pb.CompactionResponse, error) { return c.kv.Compact(ctx, r) })
}

// diffScript is the scripted sequence run against both servers. Servers
// are started with --max-txn-ops=8 --max-request-bytes=4096. Lease IDs are
// chosen by the client, so they are the same on both.
func diffScript() []diffStep {
	const leaseID = 7000
	all := func(mod ...func(*pb.RangeRequest)) *pb.RangeRequest { return rangeReq("\x00", "\x00", mod...) }
	sortBy := func(t pb.RangeRequest_SortTarget, o pb.RangeRequest_SortOrder) func(*pb.RangeRequest) {
		return func(r *pb.RangeRequest) { r.SortTarget, r.SortOrder = t, o }
	}
	limit := func(n int64) func(*pb.RangeRequest) { return func(r *pb.RangeRequest) { r.Limit = n } }
	rev := func(n int64) func(*pb.RangeRequest) { return func(r *pb.RangeRequest) { r.Revision = n } }
	var nineOps []*pb.RequestOp
	for i := 0; i < 9; i++ {
		nineOps = append(nineOps, opPut(fmt.Sprintf("many%d", i), "v", false))
	}
	return []diffStep{
		put("put a", &pb.PutRequest{Key: bs("a"), Value: bs("1")}),
		put("put b", &pb.PutRequest{Key: bs("b"), Value: bs("2")}),
		put("put c prev_kv (new)", &pb.PutRequest{Key: bs("c"), Value: bs("3"), PrevKv: true}),
		put("put a prev_kv", &pb.PutRequest{Key: bs("a"), Value: bs("11"), PrevKv: true}),
		put("put ab", &pb.PutRequest{Key: bs("ab"), Value: bs("0")}),
		rng("get a", rangeReq("a", "")),
		rng("all keys", all()),
		rng("from key b", rangeReq("b", "\x00")),
		rng("prefix a", rangeReq("a", "b")),
		rng("[a, c) limit 1", rangeReq("a", "c", limit(1))),
		rng("all limit 10", all(limit(10))),
		rng("sort value desc", all(sortBy(pb.RangeRequest_VALUE, pb.RangeRequest_DESCEND))),
		rng("sort create desc limit 2", all(sortBy(pb.RangeRequest_CREATE, pb.RangeRequest_DESCEND), limit(2))),
		rng("sort mod asc keys_only", all(sortBy(pb.RangeRequest_MOD, pb.RangeRequest_ASCEND), func(r *pb.RangeRequest) { r.KeysOnly = true })),
		rng("sort key desc", all(sortBy(pb.RangeRequest_KEY, pb.RangeRequest_DESCEND))),
		rng("sort value none", all(sortBy(pb.RangeRequest_VALUE, pb.RangeRequest_NONE))),
		rng("count only", all(func(r *pb.RangeRequest) { r.CountOnly = true })),
		rng("min mod 4", all(func(r *pb.RangeRequest) { r.MinModRevision = 4 })),
		rng("max create 3 limit 1", all(func(r *pb.RangeRequest) { r.MaxCreateRevision = 3 }, limit(1))),
		rng("min create 3 max mod 5", all(func(r *pb.RangeRequest) { r.MinCreateRevision, r.MaxModRevision = 3, 5 })),
		rng("get a at rev 2", rangeReq("a", "", rev(2))),
		rng("all at rev 3 serializable", all(rev(3), func(r *pb.RangeRequest) { r.Serializable = true })),
		rng("future rev", rangeReq("a", "", rev(100))),
		rng("range [b, a)", rangeReq("b", "a")),
		put("empty key", &pb.PutRequest{Value: bs("x")}),
		rng("range empty key", rangeReq("", "")),
		del("delete empty key", &pb.DeleteRangeRequest{}),
		put("ignore_value missing key", &pb.PutRequest{Key: bs("nokey"), IgnoreValue: true}),
		put("ignore_value a", &pb.PutRequest{Key: bs("a"), IgnoreValue: true, PrevKv: true}),
		put("ignore_value with value", &pb.PutRequest{Key: bs("a"), Value: bs("x"), IgnoreValue: true}),
		put("missing lease", &pb.PutRequest{Key: bs("l"), Value: bs("x"), Lease: 999}),
		step("lease grant", func(ctx context.Context, c diffClients) (*pb.LeaseGrantResponse, error) {
			return c.lease.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: leaseID, TTL: 3600})
		}),
		step("lease grant existing", func(ctx context.Context, c diffClients) (*pb.LeaseGrantResponse, error) {
			return c.lease.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: leaseID, TTL: 3600})
		}),
		put("put l with lease", &pb.PutRequest{Key: bs("l"), Value: bs("v1"), Lease: leaseID}),
		put("put l ignore_lease", &pb.PutRequest{Key: bs("l"), Value: bs("v2"), IgnoreLease: true, PrevKv: true}),
		put("ignore_lease with lease", &pb.PutRequest{Key: bs("l"), Value: bs("v3"), IgnoreLease: true, Lease: leaseID}),
		put("put l2 with lease", &pb.PutRequest{Key: bs("l2"), Value: bs("x"), Lease: leaseID}),
		rng("get l", rangeReq("l", "")),
		txn("txn value = (true)", &pb.TxnRequest{
			Compare: []*pb.Compare{cmp("a", pb.Compare_VALUE, pb.Compare_EQUAL, "11")},
			Success: []*pb.RequestOp{opPut("d", "4", false), opRange(rangeReq("a", ""))},
			Failure: []*pb.RequestOp{opPut("e", "5", false)},
		}),
		txn("txn version > (false)", &pb.TxnRequest{
			Compare: []*pb.Compare{cmp("a", pb.Compare_VERSION, pb.Compare_GREATER, 5)},
			Success: []*pb.RequestOp{opPut("never", "x", false)},
			Failure: []*pb.RequestOp{opRange(rangeReq("a", "b")), opPut("e", "5", true)},
		}),
		txn("txn create < (true) delete prev_kv", &pb.TxnRequest{
			Compare: []*pb.Compare{cmp("b", pb.Compare_CREATE, pb.Compare_LESS, 100)},
			Success: []*pb.RequestOp{opDel("b", "", true)},
		}),
		txn("txn mod != (true)", &pb.TxnRequest{
			Compare: []*pb.Compare{cmp("c", pb.Compare_MOD, pb.Compare_NOT_EQUAL, 0)},
			Success: []*pb.RequestOp{opPut("c", "33", true), opPut("f", "6", false), opRange(rangeReq("c", "g"))},
		}),
		txn("txn lease = (true)", &pb.TxnRequest{
			Compare: []*pb.Compare{cmp("l", pb.Compare_LEASE, pb.Compare_EQUAL, leaseID)},
			Success: []*pb.RequestOp{opRange(rangeReq("l", "m"))},
		}),
		txn("txn range compare version > 0 over [a, z) (true)", &pb.TxnRequest{
			Compare: []*pb.Compare{func() *pb.Compare {
				c := cmp("a", pb.Compare_VERSION, pb.Compare_GREATER, 0)
				c.RangeEnd = bs("z")
				return c
			}()},
			Success: []*pb.RequestOp{opPut("g", "7", false)},
		}),
		txn("txn range compare value over [a, d) (false)", &pb.TxnRequest{
			Compare: []*pb.Compare{func() *pb.Compare {
				c := cmp("a", pb.Compare_VALUE, pb.Compare_EQUAL, "11")
				c.RangeEnd = bs("d")
				return c
			}()},
			Failure: []*pb.RequestOp{opRange(rangeReq("a", "d", func(r *pb.RangeRequest) { r.CountOnly = true }))},
		}),
		txn("txn missing key value compare (false)", &pb.TxnRequest{
			Compare: []*pb.Compare{cmp("nokey", pb.Compare_VALUE, pb.Compare_EQUAL, "")},
			Success: []*pb.RequestOp{opPut("never", "x", false)},
		}),
		txn("nested txn", &pb.TxnRequest{
			Compare: []*pb.Compare{cmp("d", pb.Compare_MOD, pb.Compare_GREATER, 0)},
			Success: []*pb.RequestOp{
				opPut("h", "8", false),
				opTxn(&pb.TxnRequest{
					Compare: []*pb.Compare{cmp("h", pb.Compare_VERSION, pb.Compare_EQUAL, 0)},
					Success: []*pb.RequestOp{opPut("i", "9", false), opRange(rangeReq("h", "j"))},
					Failure: []*pb.RequestOp{opPut("never", "x", false)},
				}),
				opTxn(&pb.TxnRequest{
					Compare: []*pb.Compare{cmp("d", pb.Compare_VALUE, pb.Compare_EQUAL, "nope")},
					Failure: []*pb.RequestOp{opRange(rangeReq("d", ""))},
				}),
			},
		}),
		txn("txn duplicate put", &pb.TxnRequest{Success: []*pb.RequestOp{opPut("dup", "1", false), opPut("dup", "2", false)}}),
		txn("txn put + overlapping delete", &pb.TxnRequest{Success: []*pb.RequestOp{opPut("a", "1", false), opDel("a", "b", false)}}),
		txn("txn same key both branches", &pb.TxnRequest{
			Compare: []*pb.Compare{cmp("a", pb.Compare_VERSION, pb.Compare_EQUAL, 3)},
			Success: []*pb.RequestOp{opPut("j", "then", false)},
			Failure: []*pb.RequestOp{opPut("j", "else", false)},
		}),
		txn("txn too many ops", &pb.TxnRequest{Success: nineOps}),
		txn("empty txn", &pb.TxnRequest{}),
		put("request too large", &pb.PutRequest{Key: bs("big"), Value: bs(strings.Repeat("x", 8192))}),
		del("delete missing", &pb.DeleteRangeRequest{Key: bs("nokey")}),
		del("delete [a, c) prev_kv", &pb.DeleteRangeRequest{Key: bs("a"), RangeEnd: bs("c"), PrevKv: true}),
		del("delete prefix h", &pb.DeleteRangeRequest{Key: bs("h"), RangeEnd: bs("i")}),
		put("put a again prev_kv (deleted)", &pb.PutRequest{Key: bs("a"), Value: bs("again"), PrevKv: true}),
		rng("all", all()),
		compact("compact 5", &pb.CompactionRequest{Revision: 5}),
		rng("get a at rev 3 (compacted)", rangeReq("a", "", rev(3))),
		rng("all at rev 5", all(rev(5))),
		txn("txn range at compacted rev", &pb.TxnRequest{Success: []*pb.RequestOp{opRange(rangeReq("a", "", rev(2)))}}),
		compact("compact 4 (compacted)", &pb.CompactionRequest{Revision: 4}),
		compact("compact 1000 (future)", &pb.CompactionRequest{Revision: 1000}),
		put("put k", &pb.PutRequest{Key: bs("k"), Value: bs("10")}),
		compact("compact 20 physical", &pb.CompactionRequest{Revision: 20, Physical: true}),
		rng("all after physical compaction", all()),
		rng("all at rev 20", all(rev(20))),
		step("lease revoke", func(ctx context.Context, c diffClients) (*pb.LeaseRevokeResponse, error) {
			return c.lease.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: leaseID})
		}),
		rng("l prefix after revoke", rangeReq("l", "m")),
		step("lease revoke again", func(ctx context.Context, c diffClients) (*pb.LeaseRevokeResponse, error) {
			return c.lease.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: leaseID})
		}),
		rng("final all", all()),
	}
}

// outcome renders one step's result: the normalized response (header
// cluster_id/member_id/raft_term stripped, everything else kept) or the
// error's gRPC code and message.
func outcome(resp diffMsg, err error) (string, []byte) {
	if err != nil {
		code, msg := framework.StatusOf(err)
		return fmt.Sprintf("error code=%v message=%q", code, msg), nil
	}
	var n diffMsg
	switch r := resp.(type) {
	case *pb.RangeResponse:
		n = framework.Normalize(r)
	case *pb.PutResponse:
		n = framework.Normalize(r)
	case *pb.DeleteRangeResponse:
		n = framework.Normalize(r)
	case *pb.TxnResponse:
		n = framework.Normalize(r)
	case *pb.CompactionResponse:
		n = framework.Normalize(r)
	case *pb.LeaseGrantResponse:
		n = framework.Normalize(r)
	case *pb.LeaseRevokeResponse:
		n = framework.Normalize(r)
	default:
		panic(fmt.Sprintf("outcome: unexpected %T", resp))
	}
	b, mErr := n.Marshal()
	if mErr != nil {
		return fmt.Sprintf("marshal error %v", mErr), nil
	}
	return fmt.Sprintf("%T %s", n, n.String()), b
}

// TestDifferentialKV runs the same scripted request sequence against the
// server under test and the reference etcd and requires identical
// normalized responses (revisions, kvs, counts, more, succeeded, nested
// responses, error code and message).
func TestDifferentialKV(t *testing.T) {
	t.Parallel()
	p := framework.StartPair(t, framework.Options{Flags: []string{"--max-txn-ops=8", "--max-request-bytes=4096"}})
	clients := func(m *framework.Member) diffClients {
		conn := m.Client().ActiveConnection()
		return diffClients{kv: pb.NewKVClient(conn), lease: pb.NewLeaseClient(conn)}
	}
	sut, ref := clients(p.Cairn), clients(p.Etcd)
	script := diffScript()
	if len(script) < 60 {
		t.Fatalf("script has %d steps, want >= 60", len(script))
	}
	mismatches := 0
	for i, s := range script {
		gotResp, gotErr := s.do(ctx(t), sut)
		wantResp, wantErr := s.do(ctx(t), ref)
		got, gotWire := outcome(gotResp, gotErr)
		want, wantWire := outcome(wantResp, wantErr)
		t.Logf("step %d %q: %s", i, s.name, want)
		if got != want || string(gotWire) != string(wantWire) {
			mismatches++
			t.Errorf("step %d %q differs:\n  %s: %s\n  etcd: %s", i, s.name, p.Cairn.Name+"("+binName(p.Cairn)+")", got, want)
			if got == want {
				t.Errorf("  (same text, different wire encoding: %x vs %x)", gotWire, wantWire)
			}
		}
		if mismatches >= 10 {
			t.Fatalf("stopping after %d mismatches", mismatches)
		}
	}
}

func binName(m *framework.Member) string {
	if m.IsEtcd {
		return "etcd"
	}
	return "cairn"
}
