package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cairn-kv/cairn/auth"
	"github.com/cairn-kv/cairn/lease"
	"github.com/cairn-kv/cairn/mvcc"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/mvccpb"
	"go.etcd.io/raft/v3"
	"go.uber.org/zap"
)

// leaseExpiryTick is how often the leader looks for expired leases and checks whether
// it gained or lost leadership.
const leaseExpiryTick = 100 * time.Millisecond

// maxLeaseRevokesPerTick bounds the revokes one tick proposes, so a mass expiry does not
// flood raft.
const maxLeaseRevokesPerTick = 500

// maxLeaseCheckpointBatch is the most checkpoints one raft entry, and one tick, carries
// (etcd's batch size).
const maxLeaseCheckpointBatch = 1000

// minLeaseTTL is etcd's floor on a lease's TTL: one and a half election timeouts, in
// whole seconds rounded up, so a lease cannot expire during a leader election.
func minLeaseTTL(cfg Config) int64 {
	ticks := int64(cfg.ElectionTimeout / cfg.HeartbeatInterval)
	min := time.Duration(3*ticks/2) * cfg.HeartbeatInterval
	return int64(math.Ceil(min.Seconds()))
}

// restoreLeases rebuilds the lessor from the lease bucket and re-attaches every key that
// names a lease: those the store's index rebuild (at Open or Restore, just before)
// found, else, if the store was written since, those a scan finds. The scan visits the
// keys one at a time (mvcc.ReadTxn.ForEach), so it needs memory for one value, not for
// every value in the db; with no lease at all there is nothing to attach and it is
// skipped.
func (s *Server) restoreLeases() error {
	recs, err := s.store.Leases()
	if err != nil {
		return fmt.Errorf("server: load leases: %w", err)
	}
	ls := make([]lease.Lease, len(recs))
	for i, r := range recs {
		ls[i] = lease.Lease{ID: lease.LeaseID(r.ID), TTL: r.TTL, RemainingTTL: r.RemainingTTL}
	}
	s.lessor.Restore(ls)
	kl, rebuilt := s.store.TakeKeyLeases()
	if len(ls) == 0 {
		return nil
	}
	if rebuilt {
		// What the store's index rebuild found, without reading the db again.
		for key, id := range kl {
			if err := s.lessor.Attach(lease.LeaseID(id), key); err != nil {
				s.lg.Warn("key names a lease that does not exist", zap.String("key", key), zap.Int64("lease", id))
			}
		}
		return nil
	}
	rt := s.store.Read()
	defer rt.End()
	err = rt.ForEach([]byte{0}, []byte{0}, func(kv *mvccpb.KeyValue) error {
		if kv.Lease == 0 {
			return nil
		}
		if err := s.lessor.Attach(lease.LeaseID(kv.Lease), string(kv.Key)); err != nil {
			s.lg.Warn("key names a lease that does not exist", zap.String("key", string(kv.Key)), zap.Int64("lease", kv.Lease))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("server: scan keys for leases: %w", err)
	}
	return nil
}

// leaseExists says whether a lease id is granted.
func (s *Server) leaseExists(id int64) bool { return s.lessor.Lookup(lease.LeaseID(id)) != nil }

// LeaseGrant creates a lease through raft, picking an id when the request has none.
func (s *Server) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if r.TTL > lease.MaxLeaseTTL {
		return nil, lease.ErrLeaseTTLTooLarge
	}
	for r.ID == 0 {
		r.ID = int64(s.ids.next() & math.MaxInt64)
	}
	if err := s.RequireAuthInfo(ctx); err != nil {
		return nil, err
	}
	return proposeFor[*pb.LeaseGrantResponse](ctx, s, &pb.InternalRaftRequest{LeaseGrant: r})
}

// LeaseRevoke deletes a lease and its keys through raft.
func (s *Server) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	if err := s.RequireAuthInfo(ctx); err != nil {
		return nil, err
	}
	return proposeFor[*pb.LeaseRevokeResponse](ctx, s, &pb.InternalRaftRequest{LeaseRevoke: r})
}

