package api

import (
	"bytes"
	"context"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-kv/cairn/internal/errs"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/mvccpb"
	"github.com/cairn-kv/cairn/proto/v3lockpb"
)

// memKV is an in-memory Backend with just enough MVCC for the Lock and Election services:
// revisions, create revisions, leases that delete their keys when revoked, the Txn
// compares and ops concurrency uses, sorted and limited ranges, and watch streams. The
// Backend methods it does not implement panic (nil embedded interface).
type memKV struct {
	Backend

	mu      sync.Mutex
	rev     int64
	kvs     map[string]*mvccpb.KeyValue
	history []*mvccpb.Event
	leases  map[int64]int64 // id -> TTL
	nextID  int64
	streams map[*memWatchStream]struct{}
}

func newMemKV() *memKV {
	return &memKV{rev: 1, kvs: map[string]*mvccpb.KeyValue{}, leases: map[int64]int64{}, nextID: 0x100, streams: map[*memWatchStream]struct{}{}}
}

func (m *memKV) Header() *pb.ResponseHeader {
	m.mu.Lock()
	defer m.mu.Unlock()
	return &pb.ResponseHeader{ClusterId: 1, MemberId: 2, RaftTerm: 3, Revision: m.rev}
}

func (m *memKV) hdr() *pb.ResponseHeader { return &pb.ResponseHeader{Revision: m.rev} }

func inRange(key, start, end []byte) bool {
	if len(end) == 0 {
		return bytes.Equal(key, start)
	}
	if bytes.Equal(end, []byte{0}) {
		return bytes.Compare(key, start) >= 0
	}
	return bytes.Compare(key, start) >= 0 && bytes.Compare(key, end) < 0
}

func (m *memKV) rangeLocked(r *pb.RangeRequest) *pb.RangeResponse {
	var out []*mvccpb.KeyValue
	for _, kv := range m.kvs {
		if !inRange(kv.Key, r.Key, r.RangeEnd) {
			continue
		}
		if r.MaxCreateRevision > 0 && kv.CreateRevision > r.MaxCreateRevision {
			continue
		}
		out = append(out, kv)
	}
	sort.Slice(out, func(i, j int) bool {
		switch {
		case r.SortTarget == pb.RangeRequest_CREATE && r.SortOrder == pb.RangeRequest_DESCEND:
			return out[i].CreateRevision > out[j].CreateRevision
		case r.SortTarget == pb.RangeRequest_CREATE:
			return out[i].CreateRevision < out[j].CreateRevision
		default:
			return bytes.Compare(out[i].Key, out[j].Key) < 0
		}
	})
	count := int64(len(out))
	if r.Limit > 0 && int64(len(out)) > r.Limit {
		out = out[:r.Limit]
	}
	return &pb.RangeResponse{Header: m.hdr(), Kvs: out, Count: count}
}

func (m *memKV) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rangeLocked(r), nil
}

// putLocked writes at revision m.rev (already advanced by the caller).
func (m *memKV) putLocked(r *pb.PutRequest) error {
	if _, ok := m.leases[r.Lease]; r.Lease != 0 && !ok {
		return errs.ErrLeaseNotFound
	}
	kv := &mvccpb.KeyValue{Key: r.Key, Value: r.Value, Lease: r.Lease, ModRevision: m.rev, CreateRevision: m.rev, Version: 1}
	if old, ok := m.kvs[string(r.Key)]; ok {
		kv.CreateRevision, kv.Version = old.CreateRevision, old.Version+1
	}
	m.kvs[string(r.Key)] = kv
	m.emitLocked(&mvccpb.Event{Type: mvccpb.Event_PUT, Kv: kv})
	return nil
}

func (m *memKV) deleteLocked(key []byte) int64 {
	if _, ok := m.kvs[string(key)]; !ok {
		return 0
	}
	delete(m.kvs, string(key))
	m.emitLocked(&mvccpb.Event{Type: mvccpb.Event_DELETE, Kv: &mvccpb.KeyValue{Key: key, ModRevision: m.rev}})
	return 1
}

