package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/cairn-kv/cairn/mvcc"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/raftnode"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// healthInterval is how long every peer must have been reachable before a voter may
// be added (etcd's HealthInterval).
const healthInterval = 5 * time.Second

// learnerReadyPercent is how close to the leader's log a learner must be before it may
// be promoted (etcd's readyPercentThreshold).
const learnerReadyPercent = 0.9

// IsLearner says whether this member is a raft learner.
func (s *Server) IsLearner() bool {
	return s.members.isLearner(s.id)
}

// MemberAdd adds a voting member or a learner through raft. Like etcd with
// --strict-reconfig-check (the default), a voter is only added while the started
// members keep a quorum of the grown cluster, or to a single started member.
func (s *Server) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	voters, started, learners := s.members.counts(0)
	if r.IsLearner {
		if learners >= s.members.maxLearners {
			return nil, ErrTooManyLearners
		}
	} else if started < (voters+1)/2+1 && !(voters == 1 && started == 1) {
		// etcd lets a started single member add a second voter (how a one-node
		// cluster grows), though the two then need the new one to start for a quorum.
		return nil, ErrNotEnoughStartedMembers
	}
	// etcd refuses a new member unless every voter has been reachable for a while: a
	// cluster with a member down could lose its quorum to the new, empty member.
	if s.votersConnectedSince(time.Now().Add(-healthInterval)) < voters {
		return nil, ErrUnhealthy
	}
	if s.members.peerURLTaken(r.PeerURLs, 0) {
		return nil, ErrPeerURLExists
	}
	// etcd derives a new member's id from its peer URLs, the cluster token and the time.
	m := &member{
		ID:        memberID(r.PeerURLs, s.cfg.InitialClusterToken+strconv.FormatInt(time.Now().UnixNano(), 10)),
		PeerURLs:  append([]string(nil), r.PeerURLs...),
		IsLearner: r.IsLearner,
	}
	typ := raftpb.ConfChangeAddNode
	if r.IsLearner {
		typ = raftpb.ConfChangeAddLearnerNode
	}
	members, err := s.proposeConfChange(ctx, typ, m.ID, m)
	if err != nil {
		return nil, err
	}
	return &pb.MemberAddResponse{
		Header:  s.clusterHeader(),
		Member:  &pb.Member{ID: m.ID, PeerURLs: m.PeerURLs, IsLearner: m.IsLearner},
		Members: members,
	}, nil
}

// MemberRemove removes a member through raft; the removed member stops itself once it
// applies its removal. A voter is only removed while the other started members keep a
// quorum of the shrunk cluster.
func (s *Server) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	cur := s.members.get(r.ID)
	if cur == nil {
		if s.members.isRemoved(r.ID) {
			return nil, ErrIDRemoved
		}
		return nil, ErrIDNotFound
	}
	if !cur.IsLearner {
		voters, started, _ := s.members.counts(r.ID)
		if started < (voters-1)/2+1 {
			return nil, ErrNotEnoughStartedMembers
		}
		// The members left must keep a quorum of those reachable (etcd's check, which
		// counts the removed one as gone whatever its state).
		if s.votersConnectedSince(time.Now().Add(-healthInterval))-1 < 1+(voters-1)/2 {
			return nil, ErrUnhealthy
		}
	}
	members, err := s.proposeConfChange(ctx, raftpb.ConfChangeRemoveNode, r.ID, nil)
	if err != nil {
		return nil, err
	}
	return &pb.MemberRemoveResponse{Header: s.clusterHeader(), Members: members}, nil
}

// votersConnectedSince counts the voters, this member included, that messages have
// reached without a break since t.
func (s *Server) votersConnectedSince(t time.Time) int {
	n := 0
	for _, m := range s.members.all() {
		if m.IsLearner {
			continue
		}
		if m.ID == s.id {
			n++
			continue
		}
		if since := s.peers.ActiveSince(m.ID); !since.IsZero() && !since.After(t) {
			n++
		}
	}
	return n
}

// MemberUpdate changes a member's peer URLs through raft.
func (s *Server) MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	cur := s.members.get(r.ID)
	if cur == nil {
		return nil, ErrIDNotFound
	}
	if s.members.peerURLTaken(r.PeerURLs, r.ID) {
		return nil, ErrPeerURLExists
	}
	m := &member{ID: r.ID, PeerURLs: append([]string(nil), r.PeerURLs...)}
	members, err := s.proposeConfChange(ctx, raftpb.ConfChangeUpdateNode, r.ID, m)
	if err != nil {
		return nil, err
	}
	return &pb.MemberUpdateResponse{Header: s.clusterHeader(), Members: members}, nil
}

