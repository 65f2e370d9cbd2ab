package api

import (
	"context"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// Backend is what the client-facing services need from a member. *server.Server
// implements it; api never touches storage or raft itself.
type Backend interface {
	Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error)
	Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error)
	DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error)
	Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error)
	Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error)
	Status(ctx context.Context) (*pb.StatusResponse, error)
	MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error)
	HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error)
	Alarms() []*pb.AlarmMember  // active alarms
	Leader() uint64             // 0 when there is no leader
	Header() *pb.ResponseHeader // cluster_id, member_id, raft_term, current revision
	ClusterVersion() string     // e.g. "3.6.0"

	LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error)
	LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error)
	// LeaseRenew is one keep-alive: the lease's granted TTL, or an error whose text is
	// "lease not found" when it does not exist.
	LeaseRenew(ctx context.Context, id int64) (ttl int64, err error)
	LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error)
	LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error)
}

// learnerReporter is implemented by a Backend that can say whether this member is a raft
// learner. etcd rejects most RPCs on learners and /readyz reports "non_learner"; a
// Backend without it is treated as a voting member.
type learnerReporter interface {
	IsLearner() bool
}

func isLearner(b Backend) bool {
	if l, ok := b.(learnerReporter); ok {
		return l.IsLearner()
	}
	return false
}
