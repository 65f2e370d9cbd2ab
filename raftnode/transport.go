package raftnode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-kv/cairn/internal/pbcodec"
	"github.com/cairn-kv/cairn/proto/peerpb"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

const (
	// peerQueueSize bounds the messages waiting for one peer. Beyond it messages are
	// dropped and raft is told the peer is unreachable; raft resends what matters.
	peerQueueSize = 4096
	// maxEnvelopeBytes stops batching once an envelope holds this much; one envelope can
	// exceed it by at most one message (raft keeps those near MaxSizePerMsg).
	maxEnvelopeBytes = 1 << 20
	// peerWriteTimeout ends a stream whose write does not finish, e.g. a partitioned
	// peer whose flow-control window is full.
	peerWriteTimeout = 5 * time.Second
	// peerIdleProbe is how long a stream may stay silent before an empty envelope goes.
	peerIdleProbe = time.Second
	// peerProbeInterval is how often the round trip to a peer is measured once a probe
	// went through; peerProbeRetry after a failed one.
	peerProbeInterval   = 5 * time.Second
	peerProbeRetry      = time.Second
	minReconnectBackoff = 100 * time.Millisecond
	// maxReconnectBackoff caps the wait between attempts to reach a peer (ours and
	// gRPC's): after a partition heals, the link is back within about this long.
	maxReconnectBackoff = 250 * time.Millisecond

	// forwardedProposalQueueSize bounds the proposals received from followers that wait
	// to be stepped into raft; beyond it they are dropped (the proposer's request times
	// out and its client retries, as with etcd).
	forwardedProposalQueueSize = 4096
	// forwardedProposalStepTimeout bounds how long one forwarded proposal may wait for
	// raft to take it (raft holds proposals while it has no leader).
	forwardedProposalStepTimeout = 500 * time.Millisecond
	// forwardedProposalMaxAge drops forwarded proposals that waited longer than this:
	// their proposer has given up on them.
	forwardedProposalMaxAge = 5 * time.Second
)

// PeerTransport sends raft messages to the other members and receives theirs.
//
// Each peer has a bounded queue and one goroutine that keeps one long-lived stream open
// to it (a direct stream, direct_stream.go; the gRPC stream towards a member without
// those), writing everything queued since its last write as one envelope. Send never
// blocks. A snapshot (MsgSnap) goes with the db it stands for on a stream and
// connection of its own (snapshot_transport.go). Receiving is SplitListener's direct
// streams and the peer gRPC service Register installs: both check the cluster and member
// ids of each envelope and hand the messages to the handler (node.Step).
// Proposals forwarded by followers take a separate queue: raft holds a proposal while it
// has no leader, and that must not stall the stream that also carries heartbeats and
// votes (a restarted member would otherwise never hear from the new leader).
type PeerTransport struct {
	lg        *zap.Logger
	localID   uint64
	clusterID uint64
	// dialTLS is the TLS configuration for https:// peer URLs (see DialPeer).
	dialTLS *tls.Config

	ctx    context.Context // cancelled by Stop
	cancel context.CancelFunc

	mu          sync.RWMutex
	stopped     bool
	peers       map[uint64]*peer
	handler     func(ctx context.Context, m *raftpb.Message) error
	unreachable func(id uint64)

	snapSource  SnapshotSource
	snapReceive SnapshotReceiver
	snapReport  func(id uint64, st raft.SnapshotStatus)

	proposals   chan forwardedProposal
	members     func() *peerpb.MembersResponse
	isRemoved   func(id uint64) bool // is id a member removed from the cluster
	onRemoved   func()               // a peer told us we were removed
	removedOnce sync.Once

	skipCertCheck atomic.Bool // see CheckMemberCert
}

// errRemovedText is how a receiver refuses a stream from a member that was removed
// from the cluster; the sender then learns it was removed even if it never applied
// its own removal (the leader stops talking to it as soon as it commits it).
const errRemovedText = "peer: the sending member was removed from the cluster"

// forwardedProposal is a MsgProp received from a peer, waiting for raft.
type forwardedProposal struct {
	m       *raftpb.Message
	arrived time.Time
}