// MemberPromote makes a learner a voter once it has caught up with the leader's log.
// Only the leader can tell how far the learner is: a follower forwards the request.
func (s *Server) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	if s.node.Leader() != s.id {
		return s.forwardMemberPromote(ctx, r)
	}
	return s.memberPromoteLocal(ctx, r)
}

// memberPromoteLocal is MemberPromote on the leader.
func (s *Server) memberPromoteLocal(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	cur := s.members.get(r.ID)
	if cur == nil {
		return nil, ErrIDNotFound
	}
	if !cur.IsLearner {
		return nil, ErrMemberNotLearner
	}
	if err := s.learnerReady(r.ID); err != nil {
		return nil, err
	}
	if voters, started, _ := s.members.counts(0); started < (voters+1)/2+1 {
		return nil, ErrNotEnoughStartedMembers
	}
	members, err := s.proposeConfChange(ctx, raftpb.ConfChangeAddNode, r.ID, cur)
	if err != nil {
		return nil, err
	}
	return &pb.MemberPromoteResponse{Header: s.clusterHeader(), Members: members}, nil
}

func (s *Server) learnerReady(id uint64) error {
	st := s.node.Status()
	if st.RaftState != raft.StateLeader {
		return ErrNotLeader
	}
	lp, ok := st.Progress[s.id]
	pr, ok2 := st.Progress[id]
	if !ok || !ok2 || pr.State == tracker.StateSnapshot {
		return ErrLearnerNotReady
	}
	if float64(pr.Match) < float64(lp.Match)*learnerReadyPercent {
		return ErrLearnerNotReady
	}
	return nil
}

// MoveLeader hands leadership to another voter; only the leader can.
func (s *Server) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	lead := s.node.Leader()
	if lead != s.id {
		return nil, ErrNotLeader
	}
	target := s.members.get(r.TargetID)
	if target == nil || target.IsLearner {
		return nil, ErrBadLeaderTransferee
	}
	if r.TargetID == s.id {
		return &pb.MoveLeaderResponse{Header: s.Header()}, nil
	}
	// etcd bounds the transfer by its request timeout.
	cctx, cancel := context.WithTimeout(ctx, s.requestTimeout())
	defer cancel()
	s.node.TransferLeadership(cctx, lead, r.TargetID)
	t := time.NewTicker(s.cfg.HeartbeatInterval)
	defer t.Stop()
	for s.node.Leader() != r.TargetID {
		select {
		case <-t.C:
		case <-cctx.Done():
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, ErrTimeoutLeaderTransfer
		case <-s.stopping:
			return nil, ErrStopped
		}
	}
	s.lg.Info("leadership transferred", zap.String("from", fmt.Sprintf("%x", lead)), zap.String("to", fmt.Sprintf("%x", r.TargetID)))
	return &pb.MoveLeaderResponse{Header: s.Header()}, nil
}

// clusterHeader is the header of the Cluster service's answers: no revision, as etcd.
func (s *Server) clusterHeader() *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: s.clusterID, MemberId: s.id, RaftTerm: s.node.Term()}
}

// proposeConfChange puts a membership change through raft and returns the member list
// once it is applied, or the error its validation at apply time gave.
func (s *Server) proposeConfChange(ctx context.Context, typ raftpb.ConfChangeType, id uint64, m *member) ([]*pb.Member, error) {
	cc := &raftpb.ConfChange{Type: typ.Enum(), NodeId: proto.Uint64(id), Id: proto.Uint64(s.ids.next())}
	if m != nil {
		b, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		cc.Context = b
	}
	res, err := s.proposeAndWait(ctx, cc.GetId(), func(ctx context.Context, exp *expiry) error {
		cctx, cancel := exp.bounded(ctx)
		defer cancel()
		return s.node.ProposeConfChange(cctx, cc)
	})
	if err != nil {
		return nil, err
	}
	members, _ := res.resp.([]*pb.Member)
	return members, nil
}

// decodeConfChange decodes a conf change entry and the member it carries.
func decodeConfChange(e *raftpb.Entry) (*raftpb.ConfChange, member, error) {
	var cc raftpb.ConfChange
	var m member
	if err := proto.Unmarshal(e.Data, &cc); err != nil {
		return nil, m, fmt.Errorf("server: decode conf change at %d: %w", e.GetIndex(), err)
	}
	switch cc.GetType() {
	case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode, raftpb.ConfChangeUpdateNode:
		if err := json.Unmarshal(cc.Context, &m); err != nil {
			return nil, m, fmt.Errorf("server: decode member in conf change at %d: %w", e.GetIndex(), err)
		}
	}
	return &cc, m, nil
}

