package e2e

import (
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestCompaction(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	kv := raw(m)
	for i := 1; i <= 5; i++ {
		mustPut(t, cli, "c", fmt.Sprint(i)) // revisions 2..6
	}
	mustPut(t, cli, "other", "x") // 7
	mustDelete(t, cli, "other")   // 8

	cr, err := cli.Compact(ctx(t), 4)
	if err != nil {
		t.Fatalf("compact 4: %v", err)
	}
	if cr.Header.Revision != 8 {
		t.Fatalf("compact header revision %d, want 8", cr.Header.Revision)
	}
	// Below the compacted revision: ErrCompacted; at it and above: readable.
	_, err = cli.Get(ctx(t), "c", clientv3.WithRev(3))
	_, rawErr := kv.Range(ctx(t), &pb.RangeRequest{Key: []byte("c"), Revision: 3})
	errCompacted.check(t, err, rawErr)
	requireKV(t, "c@4", mustGet(t, cli, "c", clientv3.WithRev(4)).Kvs[0], "c", "3", 2, 4, 3, 0)
	requireKV(t, "c@6", mustGet(t, cli, "c", clientv3.WithRev(6)).Kvs[0], "c", "5", 2, 6, 5, 0)
	// Compaction keeps the latest version of live keys, and never touches
	// the current state.
	requireKV(t, "c", mustGet(t, cli, "c").Kvs[0], "c", "5", 2, 6, 5, 0)
	// A compacted revision inside a txn.
	_, err = cli.Txn(ctx(t)).Then(clientv3.OpGet("c", clientv3.WithRev(2))).Commit()
	_, rawErr = kv.Txn(ctx(t), &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("c"), Revision: 2}}}}})
	errCompacted.check(t, err, rawErr)

	// Compacting again at or below the compacted revision: ErrCompacted.
	_, err = cli.Compact(ctx(t), 4)
	_, rawErr = kv.Compact(ctx(t), &pb.CompactionRequest{Revision: 3})
	errCompacted.check(t, err, rawErr)
	// Future revision.
	_, err = cli.Compact(ctx(t), 9)
	_, rawErr = kv.Compact(ctx(t), &pb.CompactionRequest{Revision: 100})
	errFutureRev.check(t, err, rawErr)
	_, err = cli.Get(ctx(t), "c", clientv3.WithRev(9))
	_, rawErr = kv.Range(ctx(t), &pb.RangeRequest{Key: []byte("c"), Revision: 9})
	errFutureRev.check(t, err, rawErr)

	// Physical compaction at the current revision: returns once applied;
	// the deleted key's history is gone, the current state is intact.
	if _, err := cli.Compact(ctx(t), 8, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("physical compact 8: %v", err)
	}
	_, err = cli.Get(ctx(t), "other", clientv3.WithRev(7))
	_, rawErr = kv.Range(ctx(t), &pb.RangeRequest{Key: []byte("other"), Revision: 7})
	errCompacted.check(t, err, rawErr)
	if g := mustGet(t, cli, "", clientv3.WithPrefix(), clientv3.WithRev(8)); len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "5" {
		t.Fatalf("all@8 after compaction: %v", g.Kvs)
	}
	// Compaction does not create a revision; writes continue from it.
	if p := mustPut(t, cli, "c", "6"); p.Header.Revision != 9 {
		t.Fatalf("put after compaction at revision %d, want 9", p.Header.Revision)
	}

	// The compacted revision survives a restart.
	m.Restart()
	cli = m.Client()
	_, err = cli.Get(ctx(t), "c", clientv3.WithRev(7))
	_, rawErr = raw(m).Range(ctx(t), &pb.RangeRequest{Key: []byte("c"), Revision: 7})
	errCompacted.check(t, err, rawErr)
	requireKV(t, "c after restart", mustGet(t, cli, "c").Kvs[0], "c", "6", 2, 9, 6, 0)
}

func mustDelete(t testing.TB, cli *clientv3.Client, key string, opts ...clientv3.OpOption) *clientv3.DeleteResponse {
	t.Helper()
	resp, err := cli.Delete(ctx(t), key, opts...)
	if err != nil {
		t.Fatalf("delete %q: %v", key, err)
	}
	return resp
}
