package api

import (
	"context"
	"errors"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/mvccpb"
	"github.com/cairn-kv/cairn/proto/v3electionpb"
)

// electionServer is etcd's v3election service: concurrency.Election on the Backend (see
// lock.go for the key layout and how errors are sent).
type electionServer struct {
	v3electionpb.UnimplementedElectionServer
	c concurrency
}

// Campaign is Election.Campaign: join the election with a key under name + "/" and wait
// until every earlier candidate's key is gone.
func (s *electionServer) Campaign(ctx context.Context, r *v3electionpb.CampaignRequest) (*v3electionpb.CampaignResponse, error) {
	resp, err := s.c.campaign(ctx, r)
	if err != nil {
		return nil, concurrencyError(err)
	}
	resp.Header = s.c.header(resp.Header)
	return resp, nil
}

func (c concurrency) campaign(ctx context.Context, r *v3electionpb.CampaignRequest) (*v3electionpb.CampaignResponse, error) {
	lease, err := c.sessionLease(ctx, r.GetLease())
	if err != nil {
		return nil, err
	}
	pfx := append(append([]byte{}, r.GetName()...), '/')
	key := sessionKey(r.GetName(), lease)
	resp, err := c.txn(ctx, &pb.TxnRequest{
		Compare: []*pb.Compare{cmpCreateRev(key, 0)},
		Success: []*pb.RequestOp{opPut(key, r.GetValue(), lease)},
		Failure: []*pb.RequestOp{opRange(&pb.RangeRequest{Key: key})},
	})
	if err != nil {
		return nil, err
	}
	rev := resp.GetHeader().GetRevision()
	if !resp.GetSucceeded() {
		kv := resp.Responses[0].GetResponseRange().Kvs[0]
		rev = kv.GetCreateRevision()
		if string(kv.GetValue()) != string(r.GetValue()) {
			if _, err := c.proclaim(ctx, key, rev, lease, r.GetValue()); err != nil {
				_, _ = c.resign(ctx, key, rev)
				return nil, err
			}
		}
	}
	if err := c.waitDeletes(ctx, pfx, rev-1); err != nil {
		// Clean up when the caller gave up; on any other failure the key stays.
		if ctx.Err() != nil {
			_, _ = c.resign(context.WithoutCancel(ctx), key, rev)
		}
		return nil, err
	}
	return &v3electionpb.CampaignResponse{
		Header: resp.GetHeader(),
		Leader: &v3electionpb.LeaderKey{Name: r.GetName(), Key: key, Rev: rev, Lease: lease},
	}, nil
}

// Proclaim is Election.Proclaim on a resumed election: put the value if the leader key
// still has the leader's create revision.
func (s *electionServer) Proclaim(ctx context.Context, r *v3electionpb.ProclaimRequest) (*v3electionpb.ProclaimResponse, error) {
	l := r.GetLeader()
	if l == nil {
		return nil, concurrencyError(errMissingLeaderKey)
	}
	lease, err := s.c.sessionLease(ctx, l.GetLease())
	if err != nil {
		return nil, concurrencyError(err)
	}
	hdr, err := s.c.proclaim(ctx, l.GetKey(), l.GetRev(), lease, r.GetValue())
	if err != nil {
		return nil, concurrencyError(err)
	}
	return &v3electionpb.ProclaimResponse{Header: s.c.header(hdr)}, nil
}

func (c concurrency) proclaim(ctx context.Context, key []byte, rev, lease int64, val []byte) (*pb.ResponseHeader, error) {
	resp, err := c.txn(ctx, &pb.TxnRequest{
		Compare: []*pb.Compare{cmpCreateRev(key, rev)},
		Success: []*pb.RequestOp{opPut(key, val, lease)},
	})
	if err != nil {
		return nil, err
	}
	if !resp.GetSucceeded() {
		return nil, errElectionNotLeader
	}
	return resp.GetHeader(), nil
}

// Resign is Election.Resign on a resumed election: delete the leader key if it still has
// the leader's create revision. Not being the leader is no error.
func (s *electionServer) Resign(ctx context.Context, r *v3electionpb.ResignRequest) (*v3electionpb.ResignResponse, error) {
	l := r.GetLeader()
	if l == nil {
		return nil, concurrencyError(errMissingLeaderKey)
	}
	// etcd opens a session on the leader's lease first; lease 0 grants one.
	if _, err := s.c.sessionLease(ctx, l.GetLease()); err != nil {
		return nil, concurrencyError(err)
	}
	hdr, err := s.c.resign(ctx, l.GetKey(), l.GetRev())
	if err != nil {
		return nil, concurrencyError(err)
	}
	return &v3electionpb.ResignResponse{Header: s.c.header(hdr)}, nil
}