// replayConfChange handles a conf change the store already has.
func (s *Server) replayConfChange(cc *raftpb.ConfChange, m member) {
	if s.replayMembership {
		s.applyConfChange(nil, cc, m)
		return
	}
	// The store has this change and its membership was loaded from it: only raft and
	// the transport need it again.
	s.node.ApplyConfChange(cc)
	switch cc.GetType() {
	case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode, raftpb.ConfChangeUpdateNode:
		s.peers.AddPeer(cc.GetNodeId(), m.PeerURLs)
	case raftpb.ConfChangeRemoveNode:
		s.peers.RemovePeer(cc.GetNodeId())
	}
}

// applyConfChange runs in the apply loop, inside the entry's store txn tx (nil when the
// store already has the entry). The change is validated against the membership as of
// its place in the log (also when replayed after a restart, from the membership the
// snapshot carried), so all members agree on it; an invalid one is given to raft with
// no node, which raft ignores, and its proposer gets the error.
func (s *Server) applyConfChange(tx *mvcc.WriteTxn, cc *raftpb.ConfChange, m member) {
	replayed := tx == nil
	id := cc.GetNodeId()
	if err := s.members.validate(cc.GetType(), id, &m); err != nil {
		ignored := proto.Clone(cc).(*raftpb.ConfChange)
		ignored.NodeId = proto.Uint64(0)
		s.node.ApplyConfChange(ignored)
		s.proposals.trigger(cc.GetId(), applyResult{err: err})
		return
	}
	s.node.ApplyConfChange(cc)
	var removedSelf bool
	switch cc.GetType() {
	case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
		if cur := s.members.get(id); cur != nil { // a learner's promotion
			m = *cur
		}
		m.IsLearner = cc.GetType() == raftpb.ConfChangeAddLearnerNode
		if id == s.id && len(m.ClientURLs) == 0 {
			m.ClientURLs = urlStrings(s.cfg.AdvertiseClientURLs)
		}
		s.members.add(&m)
		s.peers.AddPeer(id, m.PeerURLs)
		if !replayed {
			raw, _ := json.Marshal(&m)
			tx.PutMember(id, raw)
		}
	case raftpb.ConfChangeRemoveNode:
		s.members.markRemoved(id)
		s.peers.RemovePeer(id)
		if !replayed {
			tx.DeleteMember(id)
		}
		removedSelf = id == s.id
	case raftpb.ConfChangeUpdateNode:
		s.members.setPeerURLs(id, m.PeerURLs)
		s.peers.AddPeer(id, m.PeerURLs)
		if !replayed {
			cur := s.members.get(id)
			raw, _ := json.Marshal(cur)
			tx.PutMember(id, raw)
		}
	}
	s.proposals.trigger(cc.GetId(), applyResult{resp: s.members.list()})
	if removedSelf {
		// Let the proposer's answer and the store's commit go out before stopping.
		go func() {
			select {
			case <-time.After(10 * s.cfg.HeartbeatInterval):
			case <-s.stopping:
			}
			s.stopRemoved()
		}()
	}
}

// stopRemoved stops the member for good once it knows it was removed from the cluster,
// by applying its removal or because a peer refused it as removed.
func (s *Server) stopRemoved() {
	s.lg.Warn("the member has been permanently removed from the cluster; stopping",
		zap.String("local-member-id", fmt.Sprintf("%x", s.id)))
	err := ErrMemberRemoved
	s.stopErr.Store(&err)
	s.Stop()
}

// forceNewCluster rewrites the persisted log of a restarting member so that applying it
// removes every other member (--force-new-cluster); the removals are applied like any
// conf change, through the apply loop and the store.
func (s *Server) forceNewCluster(p *raftnode.Persisted) error {
	self := s.members.get(s.id)
	if self == nil {
		self = &member{ID: s.id, Name: s.cfg.Name, PeerURLs: urlStrings(s.cfg.AdvertisePeerURLs), ClientURLs: urlStrings(s.cfg.AdvertiseClientURLs)}
	}
	self.IsLearner = false
	ctx, err := json.Marshal(self)
	if err != nil {
		return fmt.Errorf("server: force new cluster: encode member: %w", err)
	}
	removed, err := p.ForceNewCluster(s.lg, s.id, ctx)
	if err != nil {
		return err
	}
	for _, id := range removed {
		s.lg.Warn("force new cluster: removing member", zap.String("removed-member-id", fmt.Sprintf("%x", id)))
	}
	return nil
}
