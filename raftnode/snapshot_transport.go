package raftnode

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/cairn-kv/cairn/proto/peerpb"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const (
	// snapshotChunkBytes is the db data carried by one SnapshotChunk.
	snapshotChunkBytes = 1 << 20
	// snapshotChunkTimeout ends a snapshot stream whose chunk does not go through.
	snapshotChunkTimeout = 10 * time.Second
)

// SnapshotSource makes the snapshot a MsgSnap carries as of the state machine now,
// rather than raft's stored one (whose membership may predate the receiver, which raft
// would then refuse): its metadata (applied index and term, conf state) and data, and
// the db it stands for. The caller closes db.
type SnapshotSource func(ctx context.Context) (*raftpb.Snapshot, SnapshotDB, error)

// SnapshotDB is a consistent view of a db file being sent.
type SnapshotDB interface {
	WriteTo(w io.Writer) (int64, error)
	Close() error
}

// SnapshotReceiver takes a MsgSnap with its db: it saves the db from r (which fails
// unless the checksum matches) and then steps m into raft.
type SnapshotReceiver func(ctx context.Context, m *raftpb.Message, r io.Reader) error

// SetSnapshotHandlers sets where a snapshot's db comes from when this member sends one
// (source), what takes a received one (receive, normally Node.ReceiveSnapshot) and whom
// to tell how a send ended (report, normally Node.ReportSnapshot). Snapshots are refused
// (and fail to send) until it is called.
func (t *PeerTransport) SetSnapshotHandlers(source SnapshotSource, receive SnapshotReceiver, report func(id uint64, st raft.SnapshotStatus)) {
	t.mu.Lock()
	t.snapSource, t.snapReceive, t.snapReport = source, receive, report
	t.mu.Unlock()
}

// sendSnapshot streams m (a MsgSnap) and the db to peer p on a connection of its own, so
// the message stream (heartbeats) is never queued behind the db, and tells raft how it
// ended. raft sends one snapshot at a time per follower and waits for the report.
func (t *PeerTransport) sendSnapshot(p *peer, m *raftpb.Message) {
	start := time.Now()
	index, err := t.streamSnapshot(p, m)
	t.mu.RLock()
	report, stopped := t.snapReport, t.stopped
	t.mu.RUnlock()
	if err != nil {
		snapshotSendFailures.WithLabelValues(p.label).Inc()
		if !stopped {
			p.lg.Warn("failed to send snapshot", zap.Error(err))
		}
		if report != nil && !stopped {
			report(p.id, raft.SnapshotFailure)
		}
		t.reportUnreachable(p.id)
		return
	}
	snapshotSendSuccess.WithLabelValues(p.label).Inc()
	snapshotSendSeconds.WithLabelValues(p.label).Observe(time.Since(start).Seconds())
	p.lg.Info("sent snapshot", zap.Uint64("snapshot-index", index), zap.Duration("took", time.Since(start)))
	if report != nil && !stopped {
		report(p.id, raft.SnapshotFinish)
	}
}

// streamSnapshot sends m with a snapshot made now and its db; it returns the snapshot's
// index.
func (t *PeerTransport) streamSnapshot(p *peer, m *raftpb.Message) (uint64, error) {
	t.mu.RLock()
	source := t.snapSource
	t.mu.RUnlock()
	if source == nil {
		return 0, errors.New("peer: no snapshot source")
	}
	p.mu.Lock()
	var target string
	if len(p.urls) > 0 {
		target = p.urls[p.next%len(p.urls)]
	}
	p.mu.Unlock()
	if target == "" {
		return 0, errors.New("peer: no URLs")
	}
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	snap, db, err := source(ctx)
	if err != nil {
		return 0, fmt.Errorf("peer: make snapshot: %w", err)
	}
	defer db.Close()
	index := snap.GetMetadata().GetIndex()
	m = proto.Clone(m).(*raftpb.Message)
	m.Snapshot = snap
	msg, err := proto.Marshal(m)
	if err != nil {
		return index, fmt.Errorf("peer: marshal snapshot message: %w", err)
	}
	cc, err := DialPeer(target, t.dialTLS, maxReconnectBackoff, 5*time.Second)
	if err != nil {
		return index, err
	}
	defer cc.Close()
	st, err := peerpb.NewPeerClient(cc).SendSnapshot(ctx)
	if err != nil {
		return index, err
	}

	// The db is written by its own goroutine and read here in chunks.
	pr, pw := io.Pipe()
	go func() {
		_, err := db.WriteTo(pw)
		pw.CloseWithError(err)
	}()
	defer pr.Close() // unblocks the writer if the stream fails first

	send := func(c *peerpb.SnapshotChunk) error {
		timer := time.AfterFunc(snapshotChunkTimeout, cancel)
		defer timer.Stop()
		if err := st.Send(c); err != nil {
			return streamSendError(st, err)
		}
		return nil
	}
	sum := sha256.New()
	chunk := &peerpb.SnapshotChunk{ClusterId: t.clusterID, From: t.localID, To: p.id, Message: msg}
	buf := make([]byte, snapshotChunkBytes)
	for {
		n, rerr := io.ReadFull(pr, buf)
		if n > 0 {
			sum.Write(buf[:n])
			chunk.Data = buf[:n]
			if err := send(chunk); err != nil {
				return index, err
			}
			peerSentBytes.WithLabelValues(p.label).Add(float64(n))
			chunk = &peerpb.SnapshotChunk{}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return index, fmt.Errorf("peer: read snapshot db: %w", rerr)
		}
	}
	chunk.Data = nil
	chunk.Sha256 = sum.Sum(nil)
	if err := send(chunk); err != nil {
		return index, err
	}
	// The answer comes once the receiver saved the db and stepped the message.
	_, err = st.CloseAndRecv()
	return index, err
}