// NewPeerTransport creates the transport of member localID in cluster clusterID; it dials
// https:// peer URLs with dialTLS (see DialPeer).
func NewPeerTransport(lg *zap.Logger, localID, clusterID uint64, dialTLS *tls.Config) *PeerTransport {
	if lg == nil {
		lg = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &PeerTransport{
		lg:        lg,
		localID:   localID,
		clusterID: clusterID,
		dialTLS:   dialTLS,
		ctx:       ctx,
		cancel:    cancel,
		peers:     make(map[uint64]*peer),
		proposals: make(chan forwardedProposal, forwardedProposalQueueSize),
	}
	go t.stepForwardedProposals()
	return t
}

// stepForwardedProposals hands proposals received from peers to raft, one at a time,
// each bounded in time, until the transport stops.
func (t *PeerTransport) stepForwardedProposals() {
	for {
		var fp forwardedProposal
		select {
		case fp = <-t.proposals:
		case <-t.ctx.Done():
			return
		}
		if time.Since(fp.arrived) > forwardedProposalMaxAge {
			t.lg.Debug("dropped stale forwarded proposal", zap.String("remote-peer-id", idString(fp.m.GetFrom())))
			continue
		}
		t.mu.RLock()
		h := t.handler
		t.mu.RUnlock()
		if h == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(t.ctx, forwardedProposalStepTimeout)
		if err := h(ctx, fp.m); err != nil && t.ctx.Err() == nil {
			t.lg.Debug("dropped forwarded proposal", zap.String("remote-peer-id", idString(fp.m.GetFrom())), zap.Error(err))
		}
		cancel()
	}
}

// queueForwardedProposal queues m (a MsgProp) without blocking; false if the queue is full.
func (t *PeerTransport) queueForwardedProposal(m *raftpb.Message) bool {
	select {
	case t.proposals <- forwardedProposal{m: m, arrived: time.Now()}:
		return true
	default:
		return false
	}
}

// SetHandler sets where received messages go (h, normally Node.Step) and whom to tell
// that messages to a peer were lost (unreachable, normally Node.ReportUnreachable).
// Envelopes received before it is called are refused.
func (t *PeerTransport) SetHandler(h func(ctx context.Context, m *raftpb.Message) error, unreachable func(id uint64)) {
	t.mu.Lock()
	t.handler = h
	t.unreachable = unreachable
	t.mu.Unlock()
}

// SetMembersSource sets what the Members RPC answers (the server's applied membership);
// until then it answers Unavailable.
func (t *PeerTransport) SetMembersSource(f func() *peerpb.MembersResponse) {
	t.mu.Lock()
	t.members = f
	t.mu.Unlock()
}

// SetRemovedHandlers sets how to tell removed members (refused when they connect) and
// what to do when a peer refuses this member as removed (called once).
func (t *PeerTransport) SetRemovedHandlers(isRemoved func(id uint64) bool, onRemoved func()) {
	t.mu.Lock()
	t.isRemoved, t.onRemoved = isRemoved, onRemoved
	t.mu.Unlock()
}

// AddPeer starts sending to member id at urls (like "http://127.0.0.1:2380"). Adding a
// known peer again only updates its URLs; the local member is ignored.
func (t *PeerTransport) AddPeer(id uint64, urls []string) {
	if id == t.localID || id == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	if p, ok := t.peers[id]; ok {
		p.setURLs(urls)
		return
	}
	p := newPeer(t, id, urls)
	t.peers[id] = p
	go p.run()
	t.lg.Info("added peer", zap.String("peer-id", idString(id)), zap.Strings("peer-urls", urls))
}

// ActiveSince is since when messages to member id have been going through without a
// break; the zero time if they are not, or id is not a peer.
func (t *PeerTransport) ActiveSince(id uint64) time.Time {
	t.mu.RLock()
	p := t.peers[id]
	t.mu.RUnlock()
	if p == nil {
		return time.Time{}
	}
	ns := p.activeSince.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// RemovePeer stops sending to member id and drops what is queued for it.
func (t *PeerTransport) RemovePeer(id uint64) {
	t.mu.Lock()
	p, ok := t.peers[id]
	delete(t.peers, id)
	t.mu.Unlock()
	if !ok {
		return
	}
	p.stop()
	t.lg.Info("removed peer", zap.String("peer-id", idString(id)))
}

// Send queues msgs for their peers without blocking. A message for an unknown peer is
// dropped; one that does not fit in its peer's queue is dropped and raft is told the
// peer is unreachable.
func (t *PeerTransport) Send(msgs []*raftpb.Message) {
	var full []uint64
	t.mu.RLock()
	for _, m := range msgs {
		to := m.GetTo()
		p := t.peers[to]
		if p == nil {
			continue
		}
		if m.GetType() == raftpb.MsgSnap {
			go t.sendSnapshot(p, m)
			continue
		}
		select {
		case p.queue <- m:
		default:
			peerSentFailures.WithLabelValues(p.label).Inc()
			if !slices.Contains(full, to) {
				full = append(full, to)
			}
		}
	}
	unreachable := t.unreachable
	t.mu.RUnlock()
	if unreachable != nil {
		for _, id := range full {
			unreachable(id)
		}
	}
}

// Register installs the peer service on the member's peer-URL gRPC server.
func (t *PeerTransport) Register(s *grpc.Server) {
	peerpb.RegisterPeerServer(s, &peerService{t: t})
}

// Stop ends every outgoing stream and refuses incoming ones from now on.
func (t *PeerTransport) Stop() {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return
	}
	t.stopped = true
	peers := t.peers
	t.peers = make(map[uint64]*peer)
	t.mu.Unlock()
	t.cancel()
	for _, p := range peers {
		p.stop()
	}
}

func (t *PeerTransport) removed(by uint64) {
	t.mu.RLock()
	f := t.onRemoved
	t.mu.RUnlock()
	if f == nil {
		return
	}
	t.removedOnce.Do(func() {
		t.lg.Warn("a peer refused this member as removed from the cluster", zap.String("remote-peer-id", idString(by)))
		go f()
	})
}

func (t *PeerTransport) reportUnreachable(id uint64) {
	t.mu.RLock()
	unreachable, stopped := t.unreachable, t.stopped
	t.mu.RUnlock()
	if unreachable != nil && !stopped {
		unreachable(id)
	}
}

func idString(id uint64) string { return strconv.FormatUint(id, 16) }

// peer is the sending side towards one member.
type peer struct {
	t     *PeerTransport
	lg    *zap.Logger
	id    uint64
	label string
	queue chan *raftpb.Message

	ctx    context.Context
	cancel context.CancelFunc
	donec  chan struct{}

	// activeSince is when the current stream first delivered (unix ns), 0 while
	// there is no working stream.
	activeSince atomic.Int64

	mu    sync.Mutex
	urls  []string
	next  int                         // index into urls of the next one to try
	conns map[string]*grpc.ClientConn // by target
	// direct is the latest direct stream's connection, to directTarget.
	direct       net.Conn
	directTarget string
}

func newPeer(t *PeerTransport, id uint64, urls []string) *peer {
	ctx, cancel := context.WithCancel(t.ctx)
	return &peer{
		t:      t,
		lg:     t.lg.With(zap.String("peer-id", idString(id))),
		id:     id,
		label:  idString(id),
		queue:  make(chan *raftpb.Message, peerQueueSize),
		ctx:    ctx,
		cancel: cancel,
		donec:  make(chan struct{}),
		urls:   slices.Clone(urls),
		conns:  make(map[string]*grpc.ClientConn),
	}
}

func (p *peer) setURLs(urls []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if slices.Equal(p.urls, urls) {
		return
	}
	p.urls = slices.Clone(urls)
	p.next = 0
	keep := make(map[string]bool)
	for _, u := range urls {
		keep[DialTarget(u)] = true
	}
	for target, cc := range p.conns {
		if !keep[target] {
			_ = cc.Close() // a stream on it fails and the next one uses the new URLs
			delete(p.conns, target)
		}
	}
	if p.direct != nil && !keep[p.directTarget] {
		_ = p.direct.Close()
		p.direct = nil
	}
	p.lg.Info("updated peer urls", zap.Strings("peer-urls", urls))
}

func (p *peer) stop() {
	p.cancel()
	<-p.donec
	p.mu.Lock()
	for target, cc := range p.conns {
		_ = cc.Close()
		delete(p.conns, target)
	}
	p.mu.Unlock()
}

// DialTarget turns a peer URL into a gRPC target: "http://127.0.0.1:2380" → "127.0.0.1:2380".
func DialTarget(u string) string {
	if !strings.Contains(u, "://") {
		return u
	}
	pu, err := url.Parse(u)
	if err != nil || pu.Host == "" {
		return u
	}
	return pu.Host
}

// urlLocked is the URL to try next; p.mu is held.
func (p *peer) urlLocked() (string, error) {
	if len(p.urls) == 0 {
		return "", errors.New("peer: no URLs")
	}
	return p.urls[p.next%len(p.urls)], nil
}

// conn is a client connection to the URL to try next.
func (p *peer) conn() (*grpc.ClientConn, string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	u, err := p.urlLocked()
	if err != nil {
		return nil, "", err
	}
	target := DialTarget(u)
	if cc, ok := p.conns[target]; ok {
		return cc, target, nil
	}
	cc, err := DialPeer(u, p.t.dialTLS, maxReconnectBackoff, 5*time.Second)
	if err != nil {
		return nil, target, err
	}
	p.conns[target] = cc
	return cc, target, nil
}

// DialPeer opens a client connection to another member's peer listener at peerURL:
// plaintext for http:// (or a bare host:port), TLS with tlsCfg for https:// (nil: Go's
// defaults, the server verified against the system roots, as etcd does without peer TLS
// options). Every member-to-member connection is made here: the raft transport's and
// the server's own requests to peers. gRPC reconnects with a backoff from 100 ms up to
// maxBackoff (its default of minutes would keep a restarted member unreachable far
// beyond an election).
func DialPeer(peerURL string, tlsCfg *tls.Config, maxBackoff, minConnectTimeout time.Duration) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if cfg := peerClientTLS(peerURL, tlsCfg); cfg != nil {
		creds = credentials.NewTLS(cfg)
	}
	return grpc.NewClient(DialTarget(peerURL),
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  minReconnectBackoff,
				Multiplier: 2,
				Jitter:     0.2,
				MaxDelay:   maxBackoff,
			},
			MinConnectTimeout: minConnectTimeout,
		}),
	)
}

