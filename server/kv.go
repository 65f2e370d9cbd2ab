package server

import (
	"context"
	"errors"

	"github.com/cairn-kv/cairn/auth"
	"github.com/cairn-kv/cairn/mvcc"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// Range reads keys: linearizable unless the request asks for a serializable read.
func (s *Server) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	var resp *pb.RangeResponse
	err := s.readRange(ctx, r, func(rt *mvcc.ReadTxn) (err error) {
		resp, err = executeRange(readView{rt}, r)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.fillHeader(resp.Header)
	return resp, nil
}

// readRange runs read over one read view of the store for r, as Range and RangeStream
// read: after a linearizable read point unless r is serializable, and only if the
// caller may read r's range.
func (s *Server) readRange(ctx context.Context, r *pb.RangeRequest, read func(*mvcc.ReadTxn) error) error {
	if !r.Serializable {
		if err := s.linearizableRead(ctx); err != nil {
			return err
		}
	}
	return s.serialize(ctx, func(ai *auth.AuthInfo) error {
		return s.auth.IsRangePermitted(ai, r.Key, r.RangeEnd)
	}, func() error {
		rt := s.store.Read()
		defer rt.End()
		return read(rt)
	})
}

// Put writes one key through raft.
func (s *Server) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	return proposeFor[*pb.PutResponse](ctx, s, &pb.InternalRaftRequest{Put: r})
}

// DeleteRange deletes a key or range through raft.
func (s *Server) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	return proposeFor[*pb.DeleteRangeResponse](ctx, s, &pb.InternalRaftRequest{DeleteRange: r})
}

// Txn runs a transaction: through raft if it may write, else as a read.
func (s *Server) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if isTxnReadOnly(r) {
		if !isTxnSerializable(r) {
			if err := s.linearizableRead(ctx); err != nil {
				return nil, err
			}
		}
		var resp *pb.TxnResponse
		err := s.serialize(ctx, func(ai *auth.AuthInfo) error { return s.checkTxnAuth(ai, r) }, func() error {
			rt := s.store.Read()
			defer rt.End()
			var err error
			resp, err = s.executeTxn(readView{rt}, r)
			return err
		})
		if err != nil {
			return nil, err
		}
		s.fillHeader(resp.Header)
		return resp, nil
	}
	return proposeFor[*pb.TxnResponse](ctx, s, &pb.InternalRaftRequest{Txn: r})
}

// Compact discards history before a revision; with physical set it returns only once
// the old revisions are gone from disk.
func (s *Server) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	res, err := s.propose(ctx, &pb.InternalRaftRequest{Compaction: r})
	if err != nil {
		return nil, err
	}
	if r.Physical && res.compacted != nil {
		select {
		case <-res.compacted:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.stopping:
			return nil, ErrStopped
		}
	}
	resp := res.resp.(*pb.CompactionResponse)
	s.fillHeader(resp.Header)
	return resp, nil
}

// proposeFor proposes r and returns the apply loop's response, stamped with this
// member's header.
func proposeFor[T interface{ GetHeader() *pb.ResponseHeader }](ctx context.Context, s *Server, r *pb.InternalRaftRequest) (T, error) {
	res, err := s.propose(ctx, r)
	if err != nil {
		var zero T
		return zero, err
	}
	resp := res.resp.(T)
	s.fillHeader(resp.GetHeader())
	return resp, nil
}

// propose puts r through raft and waits for the apply loop's result.
func (s *Server) propose(ctx context.Context, r *pb.InternalRaftRequest) (applyResult, error) {
	if err := s.checkDiskSpace(r); err != nil {
		return applyResult{}, err
	}
	if err := s.checkQuota(ctx, r); err != nil {
		return applyResult{}, err
	}
	if s.node.CommittedIndex() > s.applied.Load()+maxGapBetweenApplyAndCommit {
		return applyResult{}, ErrTooManyRequests
	}
	// Who asks, for the checks at apply time (etcd: not for Authenticate, which has
	// none); a member's own request may come with its header set.
	if r.Header == nil && r.Authenticate == nil {
		h, err := s.requestHeader(ctx)
		if err != nil {
			return applyResult{}, err
		}
		r.Header = h
	}
	r.Id = s.ids.next()
	data, err := r.MarshalVT()
	if err != nil {
		return applyResult{}, err
	}
	if len(data) > int(s.cfg.MaxRequestBytes) {
		return applyResult{}, ErrRequestTooLarge
	}
	if isBatchable(r) {
		return s.proposeAndWait(ctx, r.Id, func(ctx context.Context, exp *expiry) error { return s.batcher.propose(ctx, exp, data) })
	}
	return s.proposeAndWait(ctx, r.Id, func(ctx context.Context, exp *expiry) error {
		cctx, cancel := exp.bounded(ctx)
		defer cancel()
		return s.node.Propose(cctx, data)
	})
}

// proposeAndWait hands a proposal to raft (propose, given the caller's context and the
// request's expiry) and waits, bounded by the request timeout (the expiry), for the apply
// loop to report the result of proposal id.
func (s *Server) proposeAndWait(ctx context.Context, id uint64, propose func(context.Context, *expiry) error) (applyResult, error) {
	resc := s.proposals.register(id)
	exp := s.expiry.get()
	s.metrics.proposalsPending.Inc()
	defer s.metrics.proposalsPending.Dec()
	if err := propose(ctx, exp); err != nil {
		s.proposals.cancel(id)
		s.metrics.proposalsFailed.Inc()
		return applyResult{}, s.proposeError(ctx, exp, err)
	}
	var err error
	select {
	case res := <-resc:
		if res.err != nil {
			return applyResult{}, res.err
		}
		return res, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-exp.Done():
		err = exp.Err()
	case <-s.stopping:
		return applyResult{}, ErrStopped
	}
	s.proposals.cancel(id)
	s.metrics.proposalsFailed.Inc()
	return applyResult{}, s.proposeError(ctx, exp, err)
}

// proposeError turns a failed wait into etcd's error: the caller's own cancellation or
// deadline stays as it is; our request timeout (cctx, or the request's expiry) becomes
// "no leader" or "request timed out".
func (s *Server) proposeError(ctx, cctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	select {
	case <-s.stopping:
		return ErrStopped
	default:
	}
	if cctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		if s.node.Leader() == 0 {
			return ErrNoLeader
		}
		return ErrTimeout
	}
	return err
}