func (m *memKV) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rev++
	if err := m.putLocked(r); err != nil {
		m.rev--
		return nil, err
	}
	return &pb.PutResponse{Header: m.hdr()}, nil
}

func (m *memKV) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rev++
	n := m.deleteLocked(r.Key)
	if n == 0 {
		m.rev--
	}
	return &pb.DeleteRangeResponse{Header: m.hdr(), Deleted: n}, nil
}

func (m *memKV) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ok := true
	for _, c := range r.Compare {
		if c.Target != pb.Compare_CREATE || c.Result != pb.Compare_EQUAL {
			return nil, errors.New("memKV: unsupported compare")
		}
		var cr int64
		if kv, found := m.kvs[string(c.Key)]; found {
			cr = kv.CreateRevision
		}
		ok = ok && cr == c.GetCreateRevision()
	}
	ops := r.Failure
	if ok {
		ops = r.Success
	}
	for _, op := range ops {
		if p := op.GetRequestPut(); p != nil {
			if _, found := m.leases[p.Lease]; p.Lease != 0 && !found {
				return nil, errs.ErrLeaseNotFound
			}
		}
	}
	m.rev++
	wrote := false
	resp := &pb.TxnResponse{Succeeded: ok}
	for _, op := range ops {
		switch {
		case op.GetRequestPut() != nil:
			_ = m.putLocked(op.GetRequestPut())
			wrote = true
			resp.Responses = append(resp.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{}}})
		case op.GetRequestDeleteRange() != nil:
			n := m.deleteLocked(op.GetRequestDeleteRange().Key)
			wrote = wrote || n > 0
			resp.Responses = append(resp.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &pb.DeleteRangeResponse{Deleted: n}}})
		case op.GetRequestRange() != nil:
			resp.Responses = append(resp.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: m.rangeLocked(op.GetRequestRange())}})
		}
	}
	if !wrote {
		m.rev--
	}
	resp.Header = m.hdr()
	return resp, nil
}

func (m *memKV) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextID++
	m.leases[m.nextID] = r.TTL
	return &pb.LeaseGrantResponse{Header: m.hdr(), ID: m.nextID, TTL: r.TTL}, nil
}

func (m *memKV) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.leases[r.ID]; !ok {
		return nil, errs.ErrLeaseNotFound
	}
	delete(m.leases, r.ID)
	m.rev++
	n := int64(0)
	for _, kv := range m.kvs {
		if kv.Lease == r.ID {
			n += m.deleteLocked(kv.Key)
		}
	}
	if n == 0 {
		m.rev--
	}
	return &pb.LeaseRevokeResponse{Header: m.hdr()}, nil
}

func (m *memKV) emitLocked(ev *mvccpb.Event) {
	m.history = append(m.history, ev)
	for s := range m.streams {
		s.deliver(ev, m.rev)
	}
}

// get returns the current key-value of key, or nil.
func (m *memKV) get(key string) *mvccpb.KeyValue {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.kvs[key]
}

func (m *memKV) leaseTTL(id int64) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leases[id]
}

func (m *memKV) numStreams() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.streams)
}

func (m *memKV) NewWatchStream() WatchStream {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &memWatchStream{m: m, respQueue: newRespQueue(), watchers: map[int64]*pb.WatchCreateRequest{}}
	m.streams[s] = struct{}{}
	return s
}

// memWatchStream sends one response per event (m.mu held by every caller of deliver).
type memWatchStream struct {
	*respQueue
	m        *memKV
	nextID   int64
	watchers map[int64]*pb.WatchCreateRequest
}

func (s *memWatchStream) deliver(ev *mvccpb.Event, rev int64) {
	for id, w := range s.watchers {
		if inRange(ev.Kv.Key, w.Key, w.RangeEnd) && ev.Kv.ModRevision >= w.StartRevision {
			s.push(&pb.WatchResponse{Header: &pb.ResponseHeader{Revision: rev}, WatchId: id, Events: []*mvccpb.Event{ev}})
		}
	}
}