// peerClientTLS is the TLS configuration member-to-member connections to peerURL use:
// nil (plaintext) unless it is https://, tlsCfg or, if that is nil, Go's defaults.
func peerClientTLS(peerURL string, tlsCfg *tls.Config) *tls.Config {
	if !strings.HasPrefix(peerURL, "https://") {
		return nil
	}
	if tlsCfg == nil {
		return &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return tlsCfg
}

// rotate makes the next connection attempt use the peer's next URL.
func (p *peer) rotate() {
	p.mu.Lock()
	p.next++
	p.mu.Unlock()
}

func (p *peer) run() {
	defer close(p.donec)
	probed := make(chan struct{})
	go func() { defer close(probed); p.probeLoop() }()
	defer func() { <-probed }()
	delay := minReconnectBackoff
	healthy := true // log the first failure loudly, then quietly until a stream works again
	for {
		sent, err := p.stream()
		p.activeSince.Store(0)
		if p.ctx.Err() != nil {
			return
		}
		if st, ok := status.FromError(err); ok && st.Code() == codes.PermissionDenied && st.Message() == errRemovedText {
			p.t.removed(p.id)
		}
		if sent {
			delay = minReconnectBackoff
			healthy = true
		}
		if healthy {
			p.lg.Warn("peer stream failed", zap.Error(err))
			healthy = false
		} else {
			p.lg.Debug("peer stream failed", zap.Error(err))
		}
		p.t.reportUnreachable(p.id)
		p.rotate()
		select {
		case <-time.After(delay):
		case <-p.ctx.Done():
			return
		}
		delay = min(2*delay, maxReconnectBackoff)
	}
}

// probeLoop measures the round trip to the peer with a Probe call now and then until the
// peer is stopped (etcd_network_peer_round_trip_time_seconds).
func (p *peer) probeLoop() {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-timer.C:
		}
		next := peerProbeRetry
		if cc, _, err := p.conn(); err == nil {
			ctx, cancel := context.WithTimeout(p.ctx, peerWriteTimeout)
			start := time.Now()
			_, err = peerpb.NewPeerClient(cc).Probe(ctx, &peerpb.Empty{})
			cancel()
			if err == nil {
				peerRoundTrip.WithLabelValues(p.label).Observe(time.Since(start).Seconds())
				next = peerProbeInterval
			}
		}
		timer.Reset(next)
	}
}

