package e2e

import (
	"fmt"
	"testing"

	"github.com/cairn-kv/cairn/tests/framework"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestTxnCompareTargetsAndResults(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	lg, err := cli.Grant(ctx(t), 600)
	if err != nil {
		t.Fatal(err)
	}
	L := int64(lg.ID)
	mustPut(t, cli, "k", "m", clientv3.WithLease(lg.ID))
	mustPut(t, cli, "k", "m", clientv3.WithLease(lg.ID)) // k: value m, version 2, create 2, mod 3, lease L

	type target struct {
		name                string
		cmp                 func(op string, v any) clientv3.Cmp
		below, equal, above any
	}
	targets := []target{
		{"VALUE", func(op string, v any) clientv3.Cmp { return clientv3.Compare(clientv3.Value("k"), op, v) }, "a", "m", "z"},
		{"VERSION", func(op string, v any) clientv3.Cmp { return clientv3.Compare(clientv3.Version("k"), op, v) }, int64(1), int64(2), int64(3)},
		{"CREATE", func(op string, v any) clientv3.Cmp { return clientv3.Compare(clientv3.CreateRevision("k"), op, v) }, int64(1), int64(2), int64(3)},
		{"MOD", func(op string, v any) clientv3.Cmp { return clientv3.Compare(clientv3.ModRevision("k"), op, v) }, int64(2), int64(3), int64(4)},
		{"LEASE", func(op string, v any) clientv3.Cmp { return clientv3.Compare(clientv3.LeaseValue("k"), op, v) }, L - 1, L, L + 1},
	}
	// want[result][operand position]: actual value compared to operand.
	want := map[string][3]bool{
		"=":  {false, true, false},
		">":  {true, false, false},
		"<":  {false, false, true},
		"!=": {true, false, true},
	}
	for _, tg := range targets {
		for _, op := range []string{"=", ">", "<", "!="} {
			for i, v := range []any{tg.below, tg.equal, tg.above} {
				resp, err := cli.Txn(ctx(t)).If(tg.cmp(op, v)).
					Then(clientv3.OpGet("k", clientv3.WithKeysOnly())).
					Else(clientv3.OpGet("k", clientv3.WithCountOnly())).Commit()
				if err != nil {
					t.Fatalf("txn %s %s %v: %v", tg.name, op, v, err)
				}
				if resp.Succeeded != want[op][i] {
					t.Errorf("txn %s(k)=%v %s %v: succeeded=%v, want %v", tg.name, []any{tg.below, tg.equal, tg.above}[1], op, v, resp.Succeeded, want[op][i])
				}
				// The response holds the ops of the branch taken.
				r := resp.Responses[0].GetResponseRange()
				if r == nil || r.Count != 1 || (resp.Succeeded && len(r.Kvs) != 1) || (!resp.Succeeded && len(r.Kvs) != 0) {
					t.Fatalf("txn %s %s %v: branch response %v", tg.name, op, v, resp.Responses)
				}
				if resp.Header.Revision != 3 {
					t.Fatalf("read-only txn changed revision: %d", resp.Header.Revision)
				}
			}
		}
	}

	// Missing keys: VALUE compares always fail; others compare against zero.
	for _, c := range []struct {
		cmp  clientv3.Cmp
		want bool
	}{
		{clientv3.Compare(clientv3.Value("nokey"), "=", ""), false},
		{clientv3.Compare(clientv3.Value("nokey"), "!=", "x"), false},
		{clientv3.Compare(clientv3.Version("nokey"), "=", 0), true},
		{clientv3.Compare(clientv3.CreateRevision("nokey"), "=", 0), true},
		{clientv3.Compare(clientv3.ModRevision("nokey"), "<", 1), true},
		{clientv3.Compare(clientv3.LeaseValue("nokey"), "=", 0), true},
	} {
		resp, err := cli.Txn(ctx(t)).If(c.cmp).Commit()
		if err != nil {
			t.Fatal(err)
		}
		if resp.Succeeded != c.want {
			t.Errorf("missing key compare %v: succeeded=%v want %v", c.cmp, resp.Succeeded, c.want)
		}
	}
	// Several compares are ANDed.
	resp, err := cli.Txn(ctx(t)).If(
		clientv3.Compare(clientv3.Value("k"), "=", "m"),
		clientv3.Compare(clientv3.Version("k"), "=", 3),
	).Commit()
	if err != nil || resp.Succeeded {
		t.Fatalf("AND of true and false compares: succeeded=%v err=%v", resp != nil && resp.Succeeded, err)
	}
}

func TestTxnRangeCompare(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	mustPut(t, cli, "r/a", "x") // 2
	mustPut(t, cli, "r/b", "x") // 3
	mustPut(t, cli, "r/c", "y") // 4
	mustPut(t, cli, "s", "x")   // 5

	cases := []struct {
		name string
		cmp  clientv3.Cmp
		want bool
	}{
		{"all versions = 1", clientv3.Compare(clientv3.Version("r/"), "=", 1).WithPrefix(), true},
		{"all values = x (one is y)", clientv3.Compare(clientv3.Value("r/"), "=", "x").WithPrefix(), false},
		{"values in [r/a, r/c) = x", clientv3.Compare(clientv3.Value("r/a"), "=", "x").WithRange("r/c"), true},
		{"all mod < 5", clientv3.Compare(clientv3.ModRevision("r/"), "<", 5).WithPrefix(), true},
		{"all mod > 2 (r/a is 2)", clientv3.Compare(clientv3.ModRevision("r/"), ">", 2).WithPrefix(), false},
		{"all create != 3 (r/b is 3)", clientv3.Compare(clientv3.CreateRevision("r/"), "!=", 3).WithPrefix(), false},
		{"from-key r/b: all versions = 1", clientv3.Compare(clientv3.Version("r/b"), "=", 1).WithRange("\x00"), true},
		{"empty range, version = 0", clientv3.Compare(clientv3.Version("t/"), "=", 0).WithPrefix(), true},
		{"empty range, value", clientv3.Compare(clientv3.Value("t/"), "=", "").WithPrefix(), false},
	}
	for _, c := range cases {
		resp, err := cli.Txn(ctx(t)).If(c.cmp).Commit()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if resp.Succeeded != c.want {
			t.Errorf("%s: succeeded=%v, want %v", c.name, resp.Succeeded, c.want)
		}
	}
}

func TestTxnOneRevisionAndBranches(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	mustPut(t, cli, "x", "0")  // 2
	mustPut(t, cli, "t0", "z") // 3

	// Success branch: several writes, one revision; reads in the txn see
	// earlier writes of the same txn.
	resp, err := cli.Txn(ctx(t)).If(clientv3.Compare(clientv3.Value("x"), "=", "0")).
		Then(
			clientv3.OpPut("t1", "a"),
			clientv3.OpPut("t2", "b", clientv3.WithPrevKV()),
			clientv3.OpPut("x", "1", clientv3.WithPrevKV()),
			clientv3.OpGet("t", clientv3.WithPrefix()),
			clientv3.OpDelete("t0", clientv3.WithPrevKV()),
			clientv3.OpGet("t", clientv3.WithPrefix(), clientv3.WithKeysOnly()),
		).Else(clientv3.OpPut("never", "x")).Commit()
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Succeeded || resp.Header.Revision != 4 || len(resp.Responses) != 6 {
		t.Fatalf("txn: succeeded=%v rev=%d responses=%d", resp.Succeeded, resp.Header.Revision, len(resp.Responses))
	}
	if pk := resp.Responses[2].GetResponsePut().PrevKv; pk == nil || string(pk.Value) != "0" {
		t.Fatalf("txn put prev_kv: %v", pk)
	}
	if pk := resp.Responses[1].GetResponsePut().PrevKv; pk != nil {
		t.Fatalf("txn put prev_kv of new key: %v", pk)
	}
	in := resp.Responses[3].GetResponseRange()
	requireKeys(t, "range inside txn", in.Kvs, "t0", "t1", "t2")
	requireKV(t, "t1 inside txn", in.Kvs[1], "t1", "a", 4, 4, 1, 0)
	del := resp.Responses[4].GetResponseDeleteRange()
	if del.Deleted != 1 || len(del.PrevKvs) != 1 {
		t.Fatalf("delete inside txn: %v", del)
	}
	requireKV(t, "deleted t0", del.PrevKvs[0], "t0", "z", 3, 3, 1, 0)
	requireKeys(t, "range after delete inside txn", resp.Responses[5].GetResponseRange().Kvs, "t1", "t2")
	requireKeys(t, "after txn", mustGet(t, cli, "", clientv3.WithPrefix()).Kvs, "t1", "t2", "x")
	requireKV(t, "x", mustGet(t, cli, "x").Kvs[0], "x", "1", 2, 4, 2, 0)
	if rev := currentRev(t, cli); rev != 4 {
		t.Fatalf("revision %d after one txn, want 4", rev)
	}

	// Failure branch.
	resp, err = cli.Txn(ctx(t)).If(clientv3.Compare(clientv3.Value("x"), "=", "0")).
		Then(clientv3.OpPut("never", "x")).
		Else(clientv3.OpPut("f1", "a"), clientv3.OpPut("f2", "b")).Commit()
	if err != nil {
		t.Fatal(err)
	}
	if resp.Succeeded || resp.Header.Revision != 5 {
		t.Fatalf("failure branch: succeeded=%v rev=%d", resp.Succeeded, resp.Header.Revision)
	}
	if g := mustGet(t, cli, "never"); len(g.Kvs) != 0 {
		t.Fatal("success branch applied on failure")
	}
	requireKV(t, "f2", mustGet(t, cli, "f2").Kvs[0], "f2", "b", 5, 5, 1, 0)

	// Empty txn: succeeds, no revision.
	resp, err = cli.Txn(ctx(t)).Commit()
	if err != nil || !resp.Succeeded || resp.Header.Revision != 5 || len(resp.Responses) != 0 {
		t.Fatalf("empty txn: %v %v", resp, err)
	}
	// Deleting nothing in a txn: no revision.
	resp, err = cli.Txn(ctx(t)).Then(clientv3.OpDelete("nothing")).Commit()
	if err != nil || resp.Header.Revision != 5 {
		t.Fatalf("txn deleting nothing: %v %v", resp, err)
	}
	// The same key in both branches is allowed.
	resp, err = cli.Txn(ctx(t)).If(clientv3.Compare(clientv3.Version("x"), "=", 2)).
		Then(clientv3.OpPut("same", "then")).Else(clientv3.OpPut("same", "else")).Commit()
	if err != nil || !resp.Succeeded {
		t.Fatalf("same key in both branches: %v %v", resp, err)
	}
}

func TestTxnNested(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	mustPut(t, cli, "n", "1") // 2
	resp, err := cli.Txn(ctx(t)).If(clientv3.Compare(clientv3.Value("n"), "=", "1")).Then(
		clientv3.OpPut("outer", "o"),
		clientv3.OpTxn(
			// All compares of a txn tree are evaluated before any op runs,
			// so this does not see the outer put above.
			[]clientv3.Cmp{clientv3.Compare(clientv3.Version("outer"), "=", 0)},
			[]clientv3.Op{clientv3.OpPut("inner", "i"), clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpGet("inner")}, nil)},
			[]clientv3.Op{clientv3.OpPut("inner-else", "e")},
		),
		clientv3.OpTxn(
			[]clientv3.Cmp{clientv3.Compare(clientv3.Value("n"), "=", "2")},
			[]clientv3.Op{clientv3.OpPut("never", "x")},
			[]clientv3.Op{clientv3.OpGet("n")},
		),
	).Commit()
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Succeeded || len(resp.Responses) != 3 || resp.Header.Revision != 3 {
		t.Fatalf("nested: succeeded=%v responses=%d rev=%d", resp.Succeeded, len(resp.Responses), resp.Header.Revision)
	}
	in1 := resp.Responses[1].GetResponseTxn()
	if in1 == nil || !in1.Succeeded || len(in1.Responses) != 2 {
		t.Fatalf("inner txn 1: %v", in1)
	}
	innerGet := in1.Responses[1].GetResponseTxn().Responses[0].GetResponseRange()
	requireKV(t, "innermost get", innerGet.Kvs[0], "inner", "i", 3, 3, 1, 0)
	in2 := resp.Responses[2].GetResponseTxn()
	if in2 == nil || in2.Succeeded || len(in2.Responses) != 1 || string(in2.Responses[0].GetResponseRange().Kvs[0].Value) != "1" {
		t.Fatalf("inner txn 2: %v", in2)
	}
	requireKeys(t, "after nested", mustGet(t, cli, "", clientv3.WithPrefix()).Kvs, "inner", "n", "outer")
	g := mustGet(t, cli, "inner")
	requireKV(t, "inner", g.Kvs[0], "inner", "i", 3, 3, 1, 0)
}

