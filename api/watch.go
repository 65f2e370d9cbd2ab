package api

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

const (
	// invalidWatchID is clientv3.InvalidWatchID: the id of a create that failed and of
	// a progress response sent on behalf of every watcher of a stream.
	invalidWatchID = -1

	// defaultWatchProgressNotifyInterval is etcd's --watch-progress-notify-interval
	// default; minWatchProgressNotifyInterval the least etcd accepts (it raises smaller
	// values to it).
	defaultWatchProgressNotifyInterval = 10 * time.Minute
	minWatchProgressNotifyInterval     = 100 * time.Millisecond

	// defaultElectionTimeout is etcd's --election-timeout default.
	defaultElectionTimeout = time.Second
	// maxNoLeaderChecks is how many election timeouts in a row without a leader end a
	// stream whose client required one (etcd's maxNoLeaderCnt).
	maxNoLeaderChecks = 3

	// watchCtrlBufLen is the room for created/canceled responses queued by the receive
	// loop for the send loop (etcd's ctrlStreamBufLen).
	watchCtrlBufLen = 16

	// progressAllRetry is how often a progress request that found unsynced watchers is
	// retried.
	progressAllRetry = 50 * time.Millisecond
)

// errTextCompacted is the cancel reason etcd gives a create with a negative start
// revision (rpctypes.ErrCompacted's text).
var errTextCompacted = status.Convert(ErrGRPCCompacted).Message()

func (c GRPCConfig) watchProgressNotifyInterval() time.Duration {
	switch d := c.WatchProgressNotifyInterval; {
	case d <= 0:
		return defaultWatchProgressNotifyInterval
	case d < minWatchProgressNotifyInterval:
		return minWatchProgressNotifyInterval
	default:
		return d
	}
}

func (c GRPCConfig) electionTimeout() time.Duration {
	if c.ElectionTimeout <= 0 {
		return defaultElectionTimeout
	}
	return c.ElectionTimeout
}

type watchServer struct {
	pb.UnimplementedWatchServer
	b  Backend
	lg *zap.Logger

	// maxResponseBytes is --max-request-bytes plus gRPC overhead (etcd's
	// MaxRequestBytesWithOverhead): a fragmenting watcher's responses stay below it.
	maxResponseBytes int
	progressInterval time.Duration
	electionTimeout  time.Duration
}

func newWatchServer(b Backend, cfg GRPCConfig, lg *zap.Logger) *watchServer {
	interval := cfg.watchProgressNotifyInterval()
	if cfg.WatchProgressNotifyInterval > 0 && cfg.WatchProgressNotifyInterval < minWatchProgressNotifyInterval {
		lg.Warn("adjusting watch progress notify interval to minimum period",
			zap.Duration("min-watch-progress-notify-interval", minWatchProgressNotifyInterval))
	}
	return &watchServer{
		b:                b,
		lg:               lg,
		maxResponseBytes: int(cfg.maxRequestBytes()) + grpcOverheadBytes,
		progressInterval: interval,
		electionTimeout:  cfg.electionTimeout(),
	}
}

// watchOpts is what the service remembers of one watcher's create request.
type watchOpts struct {
	prevKV   bool
	fragment bool
	noPut    bool
	noDelete bool
	// progressNotify: the client asked for periodic progress responses. progressDue is
	// false once an event was sent since the last tick (etcd elides that tick).
	progressNotify bool
	progressDue    bool
}

// watchStream is the service side of one gRPC Watch stream: a receive loop turning
// requests into WatchStream calls, and a send loop that alone writes to the gRPC stream.
type watchStream struct {
	s  *watchServer
	gs pb.Watch_WatchServer
	ws WatchStream

	ctrl   chan *pb.WatchResponse // created/canceled responses, from the receive loop
	progc  chan struct{}          // a progress request was received (capacity 1)
	closec chan struct{}

	// mu serializes calls into ws and guards opts and closed.
	mu     sync.Mutex
	opts   map[int64]*watchOpts
	closed bool

	sendErr error // why the send loop stopped, if a Send failed

	enc eventEncoder // the send loop's: events encoded once for all its watchers
	// The send loop's: the member's header, read once per take (nil: read it at the
	// next response), and the last header sent.
	cur, lastHdr *pb.ResponseHeader
}

