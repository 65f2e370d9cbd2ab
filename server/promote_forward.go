package server

import (
	"context"
	"fmt"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/peerpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Only the leader knows how far a learner has caught up, so a follower forwards
// MemberPromote to it over the peer listener (peerpb.MemberForward) and answers with
// what the leader said, as etcd does. It uses the lease forwarder's connections.

// forwardMemberPromote asks the leader to promote (see forwardToLeader).
func (s *Server) forwardMemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	return forwardToLeader(ctx, s,
		func(ctx context.Context) (*pb.MemberPromoteResponse, error) { return s.memberPromoteLocal(ctx, r) },
		func(ctx context.Context, leader uint64) (*pb.MemberPromoteResponse, error) {
			return s.forwardMemberPromoteOnce(ctx, leader, r)
		})
}

func (s *Server) forwardMemberPromoteOnce(ctx context.Context, leader uint64, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	cc, u, err := s.leaderConn(leader)
	if err != nil {
		return nil, fmt.Errorf("server: forward member promote to %x: %w", leader, err)
	}
	actx, cancel := context.WithTimeout(ctx, s.leaseForwardAttempt())
	defer cancel()
	resp, err := peerpb.NewMemberForwardClient(cc).Promote(actx, &peerpb.MemberPromoteForwardRequest{ClusterId: s.clusterID, From: s.id, Request: r})
	if err != nil {
		return nil, s.leaseForwardError("member promote", leader, u, err)
	}
	if resp.GetResponse() == nil {
		return nil, fmt.Errorf("server: forward member promote to %x: empty response", leader)
	}
	out := resp.GetResponse()
	out.Header = s.clusterHeader() // this member answers the client
	return out, nil
}

// memberForwardService is the leader's side of peerpb.MemberForward.
type memberForwardService struct {
	peerpb.UnimplementedMemberForwardServer
	s *Server
}

func (h *memberForwardService) Promote(ctx context.Context, r *peerpb.MemberPromoteForwardRequest) (*peerpb.MemberPromoteForwardResponse, error) {
	s := h.s
	if err := s.refuseNonMember(ctx, "member promote", r.GetClusterId(), r.GetFrom()); err != nil {
		return nil, err
	}
	if r.GetRequest() == nil {
		return nil, status.Error(codes.InvalidArgument, "peer: member promote without a request")
	}
	if s.node.Leader() != s.id {
		return nil, status.Error(codes.Unavailable, ErrNotLeader.Error())
	}
	resp, err := s.memberPromoteLocal(ctx, r.GetRequest())
	if err != nil {
		return nil, leaseForwardStatus(err)
	}
	return &peerpb.MemberPromoteForwardResponse{Response: resp}, nil
}
