package e2e

import (
	"fmt"
	"testing"

	"github.com/cairn-kv/cairn/tests/framework"
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

// HashKV after compactions is etcd's: below the compact revision it covers what a
// compaction at the hashed revision would keep, or (nothing live) what the compaction
// kept. (At exactly a compaction revision etcd answers a hash it stored while compacting;
// not compared here.)
func TestHashKVAfterCompactionsMatchesEtcd(t *testing.T) {
	t.Parallel()
	p := framework.StartPair(t)
	run := func(m *framework.Member) []string {
		cli := m.Client()
		var out []string
		hash := func(step string) {
			r, err := cli.HashKV(ctx(t), m.ClientURL, 0)
			if err != nil {
				t.Fatalf("%s: HashKV after %s: %v", m.Name, step, err)
			}
			out = append(out, fmt.Sprintf("%s: rev %d hash %08x compact %d", step, r.Header.Revision, r.Hash, r.CompactRevision))
		}
		compact := func(rev int64) {
			if _, err := cli.Compact(ctx(t), rev, clientv3.WithCompactPhysical()); err != nil {
				t.Fatalf("%s: compact %d: %v", m.Name, rev, err)
			}
		}
		for i := 0; i < 20; i++ {
			mustPut(t, cli, fmt.Sprintf("k%02d", i%7), fmt.Sprint(i)) // revs 2..21
		}
		mustDelete(t, cli, "k03")
		if _, err := cli.Txn(ctx(t)).Then(clientv3.OpPut("t1", "a"), clientv3.OpPut("t2", "b"), clientv3.OpDelete("k04")).Commit(); err != nil {
			t.Fatalf("%s: txn: %v", m.Name, err)
		}
		hash("history")
		compact(18) // keys changed and deleted after 18
		hash("compact 18")
		mustPut(t, cli, "k00", "after")
		mustDelete(t, cli, "", clientv3.WithFromKey())
		compact(currentRev(t, cli))
		hash("all deleted, compacted")
		mustPut(t, cli, "z", "1")
		hash("put after compaction")
		mustPut(t, cli, "y", "1")
		mustPut(t, cli, "y", "2")
		compact(currentRev(t, cli))
		mustDelete(t, cli, "", clientv3.WithFromKey())
		hash("compacted, then all deleted")
		return out
	}
	got, want := run(p.Cairn), run(p.Etcd)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s\n  etcd: %s", got[i], want[i])
		}
	}
}
