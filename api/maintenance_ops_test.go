package api

import (
	"context"
	"net"
	"testing"
	"time"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// hashingBackend is the fake backend plus Hash and Downgrade.
type hashingBackend struct{ *fakeBackend }

func (hashingBackend) Hash(context.Context, *pb.HashRequest) (*pb.HashResponse, error) {
	return &pb.HashResponse{Header: &pb.ResponseHeader{Revision: 7}, Hash: 42}, nil
}

func (hashingBackend) Downgrade(_ context.Context, r *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	return &pb.DowngradeResponse{Version: "3.6"}, nil
}

func maintenanceClient(t *testing.T, b Backend) pb.MaintenanceClient {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := NewGRPCServer(b, GRPCConfig{}, nil)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	return pb.NewMaintenanceClient(dial(t, l.Addr().String()))
}

// Hash and Downgrade answer what the backend says, with the member's header; a backend
// without them makes them Unimplemented, never a made-up answer.
func TestHashAndDowngradeFromBackend(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mc := maintenanceClient(t, hashingBackend{newFakeBackend()})
	h, err := mc.Hash(ctx, &pb.HashRequest{})
	if err != nil || h.Hash != 42 || h.Header.Revision != 7 || h.Header.ClusterId == 0 {
		t.Fatalf("Hash = %v, %v", h, err)
	}
	d, err := mc.Downgrade(ctx, &pb.DowngradeRequest{Action: pb.DowngradeRequest_CANCEL})
	if err != nil || d.Version != "3.6" || d.Header.ClusterId == 0 {
		t.Fatalf("Downgrade = %v, %v", d, err)
	}

	mc = maintenanceClient(t, newFakeBackend())
	if _, err := mc.Hash(ctx, &pb.HashRequest{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("Hash without backend support: %v", err)
	}
	if _, err := mc.Downgrade(ctx, &pb.DowngradeRequest{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("Downgrade without backend support: %v", err)
	}
}
