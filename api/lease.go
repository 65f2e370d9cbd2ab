package api

import (
	"context"
	"errors"
	"io"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type leaseServer struct {
	pb.UnimplementedLeaseServer
	b  Backend
	lg *zap.Logger
}

func (s *leaseServer) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	resp, err := s.b.LeaseGrant(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.b, &resp.Header)
	return resp, nil
}

func (s *leaseServer) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	resp, err := s.b.LeaseRevoke(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.b, &resp.Header)
	return resp, nil
}

// LeaseTimeToLive answers TTL -1 for a lease that does not exist, as etcd does, rather
// than an error.
func (s *leaseServer) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	resp, err := s.b.LeaseTimeToLive(ctx, r)
	if err != nil {
		if toGRPCError(err) != ErrGRPCLeaseNotFound {
			return nil, toGRPCError(err)
		}
		resp = &pb.LeaseTimeToLiveResponse{ID: r.ID, TTL: -1}
	}
	fillHeader(s.b, &resp.Header)
	return resp, nil
}

func (s *leaseServer) LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	resp, err := s.b.LeaseLeases(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.b, &resp.Header)
	return resp, nil
}

// LeaseKeepAlive renews a lease per request on the stream. The header is taken before
// the renewal, so its revision is never later than the keep-alive (a client must not
// see a keep-alive succeed at a revision after the lease was revoked). An unknown lease
// gets TTL 0, not an error.
func (s *leaseServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if status.Code(err) != codes.Canceled {
				s.lg.Debug("lease keep-alive stream receive failed", zap.Error(err))
			}
			return err
		}
		resp := &pb.LeaseKeepAliveResponse{ID: req.ID}
		fillHeader(s.b, &resp.Header)
		ttl, err := s.b.LeaseRenew(stream.Context(), req.ID)
		if err != nil {
			gerr := toGRPCError(err)
			if gerr != ErrGRPCLeaseNotFound {
				return gerr
			}
			ttl = 0
		}
		resp.TTL = ttl
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}
