package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"

	"github.com/cairn-kv/cairn/mvcc"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/peerpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RegisterPeerService serves the raft peer protocol, and the lease requests followers
// forward to the leader, on the member's peer-URL gRPC server (cmd/cairn listens on
// --listen-peer-urls).
func (s *Server) RegisterPeerService(gs *grpc.Server) {
	s.peers.Register(gs)
	peerpb.RegisterLeaseForwardServer(gs, &leaseForwardService{s: s})
	peerpb.RegisterMemberForwardServer(gs, &memberForwardService{s: s})
	peerpb.RegisterHashCheckServer(gs, &hashCheckService{s: s})
}

// PeerListener is the listener the peer gRPC server serves on l (a peer URL's, its TLS
// handshake done): the raft transport takes its direct streams, of at most maxBytes per
// envelope (raftnode.MaxPeerMessageBytes), out of it first.
func (s *Server) PeerListener(l net.Listener, maxBytes int) net.Listener {
	return s.peers.SplitListener(l, maxBytes)
}

// addPeers tells the transport where every other member is.
func (s *Server) addPeers(ms []*member) {
	for _, m := range ms {
		if m.ID != s.id {
			s.peers.AddPeer(m.ID, m.PeerURLs)
		}
	}
}

// publishAttributes announces this member's name and client URLs through raft once it
// serves, retrying until it is applied or the member stops.
func (s *Server) publishAttributes() {
	select {
	case <-s.readyc:
	case <-s.stopping:
		return
	}
	req := &pb.InternalRaftRequest{MemberAttributes: &pb.MemberAttributesRequest{
		MemberId: s.id, Name: s.cfg.Name, ClientUrls: urlStrings(s.cfg.AdvertiseClientURLs),
	}}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), s.requestTimeout())
		_, err := s.propose(ctx, req)
		cancel()
		if err == nil {
			return
		}
		s.lg.Warn("failed to publish member attributes; retrying", zap.Error(err))
		select {
		case <-time.After(500 * time.Millisecond):
		case <-s.stopping:
			return
		}
	}
}

// applyMemberAttributes runs in the apply loop.
func (s *Server) applyMemberAttributes(tx *mvcc.WriteTxn, r *pb.MemberAttributesRequest) applyResult {
	m := s.members.setAttributes(r.MemberId, r.Name, r.ClientUrls)
	if m == nil { // a removed member's late announcement
		return applyResult{resp: &pb.ResponseHeader{}}
	}
	raw, _ := json.Marshal(m)
	tx.PutMember(m.ID, raw)
	return applyResult{resp: &pb.ResponseHeader{}}
}

// refuseNonMember refuses a request to this member's peer services unless it comes from
// a current member of this cluster: another cluster's (FailedPrecondition), or one that
// is unknown, was removed or claims this member's own id (PermissionDenied: a member
// never sends itself a peer request), or a member whose certificate the connection does
// not carry (raftnode's CheckMemberCert). Anyone who can reach the peer port could
// otherwise renew leases or promote learners.
func (s *Server) refuseNonMember(ctx context.Context, what string, clusterID, from uint64) error {
	if clusterID != s.clusterID {
		s.lg.Warn("refused a peer request from another cluster",
			zap.String("request", what),
			zap.String("remote-peer-id", fmt.Sprintf("%x", from)),
			zap.String("remote-cluster-id", fmt.Sprintf("%x", clusterID)),
			zap.String("local-cluster-id", fmt.Sprintf("%x", s.clusterID)))
		return status.Errorf(codes.FailedPrecondition, "peer: cluster ID mismatch: request from cluster %x, this is %x", clusterID, s.clusterID)
	}
	m := s.members.get(from)
	if from == s.id || s.members.isRemoved(from) || m == nil {
		s.lg.Warn("refused a peer request from a member not in the cluster",
			zap.String("request", what), zap.String("remote-peer-id", fmt.Sprintf("%x", from)))
		return status.Errorf(codes.PermissionDenied, "peer: %x is not a member of this cluster", from)
	}
	return s.peers.CheckMemberCert(ctx, from, m.PeerURLs)
}
