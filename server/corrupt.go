package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cairn-kv/cairn/mvcc"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/peerpb"
	"github.com/cairn-kv/cairn/raftnode"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Corruption checks compare HashKV between members, as etcd's do: at boot against every
// peer (--experimental-initial-corrupt-check, feature gate InitialCorruptCheck), and
// periodically on the leader at the latest compaction revision
// (--experimental-compact-hash-check-enabled, feature gate CompactHashCheck), raising
// the CORRUPT alarm for the members whose hash disagrees with a majority's.

// peerHashTimeout bounds asking one member for its hash.
const peerHashTimeout = 5 * time.Second

// peerHash is one other member's HashKV answer, or why there is none.
type peerHash struct {
	id   uint64
	urls []string
	resp *pb.HashKVResponse
	err  error
}

// peerHashes asks every member of ms but this one for its HashKV at rev, concurrently.
func (s *Server) peerHashes(ctx context.Context, ms []*member, rev int64) []peerHash {
	var out []peerHash
	for _, m := range ms {
		if m.ID != s.id {
			out = append(out, peerHash{id: m.ID, urls: m.PeerURLs})
		}
	}
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		go func(p *peerHash) {
			defer wg.Done()
			p.resp, p.err = s.peerHash(ctx, p.urls, rev)
		}(&out[i])
	}
	wg.Wait()
	return out
}

// peerHash asks the member at urls (trying each) for its HashKV at rev.
func (s *Server) peerHash(ctx context.Context, urls []string, rev int64) (*pb.HashKVResponse, error) {
	err := errors.New("no peer URL")
	for _, u := range urls {
		cc, derr := raftnode.DialPeer(u, s.cfg.PeerDialTLS, time.Second, time.Second)
		if derr != nil {
			err = derr
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, peerHashTimeout)
		var resp *pb.HashKVResponse
		resp, err = peerpb.NewHashCheckClient(cc).HashKV(cctx, &peerpb.PeerHashKVRequest{ClusterId: s.clusterID, From: s.id, Revision: rev})
		cancel()
		_ = cc.Close()
		if err == nil {
			return resp, nil
		}
	}
	return nil, err
}

// CheckInitialHashKV compares this member's hash at its current revision with every
// peer's at the same revision, before the member serves clients: a peer with the same
// compaction but another hash means the data differs, and the member must not start.
// Peers that cannot answer (down, behind, compacted past it) are skipped with a warning.
//
// Like etcd, it runs before the member serves peers too, so it takes the members the
// store has (the in-memory membership is still being rebuilt from the log).
func (s *Server) CheckInitialHashKV(ctx context.Context) error {
	lg := s.lg.With(zap.String("local-member-id", fmt.Sprintf("%x", s.id)))
	lg.Info("starting initial corruption check", zap.Duration("timeout", peerHashTimeout))
	h, rev, compactRev, err := s.store.HashByRev(0)
	if err != nil {
		return fmt.Errorf("%x failed to fetch hash (%w)", s.id, err)
	}
	ms, err := s.storedMembers()
	if err != nil {
		return err
	}
	mismatch := 0
	for _, p := range s.peerHashes(ctx, ms, rev) {
		fields := []zap.Field{zap.Int64("local-member-revision", rev), zap.Int64("local-member-compact-revision", compactRev),
			zap.Uint32("local-member-hash", h), zap.String("remote-peer-id", fmt.Sprintf("%x", p.id)), zap.Strings("remote-peer-endpoints", p.urls)}
		switch {
		case p.resp == nil:
			lg.Warn("cannot fetch hash from remote peer", append(fields, zap.Error(p.err))...)
		case p.resp.Hash == h:
		case p.resp.CompactRevision == compactRev:
			lg.Warn("found different hash values from remote peer", append(fields, zap.Uint32("remote-peer-hash", p.resp.Hash))...)
			mismatch++
		default:
			lg.Warn("found different compact revision values from remote peer",
				append(fields, zap.Int64("remote-peer-compact-revision", p.resp.CompactRevision))...)
		}
	}
	if mismatch > 0 {
		return fmt.Errorf("%x found data inconsistency with peers", s.id)
	}
	lg.Info("initial corruption checking passed; no corruption")
	return nil
}

// runCompactHashCheck checks the latest compaction's hash on every member each interval
// while this member leads.
func (s *Server) runCompactHashCheck(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var checked int64 // the compaction revision last checked on every member
	for {
		select {
		case <-t.C:
		case <-s.stopping:
			return
		}
		if s.node.Leader() != s.id {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*peerHashTimeout)
		if rev, done := s.compactHashCheck(ctx, checked); done {
			checked = rev
		}
		cancel()
	}
}

// compactHashCheck compares the hashes at the latest compaction revision (if not
// checked yet) and raises CORRUPT for the members outside the majority, or for the
// whole cluster (member 0) when there is none. done says no further check of rev is
// needed: every member answered, or alarms were raised.
func (s *Server) compactHashCheck(ctx context.Context, checked int64) (rev int64, done bool) {
	rev = s.store.CompactedRev()
	if rev <= 0 || rev == checked {
		return rev, false
	}
	h, _, compactRev, err := s.store.HashByRev(rev)
	if err != nil {
		return rev, false // compacted again meanwhile: the next round takes the new one
	}
	peers := s.peerHashes(ctx, s.members.all(), rev)
	byHash := map[uint32][]uint64{h: {s.id}}
	answered := 0
	for _, p := range peers {
		if p.resp == nil || p.resp.CompactRevision != compactRev {
			s.lg.Warn("skipped peer's hash", zap.String("peer-id", fmt.Sprintf("%x", p.id)), zap.Int64("compact-revision", rev), zap.Error(p.err))
			continue
		}
		answered++
		byHash[p.resp.Hash] = append(byHash[p.resp.Hash], p.id)
	}
	if len(byHash) == 1 {
		return rev, answered == len(peers)
	}
	quorum := (len(peers)+1)/2 + 1
	var corrupt []uint64
	majority := false
	for hash, ids := range byHash {
		if len(ids) >= quorum {
			majority = true
			delete(byHash, hash)
			break
		}
	}
	if majority {
		for _, ids := range byHash {
			corrupt = append(corrupt, ids...)
		}
	} else {
		corrupt = []uint64{0} // nobody can tell which members hold the right data
	}
	for _, id := range corrupt {
		s.lg.Error("detected compaction hash mismatch; raising the CORRUPT alarm",
			zap.String("member-id", fmt.Sprintf("%x", id)), zap.Int64("compact-revision", rev), zap.Uint32("leader-hash", h))
		if _, err := s.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: id, Alarm: pb.AlarmType_CORRUPT}); err != nil {
			s.lg.Warn("failed to raise the CORRUPT alarm", zap.Error(err))
			return rev, false
		}
	}
	return rev, true
}

// hashCheckService answers other members' HashKV requests (peerpb.HashCheck).
type hashCheckService struct {
	peerpb.UnimplementedHashCheckServer
	s *Server
}

func (h *hashCheckService) HashKV(ctx context.Context, r *peerpb.PeerHashKVRequest) (*pb.HashKVResponse, error) {
	s := h.s
	if err := s.refuseNonMember(ctx, "hash", r.GetClusterId(), r.GetFrom()); err != nil {
		return nil, err
	}
	resp, err := s.HashKV(ctx, &pb.HashKVRequest{Revision: r.GetRevision()})
	switch {
	case errors.Is(err, mvcc.ErrCompacted), errors.Is(err, mvcc.ErrFutureRev):
		return nil, status.Error(codes.OutOfRange, err.Error())
	case err != nil:
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return resp, nil
}