func (c concurrency) resign(ctx context.Context, key []byte, rev int64) (*pb.ResponseHeader, error) {
	resp, err := c.txn(ctx, &pb.TxnRequest{
		Compare: []*pb.Compare{cmpCreateRev(key, rev)},
		Success: []*pb.RequestOp{opDelete(key)},
	})
	if err != nil {
		return nil, err
	}
	return resp.GetHeader(), nil
}

// Leader is Election.Leader: the oldest key under name + "/".
func (s *electionServer) Leader(ctx context.Context, r *v3electionpb.LeaderRequest) (*v3electionpb.LeaderResponse, error) {
	pfx := append(append([]byte{}, r.GetName()...), '/')
	resp, err := s.c.b.Range(ctx, firstCreate(pfx))
	if err != nil {
		return nil, concurrencyError(err)
	}
	if len(resp.GetKvs()) == 0 {
		return nil, concurrencyError(errElectionNoLeader)
	}
	return &v3electionpb.LeaderResponse{Header: s.c.header(resp.GetHeader()), Kv: resp.Kvs[0]}, nil
}

// Observe is Election.Observe: send the leader's key-value, then every change to it,
// then the next leader's once that key is deleted, until the caller goes away. As in
// etcd, a failed read or watch ends the stream without an error.
func (s *electionServer) Observe(r *v3electionpb.LeaderRequest, stream v3electionpb.Election_ObserveServer) error {
	ctx := stream.Context()
	send := func(hdr *pb.ResponseHeader, kv *mvccpb.KeyValue) error {
		return stream.Send(&v3electionpb.LeaderResponse{Header: s.c.header(hdr), Kv: kv})
	}
	err := s.c.observe(ctx, r.GetName(), send)
	if ctx.Err() != nil {
		return concurrencyError(ctx.Err())
	}
	if errors.Is(err, errObserveEnded) {
		return nil
	}
	return err
}

// errObserveEnded stands for Election.observe closing its channel after a failed read or
// watch.
var errObserveEnded = errors.New("observe ended")

func (c concurrency) observe(ctx context.Context, name []byte, send func(*pb.ResponseHeader, *mvccpb.KeyValue) error) error {
	pfx := append(append([]byte{}, name...), '/')
	ws := newWatcher(c.b)
	defer ws.close()
	for {
		resp, err := c.b.Range(ctx, firstCreate(pfx))
		if err != nil {
			return errObserveEnded
		}
		var (
			kv  *mvccpb.KeyValue
			hdr *pb.ResponseHeader
		)
		if len(resp.GetKvs()) == 0 {
			// Wait for the first put under the prefix; a delete is ignored.
			id, _, err := ws.s.Watch(&pb.WatchCreateRequest{Key: pfx, RangeEnd: prefixEnd(pfx), StartRevision: resp.GetHeader().GetRevision()})
			if err != nil {
				return errObserveEnded
			}
			for kv == nil {
				wr, err := ws.next(ctx, id)
				if err != nil {
					_ = ws.s.Cancel(id)
					return errObserveEnded
				}
				for _, ev := range wr.GetEvents() {
					if ev.GetType() == mvccpb.Event_PUT {
						hdr = copyHeader(wr.GetHeader())
						kv = ev.GetKv()
						hdr.Revision = kv.GetModRevision()
						break
					}
				}
			}
			_ = ws.s.Cancel(id)
		} else {
			hdr, kv = resp.GetHeader(), resp.Kvs[0]
		}
		if err := send(hdr, kv); err != nil {
			return err
		}

		// Follow the leader key until it is deleted.
		id, _, err := ws.s.Watch(&pb.WatchCreateRequest{Key: kv.GetKey(), StartRevision: hdr.GetRevision() + 1})
		if err != nil {
			return errObserveEnded
		}
		for deleted := false; !deleted; {
			wr, err := ws.next(ctx, id)
			if err != nil {
				_ = ws.s.Cancel(id)
				return errObserveEnded
			}
			for _, ev := range wr.GetEvents() {
				if ev.GetType() == mvccpb.Event_DELETE {
					deleted = true
					break
				}
				if err := send(copyHeader(wr.GetHeader()), ev.GetKv()); err != nil {
					_ = ws.s.Cancel(id)
					return err
				}
			}
		}
		_ = ws.s.Cancel(id)
	}
}

func copyHeader(h *pb.ResponseHeader) *pb.ResponseHeader {
	if h == nil {
		return &pb.ResponseHeader{}
	}
	return &pb.ResponseHeader{ClusterId: h.GetClusterId(), MemberId: h.GetMemberId(), Revision: h.GetRevision(), RaftTerm: h.GetRaftTerm()}
}
