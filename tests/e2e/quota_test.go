package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cairn-kv/cairn/tests/framework"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

const noSpaceMsg = "etcdserver: mvcc: database space exceeded"

// Past --quota-backend-bytes, the member raises the NOSPACE alarm and then refuses what
// would grow the db (puts, txns that put, lease grants) with etcd's error, while reads,
// deletes, read-only txns and compaction go on; the alarm is listed, shown in the
// status, survives a restart, and a disarm without freed space is followed by the
// next write raising it again, while after delete, compaction and defragmentation a
// disarm lets writes in. The same script runs on Cairn and on etcd.
func TestQuotaNoSpace(t *testing.T) {
	p := framework.StartPair(t, framework.Options{Flags: []string{"--quota-backend-bytes=1048576"}})
	for _, m := range p.Members() {
		t.Run(map[bool]string{true: "etcd", false: "cairn"}[m.IsEtcd], func(t *testing.T) {
			testQuotaNoSpace(t, m)
		})
	}
}

func testQuotaNoSpace(t *testing.T, m *framework.Member) {
	cli := m.Client()
	kv := raw(m)
	value := strings.Repeat("x", 64*1024)
	filled := false
	for i := 0; i < 100 && !filled; i++ {
		_, err := kv.Put(ctx(t), &pb.PutRequest{Key: []byte(fmt.Sprintf("big%03d", i)), Value: []byte(value)})
		switch code, msg := framework.StatusOf(err); {
		case err == nil:
		case code == codes.ResourceExhausted && msg == noSpaceMsg:
			filled = true
		default:
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if !filled {
		t.Fatal("100 puts of 64 KiB did not exceed a 1 MiB quota")
	}
	requireNoSpace := func(when string) {
		t.Helper()
		_, err := kv.Put(ctx(t), &pb.PutRequest{Key: []byte("small"), Value: []byte("v")})
		framework.RequireGRPCError(t, err, codes.ResourceExhausted, noSpaceMsg)
		_, err = kv.Txn(ctx(t), &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("small")}}}}})
		framework.RequireGRPCError(t, err, codes.ResourceExhausted, noSpaceMsg)
		_, err = pb.NewLeaseClient(cli.ActiveConnection()).LeaseGrant(ctx(t), &pb.LeaseGrantRequest{TTL: 60})
		framework.RequireGRPCError(t, err, codes.ResourceExhausted, noSpaceMsg)
		out, stderr, err := m.Etcdctl("alarm", "list")
		if err != nil || !strings.Contains(out, "alarm:NOSPACE") {
			t.Fatalf("%s: etcdctl alarm list = %q %q %v", when, out, stderr, err)
		}
		st := clStatus(t, m)
		if want := fmt.Sprintf("memberID:%d alarm:NOSPACE ", st.Header.MemberId); !strings.Contains(strings.Join(st.Errors, "|"), want) {
			t.Fatalf("%s: status errors %q, want %q", when, st.Errors, want)
		}
	}
	requireNoSpace("over quota")

	// Reads, read-only txns, deletes and compaction are still served.
	if r := mustGet(t, cli, "big000"); len(r.Kvs) != 1 {
		t.Fatalf("get big000 = %v", r.Kvs)
	}
	if _, err := kv.Txn(ctx(t), &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("big000")}}}}}); err != nil {
		t.Fatalf("read-only txn: %v", err)
	}
	dr, err := cli.Delete(ctx(t), "big000")
	if err != nil || dr.Deleted != 1 {
		t.Fatalf("delete: %v, %v", dr, err)
	}
	if _, err := cli.Compact(ctx(t), dr.Header.Revision); err != nil {
		t.Fatalf("compact: %v", err)
	}

	m.Stop()
	m.Restart()
	requireNoSpace("after a restart")

	// Disarming without freeing space: the next write finds the db still over the quota
	// and raises the alarm again.
	if out, stderr, err := m.Etcdctl("alarm", "disarm"); err != nil || !strings.Contains(out, "alarm:NOSPACE") {
		t.Fatalf("etcdctl alarm disarm = %q %q %v", out, stderr, err)
	}
	_, err = cli.Put(ctx(t), "small", "v", clientv3.WithPrevKV())
	if code, msg := framework.StatusOf(err); msg != noSpaceMsg && !strings.Contains(err.Error(), "database space exceeded") {
		t.Fatalf("put after disarm = %v (%v %q), want NOSPACE", err, code, msg)
	}
	requireNoSpace("after disarm and another write")

	// Freeing space for real: delete, compact, defragment, disarm; then writes go in.
	dr, err = cli.Delete(ctx(t), "big", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx(t), dr.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if out, stderr, err := m.Etcdctl("defrag"); err != nil {
		t.Fatalf("etcdctl defrag = %q %q %v", out, stderr, err)
	}
	if out, stderr, err := m.Etcdctl("alarm", "disarm"); err != nil || !strings.Contains(out, "alarm:NOSPACE") {
		t.Fatalf("etcdctl alarm disarm after defrag = %q %q %v", out, stderr, err)
	}
	if _, err := cli.Put(ctx(t), "small", "v"); err != nil {
		t.Fatalf("put after freeing space: %v", err)
	}
}