// envelopeWriter is one stream to the peer: a direct stream (direct_stream.go) or,
// towards a member that does not take those, the peer service's gRPC stream.
type envelopeWriter interface {
	// write sends the envelope enc holds, unless none of its messages marshalled
	// (n == 0) while skipEmpty; it returns how many messages went and their bytes.
	write(enc *envelopeEncoder, skipEmpty bool) (n, size int, err error)
	// closeSend ends the stream the way the receiver sees as its normal end.
	closeSend()
}

// stream opens one stream to the peer and writes queued messages to it until it fails
// or the peer is stopped. sent says whether any write went through.
func (p *peer) stream() (sent bool, err error) {
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	w, recvErr, err := p.openDirect(ctx, cancel)
	if errors.Is(err, errNoDirectStreams) {
		p.lg.Debug("peer takes no direct streams; using the gRPC stream", zap.Error(err))
		w, recvErr, err = p.openGRPC(ctx, cancel)
	}
	if err != nil {
		return false, err
	}
	enc := &envelopeEncoder{clusterID: p.t.clusterID, from: p.t.localID, to: p.id}
	// An idle stream carries an empty envelope now and then (the first one at once), so
	// a broken link shows even between members raft has nothing to say to, and
	// ActiveSince means something for them too.
	idle := time.NewTimer(0)
	defer idle.Stop()
	for {
		var first *raftpb.Message
		select {
		case first = <-p.queue:
		case <-idle.C:
		case err := <-recvErr:
			return sent, err
		case <-p.ctx.Done():
			w.closeSend()
			return sent, p.ctx.Err()
		}
		if first != nil {
			p.drain(first, enc)
		}
		n, size, err := w.write(enc, first != nil)
		if err != nil {
			peerSentFailures.WithLabelValues(p.label).Add(float64(n))
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) { // the stream ended; its status says why
				select {
				case err = <-recvErr:
				case <-time.After(time.Second):
				}
			}
			return sent, err
		}
		if first != nil && n == 0 {
			continue
		}
		if !sent {
			p.activeSince.CompareAndSwap(0, time.Now().UnixNano())
		}
		sent = true
		idle.Reset(peerIdleProbe)
		peerSentBytes.WithLabelValues(p.label).Add(float64(size))
	}
}