func TestTxnDuplicateKey(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	kv := raw(m)
	put := func(k string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Value: []byte("v")}}}
	}
	del := func(k, end string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte(k), RangeEnd: []byte(end)}}}
	}
	nested := func(ops ...*pb.RequestOp) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: ops}}}
	}
	cases := []struct {
		name string
		cli  []clientv3.Op
		raw  []*pb.RequestOp
	}{
		{"put put", []clientv3.Op{clientv3.OpPut("d", "1"), clientv3.OpPut("d", "2")}, []*pb.RequestOp{put("d"), put("d")}},
		{"put, delete range covering it", []clientv3.Op{clientv3.OpPut("d/x", "1"), clientv3.OpDelete("d/", clientv3.WithPrefix())}, []*pb.RequestOp{put("d/x"), del("d/", "d0")}},
		{"put, nested put", []clientv3.Op{clientv3.OpPut("d", "1"), clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpPut("d", "2")}, nil)}, []*pb.RequestOp{put("d"), nested(put("d"))}},
	}
	for _, c := range cases {
		_, err := cli.Txn(ctx(t)).Then(c.cli...).Commit()
		_, rawErr := kv.Txn(ctx(t), &pb.TxnRequest{Success: c.raw})
		t.Run(c.name, func(t *testing.T) { errDuplicateKey.check(t, err, rawErr) })
	}
	// Two deletes of the same key, and reads of a written key, are fine.
	if _, err := cli.Txn(ctx(t)).Then(clientv3.OpDelete("d"), clientv3.OpDelete("d")).Commit(); err != nil {
		t.Fatalf("delete delete: %v", err)
	}
	if _, err := cli.Txn(ctx(t)).Then(clientv3.OpPut("d", "1"), clientv3.OpGet("d"), clientv3.OpGet("d")).Commit(); err != nil {
		t.Fatalf("put get get: %v", err)
	}
	if rev := currentRev(t, cli); rev != 2 {
		t.Fatalf("revision %d, want 2 (only the put/get/get txn wrote)", rev)
	}
}

