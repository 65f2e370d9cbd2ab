package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cairn-kv/cairn/internal/errs"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// fakeBackend is the smallest Backend the api tests need: the real member needs raft and
// storage, while these tests only check what api does around the Backend (validation,
// error mapping, HTTP endpoints, the port mux). It records the requests that reached it.
type fakeBackend struct {
	mu       sync.Mutex
	leader   uint64
	alarms   []*pb.AlarmMember
	learner  bool
	rangeErr error // returned by Range (and thus health checks), and by RangeStream before its last chunk
	// streamChunks are the KVs of RangeStream's chunks.
	streamChunks [][]*mvccpb.KeyValue
	err          error // returned by every other KV call
	calls        []string

	// watchStreams receives every stream NewWatchStream opens (buffered; tests that
	// watch read it to drive the stream).
	watchStreams chan *fakeWatchStream
	// db is what Snapshot serves.
	db []byte
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{leader: 1, watchStreams: make(chan *fakeWatchStream, 16)}
}

func (f *fakeBackend) record(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
	return f.err
}

func (f *fakeBackend) numCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fakeBackend) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	f.record("Range")
	f.mu.Lock()
	err := f.rangeErr
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 7}}, nil
}

// RangeStream sends streamChunks (or, if empty, one chunk with key "a"), the last one
// with a header of revision 7, then fails with rangeErr if set.
func (f *fakeBackend) RangeStream(ctx context.Context, r *pb.RangeRequest, send func(*pb.RangeResponse) error) error {
	f.record("RangeStream")
	f.mu.Lock()
	chunks, err := f.streamChunks, f.rangeErr
	f.mu.Unlock()
	if len(chunks) == 0 {
		chunks = [][]*mvccpb.KeyValue{{{Key: []byte("a")}}}
	}
	for i, kvs := range chunks {
		resp := &pb.RangeResponse{Kvs: kvs}
		if i == len(chunks)-1 {
			if err != nil {
				return err
			}
			resp.Header, resp.Count, resp.More = &pb.ResponseHeader{Revision: 7}, 99, true
		}
		if err := send(resp); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeBackend) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := f.record("Put"); err != nil {
		return nil, err
	}
	return &pb.PutResponse{}, nil
}

func (f *fakeBackend) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := f.record("DeleteRange"); err != nil {
		return nil, err
	}
	return &pb.DeleteRangeResponse{}, nil
}

func (f *fakeBackend) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := f.record("Txn"); err != nil {
		return nil, err
	}
	return &pb.TxnResponse{Succeeded: true}, nil
}

func (f *fakeBackend) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	if err := f.record("Compact"); err != nil {
		return nil, err
	}
	return &pb.CompactionResponse{}, nil
}

func (f *fakeBackend) Status(ctx context.Context) (*pb.StatusResponse, error) {
	f.record("Status")
	return &pb.StatusResponse{Version: EtcdVersion, Leader: f.Leader()}, nil
}

func (f *fakeBackend) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	f.record("MemberAdd")
	return &pb.MemberAddResponse{Header: &pb.ResponseHeader{}, Member: &pb.Member{ID: 7, PeerURLs: r.PeerURLs}}, nil
}

func (f *fakeBackend) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	f.record("MemberRemove")
	return &pb.MemberRemoveResponse{Header: &pb.ResponseHeader{}}, nil
}

func (f *fakeBackend) MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	f.record("MemberUpdate")
	return &pb.MemberUpdateResponse{Header: &pb.ResponseHeader{}}, nil
}

func (f *fakeBackend) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	f.record("MemberPromote")
	return &pb.MemberPromoteResponse{Header: &pb.ResponseHeader{}}, nil
}

func (f *fakeBackend) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	f.record("MoveLeader")
	return &pb.MoveLeaderResponse{Header: &pb.ResponseHeader{}}, nil
}

func (f *fakeBackend) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	f.record("MemberList")
	return &pb.MemberListResponse{Header: &pb.ResponseHeader{ClusterId: 100, MemberId: 42}, Members: []*pb.Member{{ID: 42, Name: "default"}}}, nil
}

func (f *fakeBackend) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	if err := f.record("HashKV"); err != nil {
		return nil, err
	}
	return &pb.HashKVResponse{Hash: 1}, nil
}

func (f *fakeBackend) Alarms() []*pb.AlarmMember {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.alarms
}

func (f *fakeBackend) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	resp := &pb.AlarmResponse{}
	if r.Action != pb.AlarmRequest_GET {
		resp.Alarms = []*pb.AlarmMember{{MemberID: r.MemberID, Alarm: r.Alarm}}
		return resp, nil
	}
	for _, a := range f.Alarms() {
		if r.Alarm == pb.AlarmType_NONE || a.Alarm == r.Alarm {
			resp.Alarms = append(resp.Alarms, a)
		}
	}
	return resp, nil
}

func (f *fakeBackend) Leader() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leader
}

func (f *fakeBackend) Header() *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: 100, MemberId: 42, RaftTerm: 3, Revision: 9}
}

func (f *fakeBackend) ClusterVersion() string { return "3.6.0" }

func (f *fakeBackend) IsLearner() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.learner
}

