package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-kv/cairn/internal/errs"
	"github.com/cairn-kv/cairn/mvcc"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"go.uber.org/zap"
)

// Downgrade errors (internal/errs), and what etcd logs for a cancel without a job.
var (
	ErrWrongDowngradeVersionFormat   = errs.ErrWrongDowngradeVersionFormat
	ErrInvalidDowngradeTargetVersion = errs.ErrInvalidDowngradeTargetVersion
	ErrDowngradeInProcess            = errs.ErrDowngradeInProcess
	ErrUnknownMethod                 = errs.ErrUnknownMethod
	errNoInflightDowngrade           = errors.New("etcdserver: no inflight downgrade job")
)

// Downgrade is etcd 3.6's Maintenance.Downgrade, after a linearizable read (a follower
// answers from the latest applied state):
//   - validate: the target (X.Y or X.Y.Z[-pre][+meta], as etcd's semver parses it; the
//     patch is ignored) must be the minor version just below the cluster version (3.5
//     while it is 3.6), and no downgrade job may be enabled (ErrDowngradeInProcess);
//   - enable: validated the same way, then the job (target X.Y.0, enabled) is recorded
//     through raft in the "cluster" bucket. The leader then moves the cluster version to
//     the target at its next version check (runVersionMonitor), and applying that moves
//     every member's db to the target's storage schema;
//   - cancel: ends an enabled job through raft, and the leader moves the cluster version
//     back to 3.6.0 at its next check. With no job etcd only logs "no inflight downgrade
//     job" and answers success, and so does Cairn.
//
// Every success carries the cluster version as major.minor, as it is when answering (an
// enable answers "3.6": the version moves later).
//
// Nothing here makes a Cairn data dir one etcd 3.5 can take over (Cairn's WAL is its
// own): the way to 3.5 is a snapshot saved during the downgrade, restored by etcdutl.
func (s *Server) Downgrade(ctx context.Context, r *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	action := r.GetAction()
	switch action {
	case pb.DowngradeRequest_VALIDATE, pb.DowngradeRequest_ENABLE, pb.DowngradeRequest_CANCEL:
	default:
		return nil, ErrUnknownMethod
	}
	if err := s.linearizableRead(ctx); err != nil {
		return nil, err
	}
	var req *pb.DowngradeInfoSetRequest
	switch action {
	case pb.DowngradeRequest_VALIDATE, pb.DowngradeRequest_ENABLE:
		cluster, _, job := s.versions.get()
		target, err := validateDowngrade(r.GetVersion(), cluster, job)
		if err != nil {
			s.lg.Warn("reject downgrade request", zap.Error(err))
			return nil, err
		}
		if action == pb.DowngradeRequest_VALIDATE {
			return &pb.DowngradeResponse{Header: s.Header(), Version: s.clusterMinorVersion()}, nil
		}
		req = &pb.DowngradeInfoSetRequest{Enabled: true, Ver: target}
	case pb.DowngradeRequest_CANCEL:
		if _, _, job := s.versions.get(); !job.Enabled {
			s.lg.Warn("failed to cancel downgrade", zap.Error(errNoInflightDowngrade))
			return &pb.DowngradeResponse{Header: s.Header(), Version: s.clusterMinorVersion()}, nil
		}
		req = &pb.DowngradeInfoSetRequest{}
	}
	resp, err := proposeFor[*pb.DowngradeResponse](ctx, s, &pb.InternalRaftRequest{DowngradeInfoSet: req})
	if err != nil {
		return nil, err
	}
	resp.Version = s.clusterMinorVersion()
	return resp, nil
}

// applyDowngradeInfoSet records a downgrade job or its end. An enable is checked again
// against the applied state, so of two racing enables only the first wins.
func (s *Server) applyDowngradeInfoSet(tx *mvcc.WriteTxn, r *pb.DowngradeInfoSetRequest) applyResult {
	var job downgradeJob
	if r.GetEnabled() {
		cluster, _, cur := s.versions.get()
		target, err := validateDowngrade(r.GetVer(), cluster, cur)
		if err != nil {
			return applyResult{err: err}
		}
		job = downgradeJob{TargetVersion: target, Enabled: true}
	}
	raw, err := json.Marshal(job)
	if err != nil {
		return applyResult{err: err}
	}
	tx.PutDowngrade(raw)
	return applyResult{
		resp: &pb.DowngradeResponse{Header: &pb.ResponseHeader{Revision: tx.Rev()}},
		done: func() {
			s.versions.setDowngrade(job)
			if job.Enabled {
				s.lg.Info("downgrade job enabled", zap.String("target-version", job.TargetVersion))
			} else {
				s.lg.Info("downgrade job cancelled")
			}
		},
	}
}

