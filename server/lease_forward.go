package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cairn-kv/cairn/internal/errs"
	"github.com/cairn-kv/cairn/lease"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/peerpb"
	"github.com/cairn-kv/cairn/raftnode"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Only the leader's lessor knows when a lease expires (followers keep no expiry at
// all), so a follower cannot renew a lease or say how long it has left. It forwards
// both requests to the leader over the peer listener (peerpb.LeaseForward) and answers
// with what the leader said, as etcd does, so clients get the same answers whichever
// member they talk to.

const (
	// minLeaseForwardAttempt is the least time one forwarded request may take before the
	// follower gives up on it and tries again (it is never more than what is left of the
	// request's own deadline). Two election timeouts are used when longer: a leader that
	// stopped answering is replaced within that time.
	minLeaseForwardAttempt = time.Second

	// leaseForwardMaxBackoff caps reconnecting to a leader that went away.
	leaseForwardMaxBackoff = time.Second
)

// errForwardRetry marks a forwarding attempt that another attempt may get past:
// the member asked is not (or no longer) the leader, is unreachable or is stopping.
var errForwardRetry = errors.New("server: retry lease request with the current leader")

// leaseForwarder keeps one client connection per leader peer URL for forwarded lease
// requests. Keep-alives arrive every third of a lease's TTL from every client, so a
// connection per request would cost a dial each time.
type leaseForwarder struct {
	mu       sync.Mutex
	stopped  bool
	watching bool
	conns    map[string]*grpc.ClientConn // by dial target (host:port)
	// next is, per leader id, how many attempts failed: the leader's peer URL to try is
	// PeerURLs[next % len], so a member with several URLs is reached through another one
	// when the first does not answer.
	next map[uint64]int
}

func newLeaseForwarder() *leaseForwarder {
	return &leaseForwarder{conns: map[string]*grpc.ClientConn{}, next: map[uint64]int{}}
}

// conn returns the cached connection to peer URL u (dialling it on first use) and
// closes cached connections to URLs no member has any more. The first dial also
// arranges for every connection to be closed when the member stops.
func (f *leaseForwarder) conn(s *Server, u string, known []string) (*grpc.ClientConn, error) {
	target := raftnode.DialTarget(u)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return nil, ErrStopped
	}
	if cc, ok := f.conns[target]; ok {
		return cc, nil
	}
	for t, cc := range f.conns {
		if !slices.Contains(known, t) {
			_ = cc.Close() // a removed member or a changed URL: nothing will use it again
			delete(f.conns, t)
		}
	}
	cc, err := raftnode.DialPeer(u, s.cfg.PeerDialTLS, leaseForwardMaxBackoff, minLeaseForwardAttempt)
	if err != nil {
		return nil, fmt.Errorf("server: dial peer %s: %w", u, err)
	}
	f.conns[target] = cc
	if !f.watching {
		f.watching = true
		go f.closeOnStop(s)
	}
	return cc, nil
}

// closeOnStop closes every cached connection once the member stops; in-flight
// forwarded requests end with it (their callers see the member stopping).
func (f *leaseForwarder) closeOnStop(s *Server) {
	<-s.stopping
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = true
	for t, cc := range f.conns {
		_ = cc.Close()
		delete(f.conns, t)
	}
}

// pick returns the peer URL of leader to try now.
func (f *leaseForwarder) pick(leader uint64, urls []string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return urls[f.next[leader]%len(urls)]
}

// failed moves on to leader's next peer URL; successes keep the one that works.
func (f *leaseForwarder) failed(leader uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next[leader]++
}

// leaderClient returns a LeaseForward client for the leader's peer URL to try now.
func (s *Server) leaderClient(leader uint64) (peerpb.LeaseForwardClient, string, error) {
	cc, u, err := s.leaderConn(leader)
	if err != nil {
		return nil, u, err
	}
	return peerpb.NewLeaseForwardClient(cc), u, nil
}

// leaderConn returns the connection to the leader's peer URL to try now, and the URL.
func (s *Server) leaderConn(leader uint64) (*grpc.ClientConn, string, error) {
	var urls, known []string
	for _, m := range s.members.all() {
		if m.ID == leader {
			urls = m.PeerURLs
		}
		for _, u := range m.PeerURLs {
			known = append(known, raftnode.DialTarget(u))
		}
	}
	if len(urls) == 0 {
		// The leader's membership is not applied here yet: wait for it like for a leader.
		return nil, "", fmt.Errorf("leader %x has no known peer URL: %w", leader, errForwardRetry)
	}
	u := s.leaseFwd.pick(leader, urls)
	cc, err := s.leaseFwd.conn(s, u, known)
	return cc, u, err
}