// The member's errors (internal/errs) as the fake backend returns them.
var (
	errStopped         = errs.ErrStopped
	errNoLeader        = errs.ErrNoLeader
	errTimeout         = errs.ErrTimeout
	errTooManyRequests = errs.ErrTooManyRequests
	errCompacted       = errs.ErrCompacted
	errFutureRev       = errs.ErrFutureRev
)

func wrap(err error) error { return fmt.Errorf("applying request: %w", err) }

func (f *fakeBackend) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	return &pb.LeaseGrantResponse{}, f.record("LeaseGrant")
}

func (f *fakeBackend) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	return &pb.LeaseRevokeResponse{}, f.record("LeaseRevoke")
}

func (f *fakeBackend) LeaseRenew(ctx context.Context, id int64) (int64, error) {
	return 0, f.record("LeaseRenew")
}

func (f *fakeBackend) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	return &pb.LeaseTimeToLiveResponse{}, f.record("LeaseTimeToLive")
}

func (f *fakeBackend) LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	return &pb.LeaseLeasesResponse{}, f.record("LeaseLeases")
}

func (f *fakeBackend) Snapshot(ctx context.Context) (DBSnapshot, error) {
	if err := f.record("Snapshot"); err != nil {
		return DBSnapshot{}, err
	}
	return DBSnapshot{Size: int64(len(f.db)), StorageVersion: "3.6.0", Data: io.NopCloser(bytes.NewReader(f.db))}, nil
}

func (f *fakeBackend) Defragment(ctx context.Context) error {
	return f.record("Defragment")
}

func (f *fakeBackend) NewWatchStream() WatchStream {
	f.record("NewWatchStream")
	ws := &fakeWatchStream{
		respQueue: newRespQueue(),
		watches:   make(map[int64]*pb.WatchCreateRequest),
		nextID:    0,
		synced:    true,
	}
	select {
	case f.watchStreams <- ws:
	default:
	}
	return ws
}

// fakeWatchStream is a WatchStream the test drives: it records watchers, and the test
// puts responses on its channel with emit. onWatch, if set, runs inside Watch after the
// watcher is registered (e.g. to emit an event before the created response is sent).
type fakeWatchStream struct {
	*respQueue
	mu               sync.Mutex
	watches          map[int64]*pb.WatchCreateRequest
	nextID           int64
	synced           bool
	progressAllCalls int
	progressCalls    []int64
	closed           bool
	onWatch          func(id int64)
	createdRev       int64 // the revision Watch reports (0: none, the header's)
}

func (w *fakeWatchStream) Watch(r *pb.WatchCreateRequest) (int64, int64, error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return -1, 0, errors.New("mvcc: watcher range is empty")
	}
	if len(r.RangeEnd) > 0 && !(len(r.RangeEnd) == 1 && r.RangeEnd[0] == 0) && string(r.Key) >= string(r.RangeEnd) {
		w.mu.Unlock()
		return -1, 0, errors.New("mvcc: watcher range is empty")
	}
	id := r.WatchId
	if id == 0 {
		for w.watches[w.nextID] != nil {
			w.nextID++
		}
		id = w.nextID
		w.nextID++
	} else if w.watches[id] != nil {
		w.mu.Unlock()
		return -1, 0, errors.New("mvcc: duplicate watch ID provided on the WatchStream")
	}
	w.watches[id] = r
	hook, rev := w.onWatch, w.createdRev
	w.mu.Unlock()
	if hook != nil {
		hook(id)
	}
	return id, rev, nil
}

func (w *fakeWatchStream) Cancel(id int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.watches[id] == nil {
		return errors.New("mvcc: watcher does not exist")
	}
	delete(w.watches, id)
	return nil
}

func (w *fakeWatchStream) RequestProgress(id int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.progressCalls = append(w.progressCalls, id)
	if w.synced && w.watches[id] != nil {
		w.send(&pb.WatchResponse{WatchId: id, Header: &pb.ResponseHeader{Revision: 9}})
	}
}

func (w *fakeWatchStream) RequestProgressAll() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.progressAllCalls++
	if !w.synced {
		return false
	}
	w.send(&pb.WatchResponse{WatchId: -1, Header: &pb.ResponseHeader{Revision: 9}})
	return true
}

// send never blocks (as the interface requires of the progress calls).
func (w *fakeWatchStream) send(r *pb.WatchResponse) { w.push(r) }

func (w *fakeWatchStream) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	w.watches = map[int64]*pb.WatchCreateRequest{}
}

func (w *fakeWatchStream) isClosed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}

func (w *fakeWatchStream) setSynced(v bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.synced = v
}

// emit queues a response on the stream, as the member's hub does.
func (w *fakeWatchStream) emit(r *pb.WatchResponse) { w.push(r) }

// respQueue is a test WatchStream's queue of responses: push appends and signals Ready,
// Take empties it. It is never closed.
type respQueue struct {
	mu    sync.Mutex
	q     []*pb.WatchResponse
	ready chan struct{}
}

func newRespQueue() *respQueue { return &respQueue{ready: make(chan struct{}, 1)} }

func (q *respQueue) push(r *pb.WatchResponse) {
	q.mu.Lock()
	q.q = append(q.q, r)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *respQueue) Ready() <-chan struct{} { return q.ready }

func (q *respQueue) Take() ([]*pb.WatchResponse, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	rs := q.q
	q.q = nil
	return rs, true
}
