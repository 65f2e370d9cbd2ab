package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/cairn-kv/cairn/tests/framework"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// downgradeAnswer is a Downgrade response or error, as compared between servers.
func downgradeAnswer(mc pb.MaintenanceClient, t *testing.T, action pb.DowngradeRequest_DowngradeAction, v string) string {
	resp, err := mc.Downgrade(ctx(t), &pb.DowngradeRequest{Action: action, Version: v})
	if err != nil {
		code, msg := framework.StatusOf(err)
		return fmt.Sprintf("error %v %q", code, msg)
	}
	if resp.Header == nil || resp.Header.ClusterId == 0 || resp.Header.MemberId == 0 {
		return fmt.Sprintf("bad header %v", resp.Header)
	}
	return fmt.Sprintf("version %q", resp.Version)
}

// TestDowngradeValidateCancel: Maintenance.Downgrade's validate and cancel answer as etcd
// 3.6's do (raw gRPC and etcdctl): 3.5 (any patch, with or without pre-release) is the
// one valid target of a 3.6 cluster, other versions are invalid targets, malformed ones
// a wrong format; cancel without a downgrade job succeeds (etcd only logs "no inflight
// downgrade job"). Cairn cannot enable a downgrade (it cannot move its cluster and
// storage version to 3.5): enable of a valid target is refused with a clear error,
// while malformed and invalid targets get etcd's errors.
func TestDowngradeValidateCancel(t *testing.T) {
	t.Parallel()
	m := start(t)
	mc := pb.NewMaintenanceClient(m.Client().ActiveConnection())
	const (
		ok        = `version "3.6"`
		badFormat = `error InvalidArgument "etcdserver: wrong downgrade target version format"`
		badTarget = `error InvalidArgument "etcdserver: invalid downgrade target version"`
	)
	validate := pb.DowngradeRequest_VALIDATE
	for _, tc := range []struct {
		action pb.DowngradeRequest_DowngradeAction
		v      string
		want   string
	}{
		{validate, "3.5", ok},
		{validate, "3.5.0", ok},
		{validate, "3.5.9", ok},
		{validate, "3.5.0-alpha.1+meta", ok},
		{validate, "3.4", badTarget},
		{validate, "3.6", badTarget},
		{validate, "3.6.16", badTarget},
		{validate, "3.7", badTarget},
		{validate, "2.5", badTarget},
		{validate, "v3.5", badFormat},
		{validate, "3", badFormat},
		{validate, "", badFormat},
		{validate, "abc", badFormat},
		{validate, "3.5.x", badFormat},
		{validate, "3.5.0-", ok}, // an empty pre-release is none
		{validate, "3.5.0-a..b", badFormat},
		{pb.DowngradeRequest_CANCEL, "", ok},
		{pb.DowngradeRequest_CANCEL, "3.5", ok},
		{pb.DowngradeRequest_ENABLE, "3.4", badTarget},
		{pb.DowngradeRequest_ENABLE, "abc", badFormat},
		{pb.DowngradeRequest_DowngradeAction(7), "3.5", `error Unknown "etcdserver: unknown method"`},
	} {
		if got := downgradeAnswer(mc, t, tc.action, tc.v); got != tc.want {
			t.Errorf("%v %q: %s, want %s", tc.action, tc.v, got, tc.want)
		}
	}
	// Still no downgrade job: status says so, validate still succeeds.
	st, err := mc.Status(ctx(t), &pb.StatusRequest{})
	if err != nil || st.DowngradeInfo == nil || st.DowngradeInfo.Enabled || st.DowngradeInfo.TargetVersion != "" {
		t.Fatalf("status downgrade info: %v, %v", st.GetDowngradeInfo(), err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"downgrade", "validate", "3.5"}, "Downgrade validate success, cluster version 3.6\n"},
		{[]string{"downgrade", "cancel"}, "Downgrade cancel success, cluster version 3.6\n"},
	} {
		out, stderr, err := m.Etcdctl(tc.args...)
		if err != nil || out != tc.want {
			t.Errorf("etcdctl %s: %q %q %v, want %q", strings.Join(tc.args, " "), out, stderr, err, tc.want)
		}
	}
	_, stderr, err := m.Etcdctl("downgrade", "validate", "3.4")
	if err == nil || !regexp.MustCompile(`(?m)^Error: etcdserver: invalid downgrade target version$`).MatchString(stderr) {
		t.Errorf("etcdctl downgrade validate 3.4: %q, %v", stderr, err)
	}

	// Enable of the valid target: etcd records the job (and moves the cluster version to
	// 3.5); Cairn refuses it.
	got := downgradeAnswer(mc, t, pb.DowngradeRequest_ENABLE, "3.5")
	if framework.AgainstEtcd() {
		if got != ok {
			t.Fatalf("etcd: enable 3.5: %s", got)
		}
		if again := downgradeAnswer(mc, t, validate, "3.5"); again != `error FailedPrecondition "etcdserver: cluster has a downgrade job in progress"` {
			t.Fatalf("etcd: validate during a job: %s", again)
		}
		return
	}
	if want := `error FailedPrecondition "cairn: downgrade is not supported: Cairn cannot move the cluster and its storage to version 3.5"`; got != want {
		t.Fatalf("enable 3.5: %s, want %s", got, want)
	}
	if st, err := mc.Status(ctx(t), &pb.StatusRequest{}); err != nil || st.DowngradeInfo.GetEnabled() {
		t.Fatalf("status after a refused enable: %v, %v", st.GetDowngradeInfo(), err)
	}
}
