package server

import (
	"context"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"go.uber.org/zap"
)

// etcd's estimates of what storing a request costs beyond its key and value bytes.
const (
	quotaLeaseOverhead = 64
	quotaKVOverhead    = 256
)

// quotaCost is what a request would add to the db, as etcd estimates it: a put its key,
// value and metadata, a txn its costlier branch, a lease grant its record; 0 for
// requests that only read or delete.
func quotaCost(r *pb.InternalRaftRequest) int64 {
	switch {
	case r.Put != nil:
		return putCost(r.Put)
	case r.Txn != nil:
		return txnCost(r.Txn)
	case r.LeaseGrant != nil:
		return quotaLeaseOverhead
	}
	return 0
}

func putCost(p *pb.PutRequest) int64 { return quotaKVOverhead + int64(len(p.Key)+len(p.Value)) }

func txnCost(t *pb.TxnRequest) int64 {
	branch := func(ops []*pb.RequestOp) (c int64) {
		for _, op := range ops {
			switch {
			case op.GetRequestPut() != nil:
				c += putCost(op.GetRequestPut())
			case op.GetRequestTxn() != nil:
				c += txnCost(op.GetRequestTxn())
			}
		}
		return c
	}
	return max(branch(t.Success), branch(t.Failure))
}

// checkQuota refuses, before it is proposed, a request that would take the db past
// --quota-backend-bytes, and raises the NOSPACE alarm for this member through raft, as
// etcd's client edge does. Once the alarm is applied every member refuses such requests
// at apply time (refusedByAlarm), whatever its own db size.
func (s *Server) checkQuota(ctx context.Context, r *pb.InternalRaftRequest) error {
	quota := s.quota()
	cost := quotaCost(r)
	if quota < 0 || cost == 0 {
		return nil
	}
	if size, _ := s.store.Size(); size+cost < quota {
		return nil
	}
	if !s.alarms.has(pb.AlarmType_NOSPACE) {
		s.lg.Warn("request exceeds the backend quota; raising the NOSPACE alarm",
			zap.Int64("quota-size-bytes", quota), zap.Int64("request-cost-bytes", cost))
	}
	alarm := &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: s.id, Alarm: pb.AlarmType_NOSPACE}
	// The member raises it, whoever sent the request (its token is not checked for it).
	if _, err := s.propose(ctx, &pb.InternalRaftRequest{Alarm: alarm, Header: &pb.RequestHeader{}}); err != nil {
		s.lg.Warn("failed to raise the NOSPACE alarm", zap.Error(err))
	}
	return ErrNoSpace
}
