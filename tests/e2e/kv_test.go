package e2e

import (
	"strings"
	"testing"

	"github.com/cairn-kv/cairn/tests/framework"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

// Error expectations, byte-for-byte etcd's (api/v3rpc/rpctypes/error.go).
var (
	errEmptyKey       = wantErr{rpctypes.ErrEmptyKey, codes.InvalidArgument, "etcdserver: key is not provided"}
	errKeyNotFound    = wantErr{rpctypes.ErrKeyNotFound, codes.InvalidArgument, "etcdserver: key not found"}
	errValueProvided  = wantErr{rpctypes.ErrValueProvided, codes.InvalidArgument, "etcdserver: value is provided"}
	errLeaseProvided  = wantErr{rpctypes.ErrLeaseProvided, codes.InvalidArgument, "etcdserver: lease is provided"}
	errLeaseNotFound  = wantErr{rpctypes.ErrLeaseNotFound, codes.NotFound, "etcdserver: requested lease not found"}
	errDuplicateKey   = wantErr{rpctypes.ErrDuplicateKey, codes.InvalidArgument, "etcdserver: duplicate key given in txn request"}
	errTooManyOps     = wantErr{rpctypes.ErrTooManyOps, codes.InvalidArgument, "etcdserver: too many operations in txn request"}
	errCompacted      = wantErr{rpctypes.ErrCompacted, codes.OutOfRange, "etcdserver: mvcc: required revision has been compacted"}
	errFutureRev      = wantErr{rpctypes.ErrFutureRev, codes.OutOfRange, "etcdserver: mvcc: required revision is a future revision"}
	errRequestTooLong = wantErr{rpctypes.ErrRequestTooLarge, codes.InvalidArgument, "etcdserver: request is too large"}
)

func TestKVPutGet(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()

	if rev := currentRev(t, cli); rev != 1 {
		t.Fatalf("fresh member revision %d, want 1", rev)
	}
	p := mustPut(t, cli, "foo", "bar")
	if p.Header.Revision != 2 {
		t.Fatalf("first put revision %d, want 2", p.Header.Revision)
	}
	if p.PrevKv != nil {
		t.Fatalf("put without prev_kv returned prev_kv %v", p.PrevKv)
	}
	g := mustGet(t, cli, "foo")
	if g.Count != 1 || g.More || len(g.Kvs) != 1 {
		t.Fatalf("get foo: count=%d more=%v kvs=%d", g.Count, g.More, len(g.Kvs))
	}
	requireKV(t, "get foo", g.Kvs[0], "foo", "bar", 2, 2, 1, 0)

	mustPut(t, cli, "foo", "baz")
	g = mustGet(t, cli, "foo")
	requireKV(t, "get foo after overwrite", g.Kvs[0], "foo", "baz", 2, 3, 2, 0)
	if g.Header.Revision != 3 {
		t.Fatalf("header revision %d, want 3", g.Header.Revision)
	}

	// Missing key: no kvs, count 0, current revision.
	g = mustGet(t, cli, "missing")
	if len(g.Kvs) != 0 || g.Count != 0 || g.More || g.Header.Revision != 3 {
		t.Fatalf("get missing: %+v", g)
	}

	// Binary-safe keys and values, including empty value.
	mustPut(t, cli, "bin\x00\xff", "")
	g = mustGet(t, cli, "bin\x00\xff")
	requireKV(t, "binary key, empty value", g.Kvs[0], "bin\x00\xff", "", 4, 4, 1, 0)

	// Serializable read sees the same data on a single member.
	s := mustGet(t, cli, "foo", clientv3.WithSerializable())
	requireKV(t, "serializable get", s.Kvs[0], "foo", "baz", 2, 3, 2, 0)
}

// setupRangeKeys writes a, ab, abc, b, c (revisions 2..6) with values chosen
// so that value order differs from key order; then overwrites "b" (rev 7).
func setupRangeKeys(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	for _, kv := range [][2]string{{"a", "5"}, {"ab", "3"}, {"abc", "4"}, {"b", "1"}, {"c", "2"}} {
		mustPut(t, cli, kv[0], kv[1])
	}
	mustPut(t, cli, "b", "9") // b: create 5, mod 7, version 2
}

func TestKVRangeKinds(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	setupRangeKeys(t, cli)

	requireKeys(t, "prefix a", mustGet(t, cli, "a", clientv3.WithPrefix()).Kvs, "a", "ab", "abc")
	requireKeys(t, "from-key ab", mustGet(t, cli, "ab", clientv3.WithFromKey()).Kvs, "ab", "abc", "b", "c")
	requireKeys(t, "range [ab, b)", mustGet(t, cli, "ab", clientv3.WithRange("b")).Kvs, "ab", "abc")
	all := mustGet(t, cli, "", clientv3.WithPrefix())
	requireKeys(t, "all keys", all.Kvs, "a", "ab", "abc", "b", "c")
	if all.Count != 5 || all.More {
		t.Fatalf("all keys: count=%d more=%v", all.Count, all.More)
	}
	// The wire form of "all keys": key = range_end = "\x00".
	r := mustRange(t, raw(m), &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
	requireKeys(t, "raw all keys", r.Kvs, "a", "ab", "abc", "b", "c")
	// range_end <= key selects nothing.
	r = mustRange(t, raw(m), &pb.RangeRequest{Key: []byte("b"), RangeEnd: []byte("a")})
	if len(r.Kvs) != 0 || r.Count != 0 {
		t.Fatalf("range [b, a): %v", r)
	}

	// Limit: More is set, Count is the full count.
	l := mustGet(t, cli, "", clientv3.WithPrefix(), clientv3.WithLimit(2))
	requireKeys(t, "limit 2", l.Kvs, "a", "ab")
	if !l.More || l.Count != 5 {
		t.Fatalf("limit 2: more=%v count=%d, want true 5", l.More, l.Count)
	}
	l = mustGet(t, cli, "", clientv3.WithPrefix(), clientv3.WithLimit(5))
	if l.More || l.Count != 5 || len(l.Kvs) != 5 {
		t.Fatalf("limit 5 of 5: more=%v count=%d kvs=%d", l.More, l.Count, len(l.Kvs))
	}
	l = mustGet(t, cli, "", clientv3.WithPrefix(), clientv3.WithLimit(50))
	if l.More || l.Count != 5 || len(l.Kvs) != 5 {
		t.Fatalf("limit 50 of 5: more=%v count=%d kvs=%d", l.More, l.Count, len(l.Kvs))
	}

	// Keys-only: no values, all metadata.
	k := mustGet(t, cli, "b", clientv3.WithKeysOnly())
	requireKV(t, "keys-only b", k.Kvs[0], "b", "", 5, 7, 2, 0)

	// Count-only: no kvs, count set.
	c := mustGet(t, cli, "a", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if len(c.Kvs) != 0 || c.Count != 3 {
		t.Fatalf("count-only prefix a: kvs=%d count=%d", len(c.Kvs), c.Count)
	}
}

func TestKVRangeSort(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	setupRangeKeys(t, cli)
	all := func(opts ...clientv3.OpOption) []string {
		return keysOf(mustGet(t, cli, "", append([]clientv3.OpOption{clientv3.WithPrefix()}, opts...)...).Kvs)
	}
	cases := []struct {
		name   string
		target clientv3.SortTarget
		order  clientv3.SortOrder
		want   string
	}{
		{"key asc", clientv3.SortByKey, clientv3.SortAscend, "a ab abc b c"},
		{"key desc", clientv3.SortByKey, clientv3.SortDescend, "c b abc ab a"},
		{"value asc", clientv3.SortByValue, clientv3.SortAscend, "c ab abc a b"},
		{"value desc", clientv3.SortByValue, clientv3.SortDescend, "b a abc ab c"},
		{"create asc", clientv3.SortByCreateRevision, clientv3.SortAscend, "a ab abc b c"},
		{"create desc", clientv3.SortByCreateRevision, clientv3.SortDescend, "c b abc ab a"},
		{"mod asc", clientv3.SortByModRevision, clientv3.SortAscend, "a ab abc c b"},
		{"mod desc", clientv3.SortByModRevision, clientv3.SortDescend, "b c abc ab a"},
		{"version desc", clientv3.SortByVersion, clientv3.SortDescend, "b"}, // only the first is determined
		// sort_order NONE with a non-key target sorts ascending (etcd's range.go).
		{"value none", clientv3.SortByValue, clientv3.SortNone, "c ab abc a b"},
	}
	for _, tc := range cases {
		got := all(clientv3.WithSort(tc.target, tc.order))
		if tc.name == "version desc" {
			got = got[:1]
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("sort %s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	// Sort + limit: the limit applies to the sorted result; More/Count as usual.
	r := mustGet(t, cli, "", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByValue, clientv3.SortDescend), clientv3.WithLimit(2))
	requireKeys(t, "value desc limit 2", r.Kvs, "b", "a")
	if !r.More || r.Count != 5 {
		t.Fatalf("value desc limit 2: more=%v count=%d", r.More, r.Count)
	}
	// Raw request with NONE order and VERSION target: ascending by version
	// (the order among equal versions is unspecified: etcd's sort is not
	// stable).
	rr := mustRange(t, raw(m), &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, SortTarget: pb.RangeRequest_VERSION})
	if got := keysOf(rr.Kvs); len(got) != 5 || got[4] != "b" {
		t.Fatalf("raw version none: %q, want b (version 2) last", got)
	}
}

func TestKVRangeRevisionsAndFilters(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	setupRangeKeys(t, cli) // a@2 ab@3 abc@4 b@5 c@6 b@7

	// Historical reads.
	g := mustGet(t, cli, "b", clientv3.WithRev(6))
	requireKV(t, "b@6", g.Kvs[0], "b", "1", 5, 5, 1, 0)
	if g.Header.Revision != 7 {
		t.Fatalf("historical read header revision %d, want current 7", g.Header.Revision)
	}
	requireKeys(t, "all@3", mustGet(t, cli, "", clientv3.WithPrefix(), clientv3.WithRev(3)).Kvs, "a", "ab")
	if g := mustGet(t, cli, "c", clientv3.WithRev(5)); len(g.Kvs) != 0 || g.Count != 0 {
		t.Fatalf("c@5 (before creation): %v", g.Kvs)
	}
	// Revision == current is fine; current+1 is a future revision.
	mustGet(t, cli, "b", clientv3.WithRev(7))
	_, err := cli.Get(ctx(t), "b", clientv3.WithRev(8))
	_, rawErr := raw(m).Range(ctx(t), &pb.RangeRequest{Key: []byte("b"), Revision: 8})
	errFutureRev.check(t, err, rawErr)

	// min/max mod/create revision filters; Count is still the full count.
	type tc struct {
		name string
		opt  clientv3.OpOption
		want []string
	}
	for _, c := range []tc{
		{"min mod 5", clientv3.WithMinModRev(5), []string{"b", "c"}},
		{"max mod 3", clientv3.WithMaxModRev(3), []string{"a", "ab"}},
		{"min create 4", clientv3.WithMinCreateRev(4), []string{"abc", "b", "c"}},
		{"max create 4", clientv3.WithMaxCreateRev(4), []string{"a", "ab", "abc"}},
	} {
		r := mustGet(t, cli, "", clientv3.WithPrefix(), c.opt)
		requireKeys(t, c.name, r.Kvs, c.want...)
		if r.Count != 5 {
			t.Errorf("%s: count %d, want 5 (unaffected by filters)", c.name, r.Count)
		}
	}
	// Filter + limit.
	r := mustGet(t, cli, "", clientv3.WithPrefix(), clientv3.WithMinCreateRev(3), clientv3.WithLimit(2))
	requireKeys(t, "min create 3 limit 2", r.Kvs, "ab", "abc")
	if !r.More || r.Count != 5 {
		t.Fatalf("min create 3 limit 2: more=%v count=%d", r.More, r.Count)
	}
	// Serializable reads, also historical.
	s := mustGet(t, cli, "b", clientv3.WithSerializable(), clientv3.WithRev(6))
	requireKV(t, "serializable b@6", s.Kvs[0], "b", "1", 5, 5, 1, 0)
}

func TestKVPutOptions(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	kv := raw(m)

	// prev_kv.
	p := mustPut(t, cli, "k", "v1", clientv3.WithPrevKV())
	if p.PrevKv != nil {
		t.Fatalf("prev_kv of a new key: %v", p.PrevKv)
	}
	p = mustPut(t, cli, "k", "v2", clientv3.WithPrevKV())
	requireKV(t, "prev_kv", p.PrevKv, "k", "v1", 2, 2, 1, 0)

	// ignore_value on a missing key.
	_, err := cli.Put(ctx(t), "nokey", "", clientv3.WithIgnoreValue())
	_, rawErr := kv.Put(ctx(t), &pb.PutRequest{Key: []byte("nokey"), IgnoreValue: true})
	errKeyNotFound.check(t, err, rawErr)
	// ignore_value with a value.
	_, err = cli.Put(ctx(t), "k", "x", clientv3.WithIgnoreValue())
	_, rawErr = kv.Put(ctx(t), &pb.PutRequest{Key: []byte("k"), Value: []byte("x"), IgnoreValue: true})
	errValueProvided.check(t, err, rawErr)
	// ignore_value keeps the value and bumps mod revision and version.
	p = mustPut(t, cli, "k", "", clientv3.WithIgnoreValue(), clientv3.WithPrevKV())
	requireKV(t, "prev_kv with ignore_value", p.PrevKv, "k", "v2", 2, 3, 2, 0)
	requireKV(t, "after ignore_value", mustGet(t, cli, "k").Kvs[0], "k", "v2", 2, 4, 3, 0)

	// Leases: missing lease.
	_, err = cli.Put(ctx(t), "k", "v", clientv3.WithLease(0x1234))
	_, rawErr = kv.Put(ctx(t), &pb.PutRequest{Key: []byte("k"), Value: []byte("v"), Lease: 0x1234})
	errLeaseNotFound.check(t, err, rawErr)

	lg, err := cli.Grant(ctx(t), 600)
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	mustPut(t, cli, "lk", "v1", clientv3.WithLease(lg.ID))
	requireKV(t, "leased key", mustGet(t, cli, "lk").Kvs[0], "lk", "v1", 5, 5, 1, int64(lg.ID))
	// ignore_lease keeps the lease.
	mustPut(t, cli, "lk", "v2", clientv3.WithIgnoreLease())
	requireKV(t, "ignore_lease", mustGet(t, cli, "lk").Kvs[0], "lk", "v2", 5, 6, 2, int64(lg.ID))
	// ignore_lease with a lease.
	_, err = cli.Put(ctx(t), "lk", "v3", clientv3.WithIgnoreLease(), clientv3.WithLease(lg.ID))
	_, rawErr = kv.Put(ctx(t), &pb.PutRequest{Key: []byte("lk"), Value: []byte("v3"), IgnoreLease: true, Lease: int64(lg.ID)})
	errLeaseProvided.check(t, err, rawErr)
	// ignore_lease on a missing key.
	_, err = cli.Put(ctx(t), "nokey", "v", clientv3.WithIgnoreLease())
	_, rawErr = kv.Put(ctx(t), &pb.PutRequest{Key: []byte("nokey"), Value: []byte("v"), IgnoreLease: true})
	errKeyNotFound.check(t, err, rawErr)
	// A plain put detaches the lease.
	mustPut(t, cli, "lk", "v4")
	requireKV(t, "plain put after lease", mustGet(t, cli, "lk").Kvs[0], "lk", "v4", 5, 7, 3, 0)
	// Revoking the lease deletes its keys in one revision.
	mustPut(t, cli, "lk2", "x", clientv3.WithLease(lg.ID))
	mustPut(t, cli, "lk3", "y", clientv3.WithLease(lg.ID))
	rv, err := cli.Revoke(ctx(t), lg.ID)
	if err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if rv.Header.Revision != 10 {
		t.Fatalf("revoke header revision %d, want 10", rv.Header.Revision)
	}
	requireKeys(t, "after revoke", mustGet(t, cli, "lk", clientv3.WithPrefix()).Kvs, "lk")

	// No failed request changed the revision.
	if rev := currentRev(t, cli); rev != 10 {
		t.Fatalf("revision %d, want 10", rev)
	}
}

func TestKVDelete(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	for _, k := range []string{"d/a", "d/b", "d/c", "e"} {
		mustPut(t, cli, k, "v-"+k)
	}
	// Single key without prev_kv.
	d, err := cli.Delete(ctx(t), "e")
	if err != nil {
		t.Fatal(err)
	}
	if d.Deleted != 1 || len(d.PrevKvs) != 0 || d.Header.Revision != 6 {
		t.Fatalf("delete e: deleted=%d prev=%d rev=%d", d.Deleted, len(d.PrevKvs), d.Header.Revision)
	}
	// Prefix with prev_kv: one revision for all.
	d, err = cli.Delete(ctx(t), "d/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	if err != nil {
		t.Fatal(err)
	}
	if d.Deleted != 3 || d.Header.Revision != 7 {
		t.Fatalf("delete d/: deleted=%d rev=%d", d.Deleted, d.Header.Revision)
	}
	requireKeys(t, "prev_kvs", d.PrevKvs, "d/a", "d/b", "d/c")
	requireKV(t, "prev_kvs[1]", d.PrevKvs[1], "d/b", "v-d/b", 3, 3, 1, 0)
	// Nothing to delete: no new revision.
	d, err = cli.Delete(ctx(t), "d/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if d.Deleted != 0 || d.Header.Revision != 7 {
		t.Fatalf("delete nothing: deleted=%d rev=%d, want 0 7", d.Deleted, d.Header.Revision)
	}
	// Re-create: version restarts at 1, new create revision.
	mustPut(t, cli, "d/a", "again")
	requireKV(t, "recreated", mustGet(t, cli, "d/a").Kvs[0], "d/a", "again", 8, 8, 1, 0)
	// Old data still readable at old revisions.
	requireKV(t, "d/a@6", mustGet(t, cli, "d/a", clientv3.WithRev(6)).Kvs[0], "d/a", "v-d/a", 2, 2, 1, 0)
}

func TestKVEmptyKey(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	kv := raw(m)
	_, err := cli.Put(ctx(t), "", "v")
	_, rawErr := kv.Put(ctx(t), &pb.PutRequest{Value: []byte("v")})
	errEmptyKey.check(t, err, rawErr)

	_, rawErr = kv.Range(ctx(t), &pb.RangeRequest{})
	framework.RequireGRPCError(t, rawErr, errEmptyKey.code, errEmptyKey.msg)
	_, err = cli.Get(ctx(t), "")
	framework.RequireClientError(t, err, rpctypes.ErrEmptyKey)

	_, rawErr = kv.DeleteRange(ctx(t), &pb.DeleteRangeRequest{})
	framework.RequireGRPCError(t, rawErr, errEmptyKey.code, errEmptyKey.msg)

	// Inside a txn.
	_, rawErr = kv.Txn(ctx(t), &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Value: []byte("v")}}}}})
	framework.RequireGRPCError(t, rawErr, errEmptyKey.code, errEmptyKey.msg)
	if rev := currentRev(t, cli); rev != 1 {
		t.Fatalf("revision %d after failed requests, want 1", rev)
	}
}

