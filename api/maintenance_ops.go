package api

import (
	"context"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// dbHasher is implemented by a Backend that serves Maintenance.Hash; without it the RPC
// answers Unimplemented.
type dbHasher interface {
	Hash(ctx context.Context, r *pb.HashRequest) (*pb.HashResponse, error)
}

// Hash is etcd's hash of the member's whole db (not HashKV's key history only).
func (s *maintenanceServer) Hash(ctx context.Context, r *pb.HashRequest) (*pb.HashResponse, error) {
	h, ok := s.b.(dbHasher)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "method Hash not implemented")
	}
	resp, err := h.Hash(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.b, &resp.Header)
	return resp, nil
}

// downgrader is implemented by a Backend that serves Maintenance.Downgrade.
type downgrader interface {
	Downgrade(ctx context.Context, r *pb.DowngradeRequest) (*pb.DowngradeResponse, error)
}

// Downgrade validates, enables or cancels a cluster downgrade (etcdctl downgrade).
func (s *maintenanceServer) Downgrade(ctx context.Context, r *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	d, ok := s.b.(downgrader)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "method Downgrade not implemented")
	}
	resp, err := d.Downgrade(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.b, &resp.Header)
	return resp, nil
}