// Watch serves one bidirectional Watch stream as etcd's v3rpc watch server does.
func (s *watchServer) Watch(gs pb.Watch_WatchServer) error {
	ctx, cancel := context.WithCancelCause(gs.Context())
	defer cancel(nil)
	if requiresLeader(gs.Context()) {
		go s.monitorLeader(ctx, cancel)
	}

	sws := &watchStream{
		s:      s,
		gs:     gs,
		ws:     s.b.NewWatchStream(),
		ctrl:   make(chan *pb.WatchResponse, watchCtrlBufLen),
		progc:  make(chan struct{}, 1),
		closec: make(chan struct{}),
		opts:   make(map[int64]*watchOpts),
	}
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		sws.sendLoop()
	}()
	// The receive loop is not waited for: Recv may stay blocked until this handler
	// returns and grpc-go cancels the stream. It touches ws only under mu, after
	// checking closed.
	recvErr := make(chan error, 1)
	go func() {
		if err := sws.recvLoop(); err != nil {
			if status.Code(err) != codes.Canceled && !errors.Is(err, context.Canceled) {
				s.lg.Debug("failed to receive watch request from gRPC stream", zap.Error(err))
			}
			recvErr <- err
		}
		// On io.EOF (the client closed its send side) the stream stays open: etcd keeps
		// delivering events until the client goes away.
	}()

	var err error
	select {
	case err = <-recvErr:
		if errors.Is(err, context.Canceled) {
			err = ErrGRPCWatchCanceled
		}
	case <-ctx.Done():
		err = context.Cause(ctx)
		switch {
		case errors.Is(err, context.Canceled):
			err = ErrGRPCWatchCanceled
		case errors.Is(err, context.DeadlineExceeded):
			err = status.FromContextError(err).Err()
		}
	case <-sendDone:
		err = sws.sendErr
	}
	sws.close(sendDone)
	return err
}

// close stops the send loop, then closes the member's stream (which never waits for its
// queue to be taken).
func (sws *watchStream) close(sendDone <-chan struct{}) {
	close(sws.closec)
	<-sendDone
	sws.mu.Lock()
	sws.closed = true
	sws.mu.Unlock()
	sws.ws.Close()
}

func requiresLeader(ctx context.Context) bool {
	ks := metadata.ValueFromIncomingContext(ctx, metadataRequireLeaderKey)
	return len(ks) > 0 && ks[0] == metadataHasLeader
}

// monitorLeader ends the stream with "no leader" once the member has had no leader for
// maxNoLeaderChecks election timeouts in a row (etcd's monitorLeader; a new stream is
// refused at once by the stream interceptor).
func (s *watchServer) monitorLeader(ctx context.Context, cancel context.CancelCauseFunc) {
	t := time.NewTicker(s.electionTimeout)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s.b.Leader() == 0 {
				n++
			} else {
				n = 0
			}
			if n >= maxNoLeaderChecks {
				cancel(ErrGRPCNoLeader)
				return
			}
		}
	}
}

func (sws *watchStream) header(rev int64) *pb.ResponseHeader {
	h := &pb.ResponseHeader{Revision: rev}
	fillHeader(sws.s.b, &h)
	return h
}

// headerAt is a header carrying exactly rev, zero included: etcd stamps no revision on
// the response that cancels a watcher for compaction. The send loop's responses of one
// take share the member's header (term included) as read once for the take, and
// consecutive responses of one revision share the header itself (read-only).
func (sws *watchStream) headerAt(rev int64) *pb.ResponseHeader {
	if sws.cur == nil {
		sws.cur = sws.s.b.Header()
	}
	if h := sws.lastHdr; h != nil && h.Revision == rev && h.RaftTerm == sws.cur.GetRaftTerm() {
		return h
	}
	cur := sws.cur
	sws.lastHdr = &pb.ResponseHeader{ClusterId: cur.GetClusterId(), MemberId: cur.GetMemberId(), RaftTerm: cur.GetRaftTerm(), Revision: rev}
	return sws.lastHdr
}

// queueCtrl hands a control response to the send loop; false if the stream is closing.
func (sws *watchStream) queueCtrl(wr *pb.WatchResponse) bool {
	select {
	case sws.ctrl <- wr:
		return true
	case <-sws.closec:
		return false
	}
}

func (sws *watchStream) recvLoop() error {
	for {
		req, err := sws.gs.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch u := req.RequestUnion.(type) {
		case *pb.WatchRequest_CreateRequest:
			if u.CreateRequest == nil {
				continue
			}
			if !sws.create(u.CreateRequest) {
				return nil
			}
		case *pb.WatchRequest_CancelRequest:
			if u.CancelRequest == nil {
				continue
			}
			id := u.CancelRequest.WatchId
			sws.mu.Lock()
			if sws.closed {
				sws.mu.Unlock()
				return nil
			}
			err := sws.ws.Cancel(id)
			if err == nil {
				delete(sws.opts, id)
			}
			sws.mu.Unlock()
			// An unknown id gets no response, as with etcd.
			if err == nil && !sws.queueCtrl(&pb.WatchResponse{Header: sws.header(0), WatchId: id, Canceled: true}) {
				return nil
			}
		case *pb.WatchRequest_ProgressRequest:
			if u.ProgressRequest == nil {
				continue
			}
			select {
			case sws.progc <- struct{}{}:
			default: // one is already waiting; it answers this one too
			}
		default:
			// etcd ignores a request it does not know rather than ending the stream.
			sws.s.lg.Info("invalid watch request type received in gRPC stream")
		}
	}
}