func (s *memWatchStream) Watch(r *pb.WatchCreateRequest) (int64, int64, error) {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	id := s.nextID
	s.nextID++
	s.watchers[id] = r
	for _, ev := range s.m.history {
		if inRange(ev.Kv.Key, r.Key, r.RangeEnd) && ev.Kv.ModRevision >= r.StartRevision {
			s.push(&pb.WatchResponse{Header: &pb.ResponseHeader{Revision: s.m.rev}, WatchId: id, Events: []*mvccpb.Event{ev}})
		}
	}
	return id, 0, nil
}

func (s *memWatchStream) Cancel(id int64) error {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	delete(s.watchers, id)
	return nil
}

func (s *memWatchStream) RequestProgress(int64)    {}
func (s *memWatchStream) RequestProgressAll() bool { return false }

func (s *memWatchStream) Close() {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	delete(s.m.streams, s)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func grantLease(t *testing.T, m *memKV) int64 {
	t.Helper()
	r, err := m.LeaseGrant(testCtx(t), &pb.LeaseGrantRequest{TTL: 30})
	if err != nil {
		t.Fatal(err)
	}
	return r.ID
}

type lockResult struct {
	r   *v3lockpb.LockResponse
	err error
}

func lockAsync(ctx context.Context, s *lockServer, name string, lease int64) <-chan lockResult {
	ch := make(chan lockResult, 1)
	go func() {
		r, err := s.Lock(ctx, &v3lockpb.LockRequest{Name: []byte(name), Lease: lease})
		ch <- lockResult{r, err}
	}()
	return ch
}

func requireWaiting[T any](t *testing.T, ch <-chan T) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("returned while it should wait: %+v", r)
	case <-time.After(200 * time.Millisecond):
	}
}

func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no result within 5s")
	}
	panic("unreachable")
}

func requireStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code || st.Message() != msg {
		t.Fatalf("got error %v, want %v %q", err, code, msg)
	}
}

func TestLockWaitsForEarlierHolders(t *testing.T) {
	m := newMemKV()
	s := &lockServer{c: concurrency{b: m}}
	l1, l2, l3 := grantLease(t, m), grantLease(t, m), grantLease(t, m)

	r1, err := s.Lock(testCtx(t), &v3lockpb.LockRequest{Name: []byte("n"), Lease: l1})
	if err != nil || string(r1.Key) != "n/101" {
		t.Fatalf("lock 1: %v %v", r1, err)
	}
	if r1.Header.GetRevision() != m.get("n/101").CreateRevision || r1.Header.GetClusterId() != 1 {
		t.Fatalf("lock 1 header %v", r1.Header)
	}
	// The same lease again: the same key, untouched.
	if again, err := s.Lock(testCtx(t), &v3lockpb.LockRequest{Name: []byte("n"), Lease: l1}); err != nil || string(again.Key) != "n/101" {
		t.Fatalf("relock: %v %v", again, err)
	}
	if m.get("n/101").Version != 1 {
		t.Fatal("relock rewrote the key")
	}

	w2 := lockAsync(testCtx(t), s, "n", l2)
	requireWaiting(t, w2)
	w3 := lockAsync(testCtx(t), s, "n", l3)
	requireWaiting(t, w3)

	// Waiter 3 waits for 2 as well: releasing 1 wakes 2 only.
	if _, err := s.Unlock(testCtx(t), &v3lockpb.UnlockRequest{Key: r1.Key}); err != nil {
		t.Fatal(err)
	}
	r2 := receive(t, w2)
	if r2.err != nil || string(r2.r.Key) != "n/102" {
		t.Fatalf("lock 2: %+v", r2)
	}
	requireWaiting(t, w3)
	// A revoked lease releases the lock too.
	if _, err := m.LeaseRevoke(testCtx(t), &pb.LeaseRevokeRequest{ID: l2}); err != nil {
		t.Fatal(err)
	}
	r3 := receive(t, w3)
	if r3.err != nil || string(r3.r.Key) != "n/103" {
		t.Fatalf("lock 3: %+v", r3)
	}
	if n := m.numStreams(); n != 0 {
		t.Fatalf("%d watch streams left open", n)
	}
}