// LeaseRenew is one keep-alive. Only the leader's lessor tracks expiry: a follower
// forwards the renewal to the leader (lease_forward.go); until a leader is known and
// answers (or, on a new leader, until its lessor is promoted) the renewal waits, as
// etcd's does. A member that believes it leads renews only once a quorum confirmed it
// still does (renewAsLeader); when that confirmation does not come within the request
// timeout the keep-alive fails with lease.ErrNotPrimary, etcd's answer (its gRPC status
// is codes.Unknown "not a primary lessor"), rather than renewing a lease that a new
// leader may be expiring.
func (s *Server) LeaseRenew(ctx context.Context, id int64) (int64, error) {
	if err := s.checkLeaseRenew(ctx, id); err != nil {
		return 0, err
	}
	cctx, cancel := context.WithTimeout(ctx, s.requestTimeout())
	defer cancel()
	for {
		switch leader := s.node.Leader(); {
		case leader != 0 && leader != s.id:
			ttl, err := s.forwardLeaseRenew(cctx, leader, id)
			if !errors.Is(err, errForwardRetry) {
				return ttl, err
			}
		case leader == s.id && s.lessor.IsPrimary():
			ttl, err := s.renewAsLeader(cctx, lease.LeaseID(id))
			switch {
			case err == nil, errors.Is(err, lease.ErrLeaseNotFound):
				return ttl, err
			case errors.Is(err, errRenewRetry), errors.Is(err, lease.ErrNotPrimary):
				// Leadership moved or the lessor was demoted meanwhile: ask whoever leads now.
			case ctx.Err() != nil:
				return -1, ctx.Err()
			case errors.Is(err, ErrStopped):
				return -1, ErrStopped
			default:
				s.lg.Warn("lease keep-alive refused: this member could not confirm it still leads",
					zap.Int64("lease", id), zap.Error(err))
				return -1, lease.ErrNotPrimary
			}
		}
		select {
		case <-time.After(leaseExpiryTick):
		case <-cctx.Done():
			return 0, s.proposeError(ctx, cctx, cctx.Err())
		case <-s.stopping:
			return 0, ErrStopped
		}
	}
}

// errRenewRetry: the leadership confirmation of a renewal came back, but this member no
// longer leads in the term it led in, or the confirming round began too long ago; the
// renewal is retried (with whoever leads then), never made.
var errRenewRetry = fmt.Errorf("server: leadership changed or not confirmed recently enough to renew a lease: %w", ErrLeaderChanged)

// renewAsLeader renews lease id on this member, which believes it leads, only after a
// ReadIndex round confirmed it leads in the term it leads in now (the rounds linearizable
// reads share, read.go), and answers success only if that round began at most an
// election timeout before the renewal. A round that began within half an election
// timeout serves every renewal meanwhile; an older one, a round that confirmed no
// leadership, and a lease not found after a reused round (a grant committed but not yet
// applied here) make the renewal wait for a round of its own. Without the confirmation
// a leader whose Ready loop or disk stalled would keep renewing while the rest of the
// cluster elected a new leader that expires the lease: two holders of one lock.
//
// Why an election timeout is safe, whenever the round began: a new leader needs a vote
// from a member of the quorum that answered the round, given after that member
// acknowledged this leader's term after the round began (a member that voted in a later
// term answers no older one). So any new leader is elected after the round began, and
// its lessor gives every lease a full TTL (or its checkpoint) plus an election timeout
// from then: a renewal within an election timeout of the round's start, which lasts a
// TTL, ends before any new leader may revoke the lease. etcd skips its own confirmation
// while the member's raft ticks, which a member cut off from the others still does.
func (s *Server) renewAsLeader(ctx context.Context, id lease.LeaseID) (int64, error) {
	term := s.node.Term()
	for fresh := false; ; fresh = true {
		led, reused := leadership{}, false
		if !fresh {
			led, reused = s.reads.recent(term, s.cfg.ElectionTimeout/2)
		}
		if !reused {
			var err error
			if led, err = s.reads.confirm(ctx); err != nil {
				return -1, err
			}
			if led.term != term {
				return -1, errRenewRetry
			}
		}
		if err := s.clearLeaseCheckpoint(ctx, id); err != nil {
			return -1, err
		}
		// After a round of its own, also as raft sees it now (leadsInTerm): a renewal
		// waited anyway, and a reused round's renewals are bounded by its age.
		var leads bool
		if reused {
			leads = s.leadsAsSeen(term)
		} else {
			leads = s.leadsInTerm(term)
		}
		if !leads {
			return -1, errRenewRetry
		}
		ttl, err := s.lessor.Renew(id)
		if reused && errors.Is(err, lease.ErrLeaseNotFound) {
			continue
		}
		// Checked after the renewal, whose expiry counts from a moment before now: a
		// member paused (or starved) anywhere in between must not answer success. The
		// lessor's longer expiry is harmless (it outlives no promise made to a client),
		// and the retry renews again once confirmed afresh.
		if err == nil && time.Since(led.started) > s.cfg.ElectionTimeout {
			return -1, errRenewRetry
		}
		return ttl, err
	}
}