// leaseForwardAttempt bounds one forwarded request.
func (s *Server) leaseForwardAttempt() time.Duration {
	return max(2*s.cfg.ElectionTimeout, minLeaseForwardAttempt)
}

// forwardLeaseRenew sends one keep-alive of lease id to leader. An error wrapping
// errForwardRetry means the caller should try again (with whoever leads then)
// until its deadline; lease.ErrLeaseNotFound means the leader has no such lease.
func (s *Server) forwardLeaseRenew(ctx context.Context, leader uint64, id int64) (int64, error) {
	cli, u, err := s.leaderClient(leader)
	if err != nil {
		return -1, fmt.Errorf("server: forward lease renew to %x: %w", leader, err)
	}
	actx, cancel := context.WithTimeout(ctx, s.leaseForwardAttempt())
	defer cancel()
	resp, err := cli.Renew(actx, &peerpb.LeaseRenewRequest{
		ClusterId: s.clusterID,
		From:      s.id,
		Request:   &pb.LeaseKeepAliveRequest{ID: id},
	})
	if err != nil {
		return -1, s.leaseForwardError("renew", leader, u, err)
	}
	return resp.GetResponse().GetTTL(), nil
}

// forwardLeaseTimeToLive asks the leader for a lease's time to live (see forwardToLeader).
func (s *Server) forwardLeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	return forwardToLeader(ctx, s,
		func(ctx context.Context) (*pb.LeaseTimeToLiveResponse, error) { return s.leaseTimeToLiveLocal(ctx, r) },
		func(ctx context.Context, leader uint64) (*pb.LeaseTimeToLiveResponse, error) {
			return s.forwardLeaseTimeToLiveOnce(ctx, leader, r)
		})
}

// forwardToLeader answers a request only the leader can: with once(leader), retrying
// with whoever leads while once's error wraps errForwardRetry, until the request's
// deadline (requestTimeout, as for any request waiting on raft); with local if this
// member becomes the leader meanwhile (under the caller's ctx: the local path has its
// own bound and errors).
func forwardToLeader[T any](ctx context.Context, s *Server, local func(context.Context) (T, error), once func(ctx context.Context, leader uint64) (T, error)) (T, error) {
	cctx, cancel := context.WithTimeout(ctx, s.requestTimeout())
	defer cancel()
	var zero T
	for {
		leader := s.node.Leader()
		if leader == s.id {
			return local(ctx)
		}
		if leader != 0 {
			resp, err := once(cctx, leader)
			if !errors.Is(err, errForwardRetry) {
				return resp, err
			}
		}
		select {
		case <-time.After(leaseExpiryTick):
		case <-cctx.Done():
			return zero, s.proposeError(ctx, cctx, cctx.Err())
		case <-s.stopping:
			return zero, ErrStopped
		}
	}
}

func (s *Server) forwardLeaseTimeToLiveOnce(ctx context.Context, leader uint64, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	cli, u, err := s.leaderClient(leader)
	if err != nil {
		return nil, fmt.Errorf("server: forward lease time-to-live to %x: %w", leader, err)
	}
	actx, cancel := context.WithTimeout(ctx, s.leaseForwardAttempt())
	defer cancel()
	resp, err := cli.TimeToLive(actx, &peerpb.LeaseTimeToLiveRequest{ClusterId: s.clusterID, From: s.id, Request: r})
	if err != nil {
		return nil, s.leaseForwardError("time-to-live", leader, u, err)
	}
	if resp.GetResponse() == nil {
		return nil, fmt.Errorf("server: forward lease time-to-live to %x: empty response", leader)
	}
	return resp.GetResponse(), nil
}