func TestLockCanceledWaiterRemovesItsKey(t *testing.T) {
	m := newMemKV()
	s := &lockServer{c: concurrency{b: m}}
	l1, l2 := grantLease(t, m), grantLease(t, m)
	if _, err := s.Lock(testCtx(t), &v3lockpb.LockRequest{Name: []byte("n"), Lease: l1}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := lockAsync(ctx, s, "n", l2)
	requireWaiting(t, w)
	if m.get("n/102") == nil {
		t.Fatal("waiter's key missing")
	}
	cancel()
	requireStatus(t, receive(t, w).err, codes.Canceled, "context canceled")
	r, _ := m.Range(testCtx(t), &pb.RangeRequest{Key: []byte("n/102")})
	if len(r.Kvs) != 0 {
		t.Fatal("canceled waiter's key left behind")
	}
	if n := m.numStreams(); n != 0 {
		t.Fatalf("%d watch streams left open", n)
	}
}

func TestLockErrors(t *testing.T) {
	m := newMemKV()
	s := &lockServer{c: concurrency{b: m}}

	_, err := s.Lock(testCtx(t), &v3lockpb.LockRequest{Name: []byte("n"), Lease: 42})
	requireStatus(t, err, codes.Unknown, "etcdserver: requested lease not found")
	_, err = s.Unlock(testCtx(t), &v3lockpb.UnlockRequest{})
	requireStatus(t, err, codes.Unknown, "etcdserver: key is not provided")

	// Lease 0: a 60 s lease is granted for the lock.
	r, err := s.Lock(testCtx(t), &v3lockpb.LockRequest{Name: []byte("n")})
	if err != nil {
		t.Fatal(err)
	}
	kv := m.get(string(r.Key))
	if kv == nil || m.leaseTTL(kv.Lease) != defaultSessionTTL || string(r.Key) != string(sessionKey([]byte("n"), kv.Lease)) {
		t.Fatalf("lease-0 lock: key %q kv %v", r.Key, kv)
	}

	// A waiter whose own key goes away while it waits: "session is expired".
	l2 := grantLease(t, m)
	w := lockAsync(testCtx(t), s, "n", l2)
	requireWaiting(t, w)
	if _, err := m.LeaseRevoke(testCtx(t), &pb.LeaseRevokeRequest{ID: l2}); err != nil {
		t.Fatal(err)
	}
	requireWaiting(t, w)
	if _, err := s.Unlock(testCtx(t), &v3lockpb.UnlockRequest{Key: r.Key}); err != nil {
		t.Fatal(err)
	}
	requireStatus(t, receive(t, w).err, codes.Unknown, "mutex: session is expired")
}

func TestConcurrencyError(t *testing.T) {
	for _, tc := range []struct {
		in   error
		code codes.Code
		msg  string
	}{
		{errs.ErrLeaseNotFound, codes.Unknown, "etcdserver: requested lease not found"},
		{errs.ErrCompacted, codes.Unknown, "etcdserver: mvcc: required revision has been compacted"},
		{ErrGRPCNoLeader, codes.Unknown, "etcdserver: no leader"},
		{errElectionNotLeader, codes.Unknown, "election: not leader"},
		{errors.New("something else"), codes.Unknown, "something else"},
		{context.Canceled, codes.Canceled, "context canceled"},
		{context.DeadlineExceeded, codes.DeadlineExceeded, "context deadline exceeded"},
	} {
		requireStatus(t, concurrencyError(tc.in), tc.code, tc.msg)
	}
}

func TestPrefixEnd(t *testing.T) {
	for in, want := range map[string]string{"a/": "a0", "a\xff": "b", "\xff\xff": "\x00"} {
		if got := string(prefixEnd([]byte(in))); got != want {
			t.Errorf("prefixEnd(%q) = %q, want %q", in, got, want)
		}
	}
}