// streamSendError is the reason a client stream's Send failed: on io.EOF the stream
// ended and its status says why.
func streamSendError(st grpc.ClientStreamingClient[peerpb.SnapshotChunk, peerpb.Empty], err error) error {
	if errors.Is(err, io.EOF) {
		if _, rerr := st.CloseAndRecv(); rerr != nil {
			return rerr
		}
	}
	return err
}

func (s *peerService) SendSnapshot(st grpc.ClientStreamingServer[peerpb.SnapshotChunk, peerpb.Empty]) error {
	t := s.t
	ctx, cancel, err := t.streamContext(st.Context())
	if err != nil {
		return err
	}
	defer cancel()

	first, err := st.Recv()
	if err != nil {
		return err
	}
	if err := t.checkSender(first.GetClusterId(), first.GetFrom(), first.GetTo()); err != nil {
		return err
	}
	if err := t.CheckMemberCert(ctx, first.GetFrom(), t.peerURLs(first.GetFrom())); err != nil {
		return err
	}
	m := &raftpb.Message{}
	if err := proto.Unmarshal(first.GetMessage(), m); err != nil {
		return status.Errorf(codes.InvalidArgument, "peer: unmarshal snapshot message: %v", err)
	}
	if m.GetType() != raftpb.MsgSnap || m.GetSnapshot() == nil {
		return status.Errorf(codes.InvalidArgument, "peer: snapshot stream carries a %v message", m.GetType())
	}
	t.mu.RLock()
	receive := t.snapReceive
	t.mu.RUnlock()
	if receive == nil {
		return status.Error(codes.Unavailable, "peer: not ready to receive snapshots")
	}
	from := idString(first.GetFrom())
	index := m.GetSnapshot().GetMetadata().GetIndex()
	start := time.Now()
	r := &snapshotReader{recv: st.Recv, next: first, sum: sha256.New(), from: from}
	t.lg.Info("receiving snapshot", zap.String("remote-peer-id", from), zap.Uint64("snapshot-index", index))
	if err := receive(ctx, m, r); err != nil {
		snapshotReceiveFailures.WithLabelValues(from).Inc()
		t.lg.Warn("failed to receive snapshot", zap.String("remote-peer-id", from), zap.Uint64("snapshot-index", index), zap.Error(err))
		if t.ctx.Err() != nil {
			return status.Error(codes.Unavailable, "peer: transport stopped")
		}
		if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
			return err
		}
		return status.Errorf(codes.Unavailable, "peer: receive snapshot: %v", err)
	}
	snapshotReceiveSuccess.WithLabelValues(from).Inc()
	snapshotReceiveSeconds.WithLabelValues(from).Observe(time.Since(start).Seconds())
	t.lg.Info("received snapshot", zap.String("remote-peer-id", from), zap.Uint64("snapshot-index", index),
		zap.Int64("bytes", r.n), zap.Duration("took", time.Since(start)))
	return st.SendAndClose(&peerpb.Empty{})
}

// errSnapshotChecksum means a received db does not match the sender's checksum.
var errSnapshotChecksum = errors.New("peer: snapshot db checksum mismatch")

// snapshotReader reads the db pieces of a snapshot stream. It returns io.EOF only after
// the final chunk's checksum matched what was read; a stream that ends before it is
// io.ErrUnexpectedEOF.
type snapshotReader struct {
	recv func() (*peerpb.SnapshotChunk, error)
	next *peerpb.SnapshotChunk // a received chunk not consumed yet
	buf  []byte                // the unread rest of the current chunk's data
	sum  hash.Hash
	n    int64
	from string
	done bool
}

func (r *snapshotReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.done {
			return 0, io.EOF
		}
		c := r.next
		r.next = nil
		if c == nil {
			var err error
			if c, err = r.recv(); err != nil {
				if errors.Is(err, io.EOF) {
					return 0, io.ErrUnexpectedEOF
				}
				return 0, err
			}
		}
		r.buf = c.GetData()
		r.sum.Write(r.buf)
		r.n += int64(len(r.buf))
		peerReceivedBytes.WithLabelValues(r.from).Add(float64(len(r.buf)))
		if want := c.GetSha256(); want != nil {
			if !bytes.Equal(want, r.sum.Sum(nil)) {
				return 0, errSnapshotChecksum
			}
			r.done = true
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}