// clearLeaseCheckpoint, on the leader, commits a checkpoint of 0 ("no remaining TTL")
// for a lease that has a checkpointed remaining TTL, before it is renewed, as etcd's
// Renew does: otherwise a restart or a new leader would resume the renewed lease from
// the stale remaining TTL. Leases without one (the common case) cost nothing.
func (s *Server) clearLeaseCheckpoint(ctx context.Context, id lease.LeaseID) error {
	if !s.lessor.IsPrimary() {
		return nil
	}
	l := s.lessor.Lookup(id)
	if l == nil || l.RemainingTTL == 0 || l.Remaining(time.Now()) == 0 {
		return nil // Renew answers for a missing or expired lease
	}
	_, err := s.propose(ctx, &pb.InternalRaftRequest{LeaseCheckpoint: &pb.LeaseCheckpointRequest{
		Checkpoints: []*pb.LeaseCheckpoint{{ID: int64(id), Remaining_TTL: 0}},
	}})
	return err
}

// LeaseTimeToLive reports a lease's remaining and granted TTL, and its keys if asked.
// Only the leader's lessor knows the remaining TTL, so a follower asks the leader.
func (s *Server) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	if err := s.RequireAuthInfo(ctx); err != nil {
		return nil, err
	}
	var rev uint64
	if r.Keys { // etcd checks the keys' read permission only when they are asked for
		var err error
		if rev, err = s.checkLeaseKeysRead(ctx, r.ID); err != nil {
			return nil, err
		}
	}
	var resp *pb.LeaseTimeToLiveResponse
	var err error
	if s.node.Leader() != s.id {
		resp, err = s.forwardLeaseTimeToLive(ctx, r)
	} else {
		resp, err = s.leaseTimeToLiveLocal(ctx, r)
	}
	if err != nil {
		return nil, err
	}
	if r.Keys && s.auth.Enabled() && rev != s.auth.Revision() {
		return nil, auth.ErrAuthOldRevision
	}
	return resp, nil
}

// leaseTimeToLiveLocal answers LeaseTimeToLive from this member's lessor: the leader's
// answer.
func (s *Server) leaseTimeToLiveLocal(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	if err := s.linearizableRead(ctx); err != nil {
		return nil, err
	}
	l := s.lessor.Lookup(lease.LeaseID(r.ID))
	if l == nil {
		return nil, lease.ErrLeaseNotFound
	}
	resp := &pb.LeaseTimeToLiveResponse{
		Header:     s.Header(),
		ID:         r.ID,
		TTL:        int64(l.Remaining(time.Now()).Seconds()),
		GrantedTTL: l.TTL,
	}
	if r.Keys {
		for _, k := range l.Keys() {
			resp.Keys = append(resp.Keys, []byte(k))
		}
	}
	return resp, nil
}