// marshalFailed reports a queued message that could not be marshalled (and is dropped).
func (p *peer) marshalFailed(m *raftpb.Message, err error) {
	peerSentFailures.WithLabelValues(p.label).Inc()
	p.lg.Error("failed to marshal raft message", zap.Stringer("type", m.GetType()), zap.Error(err))
}

// openGRPC opens the peer service's Send stream; recvErr tells why the receiver ended
// it. cancel (the stream context's) ends a write that does not finish in time.
func (p *peer) openGRPC(ctx context.Context, cancel context.CancelFunc) (envelopeWriter, <-chan error, error) {
	cc, target, err := p.conn()
	if err != nil {
		return nil, nil, err
	}
	// pbcodec sends the envelopes envelopeEncoder writes as they are.
	st, err := peerpb.NewPeerClient(cc).Send(ctx, grpc.ForceCodecV2(pbcodec.Codec{}))
	if err != nil {
		return nil, nil, err
	}
	// The receiver answers only to end the stream, e.g. to refuse us: notice at once.
	recvErr := make(chan error, 1)
	go func() {
		var e peerpb.Empty
		err := st.RecvMsg(&e)
		if err == nil {
			err = errors.New("peer: stream closed by receiver")
		}
		recvErr <- err
	}()
	p.lg.Debug("peer stream opened", zap.String("target", target))
	return &grpcEnvelopeWriter{p: p, st: st, cancel: cancel}, recvErr, nil
}