func TestKVRequestTooLarge(t *testing.T) {
	t.Parallel()
	m := start(t, "--max-request-bytes=4096")
	cli := m.Client()
	mustPut(t, cli, "small", strings.Repeat("s", 1024))
	big := strings.Repeat("x", 8192)
	_, err := cli.Put(ctx(t), "big", big)
	_, rawErr := raw(m).Put(ctx(t), &pb.PutRequest{Key: []byte("big"), Value: []byte(big)})
	errRequestTooLong.check(t, err, rawErr)
	_, err = cli.Txn(ctx(t)).Then(clientv3.OpPut("big1", big[:3000]), clientv3.OpPut("big2", big[:3000])).Commit()
	framework.RequireClientError(t, err, rpctypes.ErrRequestTooLarge)
	if g := mustGet(t, cli, "big", clientv3.WithPrefix()); len(g.Kvs) != 0 {
		t.Fatalf("too-large writes were applied: %v", keysOf(g.Kvs))
	}
	if rev := currentRev(t, cli); rev != 2 {
		t.Fatalf("revision %d, want 2", rev)
	}
}

func TestKVResponseHeaders(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	ml, err := cli.MemberList(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ml.Members) != 1 {
		t.Fatalf("member list: %d members, want 1", len(ml.Members))
	}
	clusterID, memberID := ml.Header.ClusterId, ml.Members[0].ID
	check := func(what string, h *pb.ResponseHeader, rev int64) {
		t.Helper()
		if h == nil {
			t.Fatalf("%s: no header", what)
		}
		if h.ClusterId == 0 || h.MemberId == 0 || h.RaftTerm == 0 {
			t.Fatalf("%s: header %v has zero ids/term", what, h)
		}
		if h.ClusterId != clusterID || h.MemberId != memberID {
			t.Fatalf("%s: header cluster_id=%x member_id=%x, member list says %x %x", what, h.ClusterId, h.MemberId, clusterID, memberID)
		}
		if rev > 0 && h.Revision != rev {
			t.Fatalf("%s: header revision %d, want %d", what, h.Revision, rev)
		}
	}
	check("member list", ml.Header, 0)
	p := mustPut(t, cli, "h", "1")
	check("put", p.Header, 2)
	g := mustGet(t, cli, "h")
	check("range", g.Header, 2)
	check("serializable range", mustGet(t, cli, "h", clientv3.WithSerializable()).Header, 2)
	tx, err := cli.Txn(ctx(t)).Then(clientv3.OpPut("h", "2"), clientv3.OpGet("h")).Commit()
	if err != nil {
		t.Fatal(err)
	}
	check("txn", tx.Header, 3)
	// Responses nested in a txn carry a header with only the revision
	// (etcd fills cluster_id/member_id/raft_term on the outer one only).
	for i, h := range []*pb.ResponseHeader{tx.Responses[0].GetResponsePut().Header, tx.Responses[1].GetResponseRange().Header} {
		if h == nil || h.Revision != 3 || h.ClusterId != 0 || h.MemberId != 0 || h.RaftTerm != 0 {
			t.Fatalf("txn response %d header %v, want only revision 3", i, h)
		}
	}
	d, err := cli.Delete(ctx(t), "h")
	if err != nil {
		t.Fatal(err)
	}
	check("delete", d.Header, 4)
	c, err := cli.Compact(ctx(t), 3)
	if err != nil {
		t.Fatal(err)
	}
	check("compact", c.Header, 4)
	st, err := cli.Status(ctx(t), m.ClientURL)
	if err != nil {
		t.Fatal(err)
	}
	check("status", st.Header, 4)
	if st.Leader != memberID || st.Version != "3.6.16" || st.RaftTerm != st.Header.RaftTerm {
		t.Fatalf("status: leader=%x version=%q raftTerm=%d header term=%d", st.Leader, st.Version, st.RaftTerm, st.Header.RaftTerm)
	}
}