// LeaseLeases lists every lease id.
func (s *Server) LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	if err := s.linearizableRead(ctx); err != nil {
		return nil, err
	}
	if err := s.checkLeaseLeases(ctx); err != nil {
		return nil, err
	}
	resp := &pb.LeaseLeasesResponse{Header: s.Header()}
	for _, l := range s.lessor.Leases() {
		resp.Leases = append(resp.Leases, &pb.LeaseStatus{ID: int64(l.ID)})
	}
	return resp, nil
}

// applyLeaseGrant runs in the apply loop.
func (s *Server) applyLeaseGrant(tx *mvcc.WriteTxn, r *pb.LeaseGrantRequest) applyResult {
	s.syncLessorLeadership()
	l, err := s.lessor.Grant(lease.LeaseID(r.ID), r.TTL)
	if err != nil {
		return applyResult{err: err}
	}
	tx.PutLease(mvcc.LeaseRecord{ID: int64(l.ID), TTL: l.TTL})
	return applyResult{resp: &pb.LeaseGrantResponse{Header: &pb.ResponseHeader{}, ID: int64(l.ID), TTL: l.TTL}}
}

// applyLeaseRevoke runs in the apply loop: the lease's keys go in one revision, with
// the lease record.
func (s *Server) applyLeaseRevoke(tx *mvcc.WriteTxn, r *pb.LeaseRevokeRequest, h *pb.RequestHeader) applyResult {
	if err := s.checkLeasePuts(headerAuthInfo(h), r.ID); err != nil {
		return applyResult{err: err}
	}
	keys, err := s.lessor.Revoke(lease.LeaseID(r.ID))
	if err != nil {
		return applyResult{err: err}
	}
	// The lessor dropped the lease with its key set: the deletes' detaches are moot.
	v := s.newWriteView(tx)
	for _, k := range keys {
		v.deleteRange([]byte(k), nil)
	}
	tx.DeleteLease(r.ID)
	return applyResult{resp: &pb.LeaseRevokeResponse{Header: &pb.ResponseHeader{Revision: v.rev()}}}
}

// applyLeaseCheckpoint runs in the apply loop: each named lease that still exists takes
// the checkpointed remaining TTL, in the lessor and in its record (one batch), so a
// restart resumes from it. Leases revoked since the checkpoint was proposed are skipped.
func (s *Server) applyLeaseCheckpoint(tx *mvcc.WriteTxn, r *pb.LeaseCheckpointRequest) applyResult {
	for _, cp := range r.Checkpoints {
		id := lease.LeaseID(cp.ID)
		if err := s.lessor.Checkpoint(id, cp.Remaining_TTL); err != nil {
			continue
		}
		if l := s.lessor.Lookup(id); l != nil {
			tx.PutLease(mvcc.LeaseRecord{ID: int64(l.ID), TTL: l.TTL, RemainingTTL: l.RemainingTTL})
		}
	}
	return applyResult{resp: &pb.LeaseCheckpointResponse{Header: &pb.ResponseHeader{}}}
}

// runLeaseExpiry makes this member's lessor primary while it leads, proposes the
// revocation of leases that expire and, every LeaseCheckpointInterval per lease, a
// checkpoint of its remaining TTL. Expiry is decided here, by the leader only, and
// takes effect through raft like any other write.
func (s *Server) runLeaseExpiry() {
	t := time.NewTicker(leaseExpiryTick)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.stopping:
			return
		}
		if !s.syncLessorLeadership() {
			continue
		}
		if ids := s.lessor.Expired(maxLeaseRevokesPerTick); len(ids) > 0 {
			go s.revokeExpired(ids)
		}
		if cps := s.lessor.CheckpointDue(s.cfg.LeaseCheckpointInterval, maxLeaseCheckpointBatch); len(cps) > 0 {
			go s.proposeCheckpoints(cps)
		}
	}
}