func TestTxnTooManyOps(t *testing.T) {
	t.Parallel()
	m := start(t, "--max-txn-ops=4")
	cli := m.Client()
	ops := func(n int) []clientv3.Op {
		var out []clientv3.Op
		for i := 0; i < n; i++ {
			out = append(out, clientv3.OpPut(fmt.Sprintf("op%d", i), "v"))
		}
		return out
	}
	if _, err := cli.Txn(ctx(t)).Then(ops(4)...).Commit(); err != nil {
		t.Fatalf("4 ops with --max-txn-ops=4: %v", err)
	}
	_, err := cli.Txn(ctx(t)).Then(ops(5)...).Commit()
	framework.RequireClientError(t, err, errTooManyOps.client)
	_, err = cli.Txn(ctx(t)).Else(ops(5)...).Commit()
	framework.RequireClientError(t, err, errTooManyOps.client)
	var cmps []clientv3.Cmp
	for i := 0; i < 5; i++ {
		cmps = append(cmps, clientv3.Compare(clientv3.Version(fmt.Sprintf("op%d", i)), ">", -1))
	}
	_, err = cli.Txn(ctx(t)).If(cmps...).Commit()
	framework.RequireClientError(t, err, errTooManyOps.client)

	var reqs []*pb.RequestOp
	for i := 0; i < 5; i++ {
		reqs = append(reqs, &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("op0")}}})
	}
	_, rawErr := raw(m).Txn(ctx(t), &pb.TxnRequest{Success: reqs})
	framework.RequireGRPCError(t, rawErr, errTooManyOps.code, errTooManyOps.msg)
	if rev := currentRev(t, cli); rev != 2 {
		t.Fatalf("revision %d, want 2", rev)
	}
}
