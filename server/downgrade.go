package server

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/cairn-kv/cairn/internal/errs"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"go.uber.org/zap"
)

// Downgrade errors (internal/errs), and what etcd logs for a cancel without a job.
var (
	ErrWrongDowngradeVersionFormat   = errs.ErrWrongDowngradeVersionFormat
	ErrInvalidDowngradeTargetVersion = errs.ErrInvalidDowngradeTargetVersion
	ErrDowngradeNotSupported         = errs.ErrDowngradeNotSupported
	ErrUnknownMethod                 = errs.ErrUnknownMethod
	errNoInflightDowngrade           = errors.New("etcdserver: no inflight downgrade job")
)

// Downgrade is etcd 3.6's Maintenance.Downgrade, minus the downgrade itself:
//   - validate: the target (X.Y or X.Y.Z[-pre][+meta], as etcd's semver parses it; the
//     patch is ignored) must be the minor version just below the cluster's, 3.5;
//   - enable: validated the same way, then refused with ErrDowngradeNotSupported. etcd
//     records the job through raft, moves the cluster version to 3.5 and migrates its
//     storage to 3.5's schema, so that etcd 3.5 binaries can take over the data; Cairn
//     does none of that, and saying "enabled" without it would be a fake success;
//   - cancel: with no downgrade job (never, in Cairn) etcd only logs "no inflight
//     downgrade job" and answers success, and so does Cairn.
//
// Every success carries the cluster version as major.minor.
func (s *Server) Downgrade(ctx context.Context, r *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	resp := &pb.DowngradeResponse{Header: s.Header(), Version: clusterMinorVersion()}
	switch r.GetAction() {
	case pb.DowngradeRequest_VALIDATE:
		if err := validateDowngradeTarget(r.GetVersion()); err != nil {
			return nil, err
		}
		return resp, nil
	case pb.DowngradeRequest_ENABLE:
		err := validateDowngradeTarget(r.GetVersion())
		if err == nil {
			err = ErrDowngradeNotSupported
		}
		s.lg.Warn("reject downgrade request", zap.Error(err))
		return nil, err
	case pb.DowngradeRequest_CANCEL:
		s.lg.Warn("failed to cancel downgrade", zap.Error(errNoInflightDowngrade))
		return resp, nil
	}
	return nil, ErrUnknownMethod
}

// clusterMinorVersion is the cluster version as etcd reports it in downgrade answers.
func clusterMinorVersion() string {
	major, minor, _ := parseSemver(ClusterVersion)
	return fmt.Sprintf("%d.%d", major, minor)
}

// validateDowngradeTarget: etcd allows only the previous minor version of the cluster's.
func validateDowngradeTarget(v string) error {
	major, minor, err := parseSemver(v)
	if err != nil {
		// etcd also takes "major.minor"
		if major, minor, err = parseSemver(v + ".0"); err != nil {
			return ErrWrongDowngradeVersionFormat
		}
	}
	cmajor, cminor, _ := parseSemver(ClusterVersion)
	if major != cmajor || minor != cminor-1 {
		return ErrInvalidDowngradeTargetVersion
	}
	return nil
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