type grpcEnvelopeWriter struct {
	p      *peer
	st     grpc.ClientStream
	cancel context.CancelFunc
}

func (w *grpcEnvelopeWriter) write(enc *envelopeEncoder, skipEmpty bool) (n, size int, err error) {
	env, n, size := enc.encode(w.p.marshalFailed)
	if skipEmpty && n == 0 {
		return 0, 0, nil
	}
	timer := time.AfterFunc(peerWriteTimeout, w.cancel)
	err = w.st.SendMsg(env) // a *peerpb.Envelope in wire form (envelope.go)
	timer.Stop()
	return n, size, err
}

func (w *grpcEnvelopeWriter) closeSend() { _ = w.st.CloseSend() }

// drain adds first and whatever else is queued, up to maxEnvelopeBytes, to enc.
func (p *peer) drain(first *raftpb.Message, enc *envelopeEncoder) {
	size := 0
	m := first
	for {
		size += enc.add(m)
		if size >= maxEnvelopeBytes {
			return
		}
		select {
		case m = <-p.queue:
		default:
			return
		}
	}
}

// peerService is the receiving side: the peer gRPC service.
type peerService struct {
	peerpb.UnimplementedPeerServer
	t *PeerTransport
}

func (s *peerService) Probe(context.Context, *peerpb.Empty) (*peerpb.Empty, error) {
	return &peerpb.Empty{}, nil
}

func (s *peerService) Members(context.Context, *peerpb.MembersRequest) (*peerpb.MembersResponse, error) {
	s.t.mu.RLock()
	f := s.t.members
	s.t.mu.RUnlock()
	if f == nil || s.t.ctx.Err() != nil {
		return nil, status.Error(codes.Unavailable, "peer: membership not available yet")
	}
	return f(), nil
}

// streamContext is a received stream's context, cancelled also when the transport
// stops; Unavailable if it has stopped already.
func (t *PeerTransport) streamContext(parent context.Context) (context.Context, context.CancelFunc, error) {
	if t.ctx.Err() != nil {
		return nil, nil, status.Error(codes.Unavailable, "peer: transport stopped")
	}
	ctx, cancel := context.WithCancel(parent)
	stop := context.AfterFunc(t.ctx, cancel)
	return ctx, func() { stop(); cancel() }, nil
}