// create serves a create request; false if the stream is closing.
func (sws *watchStream) create(r *pb.WatchCreateRequest) bool {
	if len(r.Key) == 0 {
		r.Key = []byte{0} // "\x00" is the smallest key
	}
	if r.StartRevision < 0 {
		return sws.queueCtrl(&pb.WatchResponse{
			Header:       sws.header(0),
			WatchId:      invalidWatchID,
			Created:      true,
			Canceled:     true,
			CancelReason: errTextCompacted,
		})
	}
	if reason, denied := watchDenied(sws.gs.Context(), sws.s.b, r.Key, r.RangeEnd); denied {
		return sws.queueCtrl(&pb.WatchResponse{
			Header:       sws.header(0),
			WatchId:      invalidWatchID,
			Created:      true,
			Canceled:     true,
			CancelReason: reason,
		})
	}
	o := &watchOpts{
		prevKV:         r.PrevKv,
		fragment:       r.Fragment,
		progressNotify: r.ProgressNotify,
		progressDue:    true,
	}
	for _, f := range r.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			o.noPut = true
		case pb.WatchCreateRequest_NODELETE:
			o.noDelete = true
		}
	}
	sws.mu.Lock()
	if sws.closed {
		sws.mu.Unlock()
		return false
	}
	id, rev, err := sws.ws.Watch(r)
	if err == nil {
		sws.opts[id] = o
	}
	sws.mu.Unlock()

	wr := &pb.WatchResponse{Header: sws.header(rev), WatchId: id, Created: true}
	if err != nil {
		wr.WatchId = invalidWatchID
		wr.Canceled = true
		wr.CancelReason = err.Error()
	}
	return sws.queueCtrl(wr)
}

func (sws *watchStream) sendLoop() {
	// announced: watchers whose created response was sent. pending: their responses
	// that came before it, sent right after it.
	announced := make(map[int64]bool)
	pending := make(map[int64][]*pb.WatchResponse)

	interval := sws.s.progressInterval
	interval += time.Duration(rand.Int64N(int64(interval)/10 + 1)) // etcd's jitter
	progressTicker := time.NewTicker(interval)
	defer progressTicker.Stop()

	// A progress request that found watchers still catching up is retried.
	var retry *time.Timer
	var retryC <-chan time.Time
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	requestProgressAll := func() {
		sws.mu.Lock()
		ok := sws.closed || sws.ws.RequestProgressAll()
		sws.mu.Unlock()
		if ok {
			retryC = nil
			return
		}
		if retry == nil {
			retry = time.NewTimer(progressAllRetry)
		} else {
			retry.Reset(progressAllRetry)
		}
		retryC = retry.C
	}

	ready := sws.ws.Ready()
	for {
		select {
		case <-ready:
			// Everything the member queued since the last take, sent from here: no
			// goroutine between the member's watch hub and this one.
			rs, open := sws.ws.Take()
			sws.cur = nil // the term may have changed since the last take
			for _, resp := range rs {
				id := resp.GetWatchId()
				if id != invalidWatchID && !announced[id] {
					if sws.known(id) {
						pending[id] = append(pending[id], resp)
					}
					// else: a response of a watcher already canceled; dropped.
					continue
				}
				if !sws.sendWatchResponse(resp) {
					return
				}
			}
			if !open {
				return
			}

		case c := <-sws.ctrl:
			if err := sws.gs.Send(c); err != nil {
				sws.sendFailed(err)
				return
			}
			id := c.GetWatchId()
			switch {
			case id == invalidWatchID:
			case c.GetCanceled():
				delete(announced, id)
				delete(pending, id)
			case c.GetCreated():
				announced[id] = true
				sws.cur = nil
				for _, r := range pending[id] {
					if !sws.sendWatchResponse(r) {
						return
					}
				}
				delete(pending, id)
			}

		case <-sws.progc:
			requestProgressAll()

		case <-retryC:
			requestProgressAll()

		case <-progressTicker.C:
			sws.mu.Lock()
			if !sws.closed {
				for id, o := range sws.opts {
					if !o.progressNotify {
						continue
					}
					if o.progressDue {
						sws.ws.RequestProgress(id)
					}
					o.progressDue = true
				}
			}
			sws.mu.Unlock()

		case <-sws.closec:
			return
		}
	}
}

func (sws *watchStream) known(id int64) bool {
	sws.mu.Lock()
	defer sws.mu.Unlock()
	_, ok := sws.opts[id]
	return ok
}

func (sws *watchStream) sendFailed(err error) {
	sws.sendErr = err
	if !isClientGone(sws.gs.Context(), err) {
		sws.s.lg.Warn("failed to send watch response to gRPC stream", zap.Error(err))
	}
}

func isClientGone(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, io.EOF)
}
