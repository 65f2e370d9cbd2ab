package server

import (
	"context"
	"errors"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// Range reads keys: linearizable unless the request asks for a serializable read.
func (s *Server) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if !r.Serializable {
		if err := s.linearizableRead(ctx); err != nil {
			return nil, err
		}
	}
	rt := s.store.Read()
	defer rt.End()
	resp, err := executeRange(readView{rt}, r)
	if err != nil {
		return nil, err
	}
	s.fillHeader(resp.Header)
	return resp, nil
}

// Put writes one key through raft.
func (s *Server) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	res, err := s.propose(ctx, &pb.InternalRaftRequest{Put: r})
	if err != nil {
		return nil, err
	}
	resp := res.resp.(*pb.PutResponse)
	s.fillHeader(resp.Header)
	return resp, nil
}

// DeleteRange deletes a key or range through raft.
func (s *Server) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	res, err := s.propose(ctx, &pb.InternalRaftRequest{DeleteRange: r})
	if err != nil {
		return nil, err
	}
	resp := res.resp.(*pb.DeleteRangeResponse)
	s.fillHeader(resp.Header)
	return resp, nil
}

// Txn runs a transaction: through raft if it may write, else as a read.
func (s *Server) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if isTxnReadOnly(r) {
		if !isTxnSerializable(r) {
			if err := s.linearizableRead(ctx); err != nil {
				return nil, err
			}
		}
		rt := s.store.Read()
		defer rt.End()
		resp, err := s.executeTxn(readView{rt}, r)
		if err != nil {
			return nil, err
		}
		s.fillHeader(resp.Header)
		return resp, nil
	}
	res, err := s.propose(ctx, &pb.InternalRaftRequest{Txn: r})
	if err != nil {
		return nil, err
	}
	resp := res.resp.(*pb.TxnResponse)
	s.fillHeader(resp.Header)
	return resp, nil
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

// propose puts r through raft and waits for the apply loop's result.
func (s *Server) propose(ctx context.Context, r *pb.InternalRaftRequest) (applyResult, error) {
	if s.node.CommittedIndex() > s.applied.Load()+maxGapBetweenApplyAndCommit {
		return applyResult{}, ErrTooManyRequests
	}
	r.Id = s.ids.next()
	data, err := proto.Marshal(r)
	if err != nil {
		return applyResult{}, err
	}
	if len(data) > int(s.cfg.MaxRequestBytes) {
		return applyResult{}, ErrRequestTooLarge
	}
	resc := s.proposals.register(r.Id)
	cctx, cancel := context.WithTimeout(ctx, s.requestTimeout())
	defer cancel()
	s.metrics.proposalsPending.Inc()
	defer s.metrics.proposalsPending.Dec()
	if err := s.node.Propose(cctx, data); err != nil {
		s.proposals.cancel(r.Id)
		s.metrics.proposalsFailed.Inc()
		return applyResult{}, s.proposeError(ctx, cctx, err)
	}
	select {
	case res := <-resc:
		if res.err != nil {
			return applyResult{}, res.err
		}
		return res, nil
	case <-cctx.Done():
		s.proposals.cancel(r.Id)
		s.metrics.proposalsFailed.Inc()
		return applyResult{}, s.proposeError(ctx, cctx, cctx.Err())
	case <-s.stopping:
		return applyResult{}, ErrStopped
	}
}

// proposeError turns a failed wait into etcd's error: the caller's own cancellation or
// deadline stays as it is; our request timeout becomes "no leader" or "request timed out".
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