// applyClusterVersionSet records the cluster version and migrates the db to the storage
// schema it asks for, in the same store txn: every member's storage version follows the
// cluster version at the same log index (etcd's members each migrate on their own just
// after).
func (s *Server) applyClusterVersionSet(tx *mvcc.WriteTxn, r *pb.ClusterVersionSetRequest) applyResult {
	v := r.GetVer()
	if _, _, err := parseSemver(v); err != nil {
		return applyResult{err: fmt.Errorf("server: cluster version %q: %w", v, err)}
	}
	from, fromStorage, _ := s.versions.get()
	recorded := s.versions.isRecorded()
	storage := storageVersionFor(v)
	tx.PutClusterVersion(v)
	if storage != fromStorage {
		tx.SetStorageVersion(storage)
	}
	return applyResult{
		done: func() {
			s.versions.setCluster(v, storage, true)
			if recorded {
				s.lg.Info("updated cluster version", zap.String("from", from), zap.String("to", v))
			} else {
				s.lg.Info("set initial cluster version", zap.String("cluster-version", v))
			}
			if storage != fromStorage {
				s.lg.Info("updated storage version", zap.String("from", fromStorage), zap.String("to", storage))
			}
		},
	}
}

// runVersionMonitor is the leader's version check: once the member is ready, then every
// VersionMonitorInterval as etcd's. The cluster version should be the enabled downgrade
// job's target, or this release's when there is none; the leader proposes it when it
// differs, or when the store records none yet (a new cluster: etcd's leader records the
// initial cluster version the same way). As etcd's, it moves nothing while a member is
// unreachable (etcd's leader must read every member's version first).
func (s *Server) runVersionMonitor() {
	select {
	case <-s.readyc:
	case <-s.stopping:
		return
	}
	t := time.NewTicker(s.cfg.VersionMonitorInterval)
	defer t.Stop()
	for {
		s.checkClusterVersion()
		select {
		case <-t.C:
		case <-s.stopping:
			return
		}
	}
}

// checkClusterVersion is one check of runVersionMonitor.
func (s *Server) checkClusterVersion() {
	if s.node.Leader() != s.id {
		return
	}
	cluster, _, job := s.versions.get()
	recorded := s.versions.isRecorded()
	want := ReleaseClusterVersion
	if job.Enabled {
		want = job.TargetVersion
	}
	if cluster == want && recorded {
		return
	}
	if id := s.unreachableMember(); id != 0 {
		s.lg.Debug("cluster version not updated: a member is unreachable",
			zap.String("to", want), zap.String("remote-member-id", fmt.Sprintf("%x", id)))
		return
	}
	if recorded {
		s.lg.Info("updating cluster version", zap.String("from", cluster), zap.String("to", want))
	} else {
		s.lg.Info("setting up initial cluster version", zap.String("cluster-version", want))
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.VersionMonitorInterval)
	defer cancel()
	// The member's own request: no user to check.
	_, err := s.propose(ctx, &pb.InternalRaftRequest{
		ClusterVersionSet: &pb.ClusterVersionSetRequest{Ver: want},
		Header:            &pb.RequestHeader{},
	})
	if err != nil {
		s.lg.Warn("failed to update cluster version", zap.String("to", want), zap.Error(err))
	}
}

// unreachableMember returns a member other than this one that messages do not reach now,
// 0 when every member is reachable.
func (s *Server) unreachableMember() uint64 {
	for _, m := range s.members.all() {
		if m.ID != s.id && s.peers.ActiveSince(m.ID).IsZero() {
			return m.ID
		}
	}
	return 0
}

// clusterMinorVersion is the cluster version as etcd reports it in downgrade answers.
func (s *Server) clusterMinorVersion() string {
	cluster, _, _ := s.versions.get()
	major, minor, _ := parseSemver(cluster)
	return fmt.Sprintf("%d.%d", major, minor)
}

// validateDowngrade checks a downgrade target as etcd does, and returns it as X.Y.0: a
// semantic version (or X.Y), then the minor version just below the cluster's, then no
// job enabled already.
func validateDowngrade(v, cluster string, job downgradeJob) (string, error) {
	major, minor, err := parseSemver(v)
	if err != nil {
		// etcd also takes "major.minor"
		if major, minor, err = parseSemver(v + ".0"); err != nil {
			return "", ErrWrongDowngradeVersionFormat
		}
	}
	cmajor, cminor, _ := parseSemver(cluster)
	if major != cmajor || minor != cminor-1 {
		return "", ErrInvalidDowngradeTargetVersion
	}
	if job.Enabled {
		return "", ErrDowngradeInProcess
	}
	return fmt.Sprintf("%d.%d.0", major, minor), nil
}

// semverIdentifier is what etcd's semver library (coreos/go-semver) accepts as a
// pre-release or build metadata.
var semverIdentifier = regexp.MustCompile(`^[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*$`)

// parseSemver parses a version the way coreos/go-semver does, which is what etcd's
// downgrade checks use: "X.Y.Z", optionally "-pre-release" and "+metadata", each number
// a base-10 int64.
func parseSemver(v string) (major, minor int64, err error) {
	v, meta, _ := strings.Cut(v, "+")
	v, pre, _ := strings.Cut(v, "-")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) != 3 {
		return 0, 0, fmt.Errorf("%s is not in dotted-tri format", v)
	}
	for _, id := range []string{pre, meta} {
		if id != "" && !semverIdentifier.MatchString(id) {
			return 0, 0, fmt.Errorf("%s is not a valid semver identifier", id)
		}
	}
	var nums [3]int64
	for i, p := range parts {
		if nums[i], err = strconv.ParseInt(p, 10, 64); err != nil {
			return 0, 0, err
		}
	}
	return nums[0], nums[1], nil
}