// leaseForwardError turns the status a forwarded request failed with into the error
// the follower answers with: the leader's lease-not-found as lease.ErrLeaseNotFound;
// what another attempt may get past (not the leader, unreachable, stopping, attempt
// timed out) as errForwardRetry; anything else wraps an error with the leader's
// message (the member's error of that text, when there is one).
func (s *Server) leaseForwardError(what string, leader uint64, u string, err error) error {
	st := status.Convert(err)
	switch st.Code() {
	case codes.NotFound:
		return lease.ErrLeaseNotFound
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		s.leaseFwd.failed(leader)
		s.lg.Debug("forwarded lease request failed; retrying",
			zap.String("request", what),
			zap.String("leader-member-id", fmt.Sprintf("%x", leader)),
			zap.String("leader-peer-url", u),
			zap.Error(err))
		return fmt.Errorf("server: forward lease %s to %x: %s: %w", what, leader, st.Message(), errForwardRetry)
	case codes.Unknown:
		// The leader's own error, as text: back to its value so api maps it.
		return fmt.Errorf("server: forward lease %s to %x: %w", what, leader, errs.FromMessage(st.Message()))
	default:
		return fmt.Errorf("server: forward lease %s to %x: %w", what, leader, err)
	}
}

// leaseForwardService is the leader's side of peerpb.LeaseForward.
type leaseForwardService struct {
	peerpb.UnimplementedLeaseForwardServer
	s *Server
}

// checkLeader refuses a request from another cluster, and answers Unavailable (the
// sender retries) unless this member leads with a primary lessor: a follower's lessor,
// or a new leader's before it was promoted, has no expiries to renew or report.
func (h *leaseForwardService) checkLeader(ctx context.Context, clusterID, from uint64) error {
	s := h.s
	if err := s.refuseNonMember(ctx, "lease", clusterID, from); err != nil {
		return err
	}
	select {
	case <-s.stopping:
		return status.Error(codes.Unavailable, ErrStopped.Error())
	default:
	}
	if s.node.Leader() != s.id || !s.lessor.IsPrimary() {
		return status.Error(codes.Unavailable, ErrNotLeader.Error())
	}
	return nil
}

// Renew is LeaseRenew's leader path, once: the renewal once a quorum confirmed this
// member still leads (renewAsLeader), else Unavailable, which the sender retries with
// whoever leads then. The response carries no header: the follower stamps its own.
func (h *leaseForwardService) Renew(ctx context.Context, r *peerpb.LeaseRenewRequest) (*peerpb.LeaseRenewResponse, error) {
	if err := h.checkLeader(ctx, r.GetClusterId(), r.GetFrom()); err != nil {
		return nil, err
	}
	id := r.GetRequest().GetID()
	ttl, err := h.s.renewAsLeader(ctx, lease.LeaseID(id))
	if err != nil {
		return nil, leaseForwardStatus(err)
	}
	return &peerpb.LeaseRenewResponse{Response: &pb.LeaseKeepAliveResponse{ID: id, TTL: ttl}}, nil
}

// TimeToLive is LeaseTimeToLive's leader path.
func (h *leaseForwardService) TimeToLive(ctx context.Context, r *peerpb.LeaseTimeToLiveRequest) (*peerpb.LeaseTimeToLiveResponse, error) {
	if err := h.checkLeader(ctx, r.GetClusterId(), r.GetFrom()); err != nil {
		return nil, err
	}
	s := h.s
	if r.GetRequest() == nil {
		return nil, status.Error(codes.InvalidArgument, "peer: lease time-to-live request without a request")
	}
	resp, err := s.leaseTimeToLiveLocal(ctx, r.GetRequest())
	if err != nil {
		return nil, leaseForwardStatus(err)
	}
	// Demoted while answering: the remaining TTL may have come from a lessor without
	// expiries. Let the sender ask the next leader.
	if !s.lessor.IsPrimary() {
		return nil, status.Error(codes.Unavailable, ErrNotLeader.Error())
	}
	return &peerpb.LeaseTimeToLiveResponse{Response: resp}, nil
}

// leaseForwardStatus is the status the leader answers a forwarded lease request with.
func leaseForwardStatus(err error) error {
	switch {
	case errors.Is(err, lease.ErrLeaseNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, lease.ErrNotPrimary):
		return status.Error(codes.Unavailable, ErrNotLeader.Error())
	case errors.Is(err, ErrStopped), errors.Is(err, ErrNotLeader), errors.Is(err, ErrNoLeader),
		errors.Is(err, ErrLeaderChanged), errors.Is(err, ErrTimeout),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return status.Error(codes.Unavailable, err.Error())
	default:
		return status.Error(codes.Unknown, err.Error())
	}
}