func (s *peerService) Send(st grpc.ClientStreamingServer[peerpb.Envelope, peerpb.Empty]) error {
	t := s.t
	ctx, cancel, err := t.streamContext(st.Context())
	if err != nil {
		return err
	}
	defer cancel()

	// Receive in a goroutine so Stop ends the stream even while no envelope arrives.
	type recv struct {
		env *receivedEnvelope
		err error
	}
	recvc := make(chan recv)
	go func() {
		for {
			env := &receivedEnvelope{}
			err := st.RecvMsg(env) // decoded in place (envelope.go)
			select {
			case recvc <- recv{env, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	var certChecked uint64 // the sender whose claim the connection's certificate passed
	for {
		var r recv
		select {
		case r = <-recvc:
		case <-ctx.Done():
			if t.ctx.Err() != nil {
				return status.Error(codes.Unavailable, "peer: transport stopped")
			}
			return status.FromContextError(ctx.Err()).Err()
		}
		if errors.Is(r.err, io.EOF) {
			return st.SendAndClose(&peerpb.Empty{})
		}
		if r.err != nil {
			return r.err
		}
		if err := t.receiveEnvelope(ctx, r.env, &certChecked); err != nil {
			return err
		}
	}
}

// receiveEnvelope checks an envelope received on a stream (gRPC or direct) and hands
// its messages to the handler; certChecked is the sender the stream's certificate was
// last checked for. An error (a gRPC status) ends the stream and goes to the sender.
func (t *PeerTransport) receiveEnvelope(ctx context.Context, env *receivedEnvelope, certChecked *uint64) error {
	if err := t.checkSender(env.clusterID, env.from, env.to); err != nil {
		return err
	}
	if env.from != *certChecked {
		if err := t.CheckMemberCert(ctx, env.from, t.peerURLs(env.from)); err != nil {
			return err
		}
		*certChecked = env.from
	}
	t.mu.RLock()
	h := t.handler
	t.mu.RUnlock()
	if h == nil {
		return status.Error(codes.Unavailable, "peer: not ready to receive raft messages")
	}
	from := idString(env.from)
	for _, rm := range env.msgs {
		m, err := rm.m, rm.err
		if err == nil {
			err = checkPeerMessage(m, env.from, t.localID)
		}
		if err != nil {
			t.lg.Warn("rejected peer stream: bad raft message", zap.String("remote-peer-id", from), zap.Error(err))
			return status.Error(codes.InvalidArgument, err.Error())
		}
		peerReceivedBytes.WithLabelValues(from).Add(float64(rm.size))
		if m.GetType() == raftpb.MsgProp {
			if !t.queueForwardedProposal(m) {
				t.lg.Warn("dropped forwarded proposal: receiving queue is full", zap.String("remote-peer-id", from))
			}
			continue
		}
		if err := h(ctx, m); err != nil {
			if t.ctx.Err() != nil {
				return status.Error(codes.Unavailable, "peer: transport stopped")
			}
			return status.Errorf(codes.Unavailable, "peer: raft step: %v", err)
		}
	}
	return nil
}

// MaxPeerMessageBytes bounds one message received on the peer port, for members whose
// client requests are at most maxRequestBytes: an envelope is cut after maxEnvelopeBytes
// plus one raft message, which holds up to MaxSizePerMsg of entries and one more entry
// (a request and its header); snapshot chunks and peer RPCs are smaller. Anything
// larger is no member's message.
func MaxPeerMessageBytes(maxRequestBytes uint) int {
	return maxEnvelopeBytes + MaxSizePerMsg + 2*int(maxRequestBytes) + 1<<20
}

// checkPeerMessage refuses a raft message of an envelope from member from that is not
// from that member, or not for this one (local): a member may not speak for another.
func checkPeerMessage(m *raftpb.Message, from, local uint64) error {
	if m.GetFrom() != from || m.GetTo() != local {
		return fmt.Errorf("peer: a raft message from %s to %s in an envelope from %s to %s",
			idString(m.GetFrom()), idString(m.GetTo()), idString(from), idString(local))
	}
	return nil
}

// checkSender refuses a stream from another cluster, meant for another member, or from a
// member removed from the cluster.
func (t *PeerTransport) checkSender(clusterID, from, to uint64) error {
	if clusterID != t.clusterID {
		t.lg.Warn("rejected peer stream: cluster ID mismatch",
			zap.String("remote-peer-id", idString(from)),
			zap.String("remote-cluster-id", idString(clusterID)),
			zap.String("local-cluster-id", idString(t.clusterID)))
		return status.Errorf(codes.FailedPrecondition, "peer: cluster ID mismatch (local %s, remote %s)",
			idString(t.clusterID), idString(clusterID))
	}
	if to != t.localID {
		t.lg.Warn("rejected peer stream: member ID mismatch",
			zap.String("remote-peer-id", idString(from)),
			zap.String("to", idString(to)),
			zap.String("local-member-id", idString(t.localID)))
		return status.Errorf(codes.FailedPrecondition, "peer: member ID mismatch (local %s, message for %s)",
			idString(t.localID), idString(to))
	}
	t.mu.RLock()
	isRemoved := t.isRemoved
	_, known := t.peers[from]
	t.mu.RUnlock()
	if isRemoved != nil && isRemoved(from) {
		t.lg.Warn("rejected peer stream: the sender was removed from the cluster", zap.String("remote-peer-id", idString(from)))
		return status.Error(codes.PermissionDenied, errRemovedText)
	}
	if !known {
		// Not (yet) a member as this member applied the log: a joining member becomes one
		// when its addition is applied, and raft resends what was refused meanwhile.
		t.lg.Warn("rejected peer stream: the sender is not a member of the cluster", zap.String("remote-peer-id", idString(from)))
		return status.Errorf(codes.PermissionDenied, "peer: member %s is not a member of this cluster", idString(from))
	}
	return nil
}
