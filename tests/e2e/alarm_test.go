package e2e

import (
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A CORRUPT alarm (raised through Maintenance.Alarm, as the corruption checks
// do) stops every write with etcd's "corrupt cluster" while reads go on; it is
// listed by etcdctl and Status, survives a restart, and `etcdctl alarm disarm`
// clears it.
func TestCorruptAlarmStopsWrites(t *testing.T) {
	m := start(t)
	cli := m.Client()
	mustPut(t, cli, "k", "v1")
	st := clStatus(t, m)
	id := st.Header.MemberId
	mc := pb.NewMaintenanceClient(cli.ActiveConnection())
	ar, err := mc.Alarm(ctx(t), &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: id, Alarm: pb.AlarmType_CORRUPT})
	if err != nil || len(ar.Alarms) != 1 || ar.Alarms[0].MemberID != id || ar.Alarms[0].Alarm != pb.AlarmType_CORRUPT {
		t.Fatalf("Alarm ACTIVATE = %v, %v", ar, err)
	}

	requireCorrupt := func(when string) {
		t.Helper()
		_, err := cli.Put(ctx(t), "k", "v2")
		if err == nil || err.Error() != rpctypes.ErrCorrupt.Error() {
			t.Fatalf("%s: Put = %v, want %v", when, err, rpctypes.ErrCorrupt)
		}
		_, err = raw(m).Txn(ctx(t), &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k")}}}}})
		if s := status.Convert(err); s.Code() != codes.DataLoss || s.Message() != "etcdserver: corrupt cluster" {
			t.Fatalf("%s: Txn = %v, want DataLoss 'etcdserver: corrupt cluster'", when, err)
		}
		if r := mustGet(t, cli, "k"); string(r.Kvs[0].Value) != "v1" {
			t.Fatalf("%s: k = %q, want v1", when, r.Kvs[0].Value)
		}
		out, stderr, err := m.Etcdctl("alarm", "list")
		if err != nil || !strings.Contains(out, "alarm:CORRUPT") {
			t.Fatalf("%s: etcdctl alarm list = %q %q %v", when, out, stderr, err)
		}
	}
	requireCorrupt("alarmed")
	m.Restart()
	requireCorrupt("alarmed, after a restart")

	out, stderr, err := m.Etcdctl("alarm", "disarm")
	if err != nil || !strings.Contains(out, "alarm:CORRUPT") {
		t.Fatalf("etcdctl alarm disarm = %q %q %v", out, stderr, err)
	}
	mustPut(t, cli, "k", "v3")
	ar, err = mc.Alarm(ctx(t), &pb.AlarmRequest{Action: pb.AlarmRequest_GET})
	if err != nil || len(ar.Alarms) != 0 {
		t.Fatalf("alarms after disarm = %v, %v", ar, err)
	}
}
