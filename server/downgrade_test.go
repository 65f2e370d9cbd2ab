package server

import (
	"errors"
	"fmt"
	"testing"
	"time"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// validateDowngrade parses versions as etcd's semver library does, allows only the minor
// version below the cluster's (3.5 for 3.6, 3.4 for 3.5) and no second job.
func TestValidateDowngrade(t *testing.T) {
	for v, want := range map[string]error{
		"3.5": nil, "3.5.0": nil, "3.5.17": nil, "3.5.0-rc.1": nil, "3.5.0+build.5": nil, "3.5.0-": nil,
		"3.4": ErrInvalidDowngradeTargetVersion, "3.6": ErrInvalidDowngradeTargetVersion,
		"4.5": ErrInvalidDowngradeTargetVersion, "3.6.16": ErrInvalidDowngradeTargetVersion,
		"": ErrWrongDowngradeVersionFormat, "3": ErrWrongDowngradeVersionFormat, "v3.5": ErrWrongDowngradeVersionFormat,
		"3.5.x": ErrWrongDowngradeVersionFormat, "3.5.0-a..b": ErrWrongDowngradeVersionFormat,
		"3.5.0.1": ErrWrongDowngradeVersionFormat, "3.5-rc": ErrWrongDowngradeVersionFormat,
	} {
		target, err := validateDowngrade(v, ReleaseClusterVersion, downgradeJob{})
		if !errors.Is(err, want) {
			t.Errorf("%q: %v, want %v", v, err, want)
		}
		if err == nil && target != "3.5.0" {
			t.Errorf("%q: target %q, want 3.5.0", v, target)
		}
	}
	// A job enabled: the target is checked first, as etcd does.
	job := downgradeJob{TargetVersion: "3.5.0", Enabled: true}
	for _, tc := range []struct {
		v, cluster string
		want       error
	}{
		{"3.5", "3.6.0", ErrDowngradeInProcess},
		{"3.4", "3.6.0", ErrInvalidDowngradeTargetVersion},
		{"3.5", "3.5.0", ErrInvalidDowngradeTargetVersion},
		{"3.4", "3.5.0", ErrDowngradeInProcess},
		{"x", "3.5.0", ErrWrongDowngradeVersionFormat},
	} {
		if _, err := validateDowngrade(tc.v, tc.cluster, job); !errors.Is(err, tc.want) {
			t.Errorf("%q at %s during a job: %v, want %v", tc.v, tc.cluster, err, tc.want)
		}
	}
}

func TestStorageVersionFor(t *testing.T) {
	for cluster, want := range map[string]string{"3.6.0": "3.6.0", "3.5.0": "3.5.0", "3.5.7": "3.5.0", "3.7.0": "3.6.0"} {
		if got := storageVersionFor(cluster); got != want {
			t.Errorf("%s: %s, want %s", cluster, got, want)
		}
	}
}

// An enabled downgrade moves the cluster version to 3.5.0 and the db to 3.5's schema (no
// storage version in "meta") at the leader's next version check, survives a restart,
// and a cancel moves both back, with etcd's "cluster" bucket contents at each step.
func TestDowngradeEnableCancelRestart(t *testing.T) {
	cfg := testConfig(t)
	cfg.VersionMonitorInterval = 50 * time.Millisecond
	s := startServer(t, cfg)
	downgrade := func(s *Server, a pb.DowngradeRequest_DowngradeAction, v string) (string, error) {
		t.Helper()
		resp, err := s.Downgrade(ctx(t), &pb.DowngradeRequest{Action: a, Version: v})
		if err != nil {
			return "", err
		}
		if resp.Header.GetMemberId() != s.ID() {
			t.Fatalf("header %v", resp.Header)
		}
		return resp.Version, nil
	}
	stored := func(s *Server) (cluster, storage, job string) {
		t.Helper()
		cluster, err1 := s.store.ClusterVersion()
		storage, err2 := s.store.StorageVersion()
		raw, err3 := s.store.Downgrade()
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatal(err)
		}
		return cluster, storage, string(raw)
	}
	status := func(s *Server) string {
		t.Helper()
		st, err := s.Status(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%s %s %v %q", s.ClusterVersion(), st.StorageVersion, st.DowngradeInfo.GetEnabled(), st.DowngradeInfo.GetTargetVersion())
	}

	if got := status(s); got != `3.6.0 3.6.0 false ""` {
		t.Fatalf("fresh: %s", got)
	}
	// The leader records the initial cluster version, as etcd's does; no job yet.
	eventually(t, 5*time.Second, "the initial cluster version recorded", func() bool { c, _, _ := stored(s); return c == "3.6.0" })
	if c, st, j := stored(s); c != "3.6.0" || st != "3.6.0" || j != "" {
		t.Fatalf("stored when fresh: %q %q %q", c, st, j)
	}
	if v, err := downgrade(s, pb.DowngradeRequest_ENABLE, "3.5"); err != nil || v != "3.6" {
		t.Fatalf("enable: %q, %v", v, err)
	}
	if _, err := downgrade(s, pb.DowngradeRequest_VALIDATE, "3.5"); !errors.Is(err, ErrDowngradeInProcess) && s.ClusterVersion() == "3.6.0" {
		t.Fatalf("validate during the job: %v", err)
	}
	eventually(t, 5*time.Second, "cluster version 3.5.0", func() bool { return s.ClusterVersion() == "3.5.0" })
	if got := status(s); got != `3.5.0 3.5.0 true "3.5.0"` {
		t.Fatalf("downgraded: %s", got)
	}
	if c, st, j := stored(s); c != "3.5.0" || st != "" || j != `{"target-version":"3.5.0","enabled":true}` {
		t.Fatalf("stored while downgraded: %q %q %q", c, st, j)
	}
	if _, err := downgrade(s, pb.DowngradeRequest_ENABLE, "3.5"); !errors.Is(err, ErrInvalidDowngradeTargetVersion) {
		t.Fatalf("enable 3.5 again: %v", err)
	}
	if _, err := downgrade(s, pb.DowngradeRequest_ENABLE, "3.4"); !errors.Is(err, ErrDowngradeInProcess) {
		t.Fatalf("enable 3.4: %v", err)
	}
	_, sv, r, err := s.Snapshot(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if sv != "" {
		t.Fatalf("snapshot storage version %q, want none", sv)
	}

	s.Stop()
	s = startServer(t, cfg)
	if got := status(s); got != `3.5.0 3.5.0 true "3.5.0"` {
		t.Fatalf("after restart: %s", got)
	}
	if v, err := downgrade(s, pb.DowngradeRequest_CANCEL, ""); err != nil || v != "3.5" {
		t.Fatalf("cancel: %q, %v", v, err)
	}
	eventually(t, 5*time.Second, "cluster version 3.6.0", func() bool { return s.ClusterVersion() == "3.6.0" })
	if got := status(s); got != `3.6.0 3.6.0 false ""` {
		t.Fatalf("cancelled: %s", got)
	}
	if c, st, j := stored(s); c != "3.6.0" || st != "3.6.0" || j != `{"target-version":"","enabled":false}` {
		t.Fatalf("stored after cancel: %q %q %q", c, st, j)
	}
	if v, err := downgrade(s, pb.DowngradeRequest_CANCEL, ""); err != nil || v != "3.6" {
		t.Fatalf("cancel without a job: %q, %v", v, err)
	}
	s.Stop()
	s = startServer(t, cfg)
	if got := status(s); got != `3.6.0 3.6.0 false ""` {
		t.Fatalf("restart after cancel: %s", got)
	}
}

// In a 3-member cluster an enable through a follower moves every member's cluster and
// storage version (the leader proposes the new version, each member migrates its db
// when it applies it), and a cancel through another follower moves them back.
func TestDowngradeCluster(t *testing.T) {
	ms := startTestCluster(t, 3, func(c *Config) { c.VersionMonitorInterval = 50 * time.Millisecond })
	leader, followers := waitLeader(t, ms)
	all := func(what string, cluster, storage string, enabled bool) {
		t.Helper()
		eventually(t, 10*time.Second, what, func() bool {
			for _, m := range ms {
				st, err := m.s.Status(ctx(t))
				if err != nil || m.s.ClusterVersion() != cluster || st.StorageVersion != storage || st.DowngradeInfo.GetEnabled() != enabled {
					return false
				}
			}
			return true
		})
	}
	resp, err := followers[0].s.Downgrade(ctx(t), &pb.DowngradeRequest{Action: pb.DowngradeRequest_ENABLE, Version: "3.5"})
	if err != nil || resp.Version != "3.6" || resp.Header.GetMemberId() != followers[0].s.ID() {
		t.Fatalf("enable through a follower: %v, %v", resp, err)
	}
	if _, err := followers[1].s.Downgrade(ctx(t), &pb.DowngradeRequest{Action: pb.DowngradeRequest_ENABLE, Version: "3.4"}); !errors.Is(err, ErrDowngradeInProcess) && !errors.Is(err, ErrInvalidDowngradeTargetVersion) {
		t.Fatalf("second enable: %v", err)
	}
	all("every member at 3.5", "3.5.0", "3.5.0", true)
	for _, m := range ms {
		if sv, _ := m.s.store.StorageVersion(); sv != "" {
			t.Fatalf("member %x records storage version %q", m.s.ID(), sv)
		}
	}
	resp, err = followers[1].s.Downgrade(ctx(t), &pb.DowngradeRequest{Action: pb.DowngradeRequest_CANCEL})
	if err != nil || resp.Version != "3.5" {
		t.Fatalf("cancel through a follower: %v, %v", resp, err)
	}
	all("every member back at 3.6", "3.6.0", "3.6.0", false)

	// With a member down the job is recorded but, as etcd's, the leader moves nothing.
	followers[1].stop()
	eventually(t, 5*time.Second, "the stopped member unreachable", func() bool { return leader.s.peers.ActiveSince(followers[1].s.ID()).IsZero() })
	if _, err := followers[0].s.Downgrade(ctx(t), &pb.DowngradeRequest{Action: pb.DowngradeRequest_ENABLE, Version: "3.5"}); err != nil {
		t.Fatalf("enable with a member down: %v", err)
	}
	time.Sleep(500 * time.Millisecond) // 10 version checks
	for _, m := range []*clusterMember{leader, followers[0]} {
		if st, err := m.s.Status(ctx(t)); err != nil || m.s.ClusterVersion() != "3.6.0" || st.StorageVersion != "3.6.0" || !st.DowngradeInfo.GetEnabled() {
			t.Fatalf("member %x with a member down: %s %v, %v", m.s.ID(), m.s.ClusterVersion(), st, err)
		}
	}
}