// proposeCheckpoints commits one batch of checkpoints. A failure is only logged: the
// leases are checkpointed again an interval later, and until then a new leader starts
// them from their previous checkpoint (or full TTL), as etcd's would.
func (s *Server) proposeCheckpoints(cps []lease.Checkpoint) {
	r := &pb.LeaseCheckpointRequest{Checkpoints: make([]*pb.LeaseCheckpoint, len(cps))}
	for i, cp := range cps {
		r.Checkpoints[i] = &pb.LeaseCheckpoint{ID: int64(cp.ID), Remaining_TTL: cp.Remaining}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.requestTimeout())
	defer cancel()
	// Like a revoke (revokeExpired): a stalled former leader's remaining TTLs are stale
	// (the new leader renewed meanwhile), and a leader elected later would start the
	// leases from them.
	term := s.node.Term()
	if _, err := s.reads.confirm(ctx); err != nil || !s.leadsInTerm(term) {
		return
	}
	if _, err := s.propose(ctx, &pb.InternalRaftRequest{LeaseCheckpoint: r}); err != nil && !errors.Is(err, ErrStopped) {
		s.lg.Warn("failed to checkpoint leases", zap.Int("leases", len(cps)), zap.Error(err))
	}
}

// syncLessorLeadership makes the lessor primary while this member leads and a follower
// otherwise, and reports whether it leads. Promotion waits until the log this member
// had at start is applied (a checkpoint or revoke still in it must reach the lessor
// first). A new leader cannot know how long the old one kept each lease alive since the
// last checkpoint, so it gives every lease its checkpointed remaining TTL (else its full
// TTL) plus the election timeout, as etcd does. Called by the expiry loop every tick and
// by the apply of a grant, so a lease granted just after start is not granted to a
// lessor that has not been promoted yet (that would add the election timeout to it).
func (s *Server) syncLessorLeadership() bool {
	leading := s.node.Leader() == s.id && s.isReady()
	s.lessor.SetPrimary(leading, s.cfg.ElectionTimeout)
	return leading
}

func (s *Server) isReady() bool {
	select {
	case <-s.readyc:
		return true
	default:
		return false
	}
}

// revokeExpired proposes the revocation of leases this member's lessor found expired,
// once a quorum confirmed (one ReadIndex round for the batch) that it still leads in the
// term it led in. Without that, a leader whose Ready loop stalled (it still believes it
// leads, while its lessor renewed nothing) would revoke, once it resumes, leases the new
// leader has been keeping alive: its proposals are forwarded to the new leader, which
// commits them (etcd issue 15247). Unconfirmed, nothing is proposed; the lessor returns
// the leases again after its retry interval if this member still leads then.
func (s *Server) revokeExpired(ids []lease.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), s.requestTimeout())
	defer cancel()
	term := s.node.Term()
	if _, err := s.reads.confirm(ctx); err != nil || !s.leadsInTerm(term) || !s.lessor.IsPrimary() {
		if !errors.Is(err, ErrStopped) {
			s.lg.Warn("not revoking expired leases: this member could not confirm it still leads",
				zap.Int("leases", len(ids)), zap.Uint64("term", term), zap.Error(err))
		}
		return
	}
	for _, id := range ids {
		go s.revokeOne(id)
	}
}

func (s *Server) revokeOne(id lease.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), s.requestTimeout())
	defer cancel()
	// As root, as etcd revokes expired leases: the lease's keys need no permission.
	_, err := proposeFor[*pb.LeaseRevokeResponse](ctx, s, &pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: int64(id)}, Header: rootHeader()})
	if err != nil && !errors.Is(err, lease.ErrLeaseNotFound) && !errors.Is(err, ErrStopped) {
		s.lg.Warn("failed to revoke expired lease", zap.Int64("lease", int64(id)), zap.Error(err))
	}
}

// leadsAsSeen says whether this member leads in term as the Ready loop last saw it.
func (s *Server) leadsAsSeen(term uint64) bool {
	return s.node.Leader() == s.id && s.node.Term() == term
}

// leadsInTerm says whether this member still leads in term: as the Ready loop last saw
// it, and as raft itself sees it now (raft steps peers' messages even while the Ready
// loop is stalled, so it learns of a new term first).
func (s *Server) leadsInTerm(term uint64) bool {
	if !s.leadsAsSeen(term) {
		return false
	}
	st := s.node.Status()
	return st.RaftState == raft.StateLeader && st.GetTerm() == term
}
