package api

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/mvccpb"
	"github.com/cairn-kv/cairn/proto/v3lockpb"
)

// The Lock and Election services are etcd's v3lock and v3election: etcd serves them by
// running clientv3/concurrency (Mutex, Election) against an in-process client of itself.
// Cairn does the same against the Backend, with concurrency's exact key layout and
// waiting algorithm, so that etcd's and Cairn's services, and clientv3/concurrency and
// etcdctl lock/elect running against either, interoperate on the same keys:
//
//   - a waiter's key is name + "/" + fmt.Sprintf("%x", lease), created with that lease;
//   - the holder (leader) is the key with the smallest create revision under name + "/";
//   - a waiter waits until every key under the prefix created before its own is deleted,
//     watching the newest such key for its deletion, one at a time.
//
// Errors reach the caller as etcd's do: concurrency's own errors and the in-process
// client's errors are plain Go errors there, which grpc-go sends as codes.Unknown with
// the error's text (e.g. "etcdserver: requested lease not found", "election: not
// leader").

// Errors of clientv3/concurrency and v3election, with etcd's texts.
var (
	errSessionExpired    = errors.New("mutex: session is expired")
	errElectionNotLeader = errors.New("election: not leader")
	errElectionNoLeader  = errors.New("election: no leader")
	errMissingLeaderKey  = errors.New(`"leader" field must be provided`)
	errLostWatcher       = errors.New("lost watcher waiting for delete")
)

// defaultSessionTTL is concurrency.NewSession's TTL for the lease it grants when the
// request names lease 0.
const defaultSessionTTL = 60

// concurrencyError turns an error met while serving Lock or Election into what etcd
// sends: context errors as grpc-go sends them, everything else as codes.Unknown with
// etcd's text (a Backend error first becomes etcd's gRPC error to get that text).
func concurrencyError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); !ok {
		if g := toGRPCError(err); status.Code(g) != codes.Unknown {
			err = g
		}
	}
	if st, ok := status.FromError(err); ok {
		return status.Error(codes.Unknown, st.Message())
	}
	return status.Error(codes.Unknown, err.Error())
}

// concurrency is clientv3/concurrency's algorithms on a Backend.
type concurrency struct {
	b Backend
}

// sessionLease is concurrency.NewSession(WithLease(lease)): lease 0 (NoLease) grants a
// new lease of 60 seconds, which is then never kept alive (etcd orphans the session).
func (c concurrency) sessionLease(ctx context.Context, lease int64) (int64, error) {
	if lease != 0 {
		return lease, nil
	}
	resp, err := c.b.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: defaultSessionTTL})
	if err != nil {
		return 0, err
	}
	return resp.GetID(), nil
}

// prefixEnd is the range end covering every key that starts with prefix (clientv3's
// GetPrefixRangeEnd).
func prefixEnd(prefix []byte) []byte {
	end := make([]byte, len(prefix))
	copy(end, prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	// every byte is 0xff: the range runs to the end of the keyspace.
	return []byte{0}
}

// firstCreate is clientv3's Get(pfx, WithFirstCreate()...): the oldest key under pfx.
func firstCreate(pfx []byte) *pb.RangeRequest {
	return &pb.RangeRequest{
		Key:        pfx,
		RangeEnd:   prefixEnd(pfx),
		SortOrder:  pb.RangeRequest_ASCEND,
		SortTarget: pb.RangeRequest_CREATE,
		Limit:      1,
	}
}

func sessionKey(name []byte, lease int64) []byte {
	return fmt.Appendf(append(append([]byte{}, name...), '/'), "%x", lease)
}

func cmpCreateRev(key []byte, rev int64) *pb.Compare {
	return &pb.Compare{
		Key:         key,
		Target:      pb.Compare_CREATE,
		Result:      pb.Compare_EQUAL,
		TargetUnion: &pb.Compare_CreateRevision{CreateRevision: rev},
	}
}

func opPut(key, val []byte, lease int64) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: key, Value: val, Lease: lease}}}
}

func opRange(r *pb.RangeRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: r}}
}

func opDelete(key []byte) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: key}}}
}

// txn validates r as the KV service does (as etcd's in-process client's requests are),
// then runs it.
func (c concurrency) txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := checkTxn(r, defaultMaxTxnOps); err != nil {
		return nil, err
	}
	return c.b.Txn(ctx, r)
}

// header returns h stamped as the gRPC layer stamps every response header.
func (c concurrency) header(h *pb.ResponseHeader) *pb.ResponseHeader {
	fillHeader(c.b, &h)
	return h
}

// waitDeletes is concurrency.waitDeletes: it returns once no key under pfx has a create
// revision at or below maxCreateRev.
func (c concurrency) waitDeletes(ctx context.Context, pfx []byte, maxCreateRev int64) error {
	var ws *watcher
	defer func() {
		if ws != nil {
			ws.close()
		}
	}()
	for {
		resp, err := c.b.Range(ctx, &pb.RangeRequest{
			Key:               pfx,
			RangeEnd:          prefixEnd(pfx),
			SortOrder:         pb.RangeRequest_DESCEND,
			SortTarget:        pb.RangeRequest_CREATE,
			Limit:             1,
			MaxCreateRevision: maxCreateRev,
		})
		if err != nil {
			return err
		}
		if len(resp.GetKvs()) == 0 {
			return nil
		}
		if ws == nil {
			ws = newWatcher(c.b)
		}
		if err := c.waitDelete(ctx, ws, resp.Kvs[0].GetKey(), resp.GetHeader().GetRevision()); err != nil {
			return err
		}
	}
}

// waitDelete is concurrency.waitDelete: it watches key from rev until it is deleted.
func (c concurrency) waitDelete(ctx context.Context, ws *watcher, key []byte, rev int64) error {
	id, _, err := ws.s.Watch(&pb.WatchCreateRequest{Key: key, StartRevision: rev})
	if err != nil {
		return err
	}
	defer ws.s.Cancel(id)
	for {
		wr, err := ws.next(ctx, id)
		if err != nil {
			return err
		}
		for _, ev := range wr.GetEvents() {
			if ev.GetType() == mvccpb.Event_DELETE {
				return nil
			}
		}
	}
}

// watcher is one Backend watch stream, read by one goroutine at a time.
type watcher struct {
	s       WatchStream
	pending []*pb.WatchResponse // taken, not yet looked at
}

func newWatcher(b Backend) *watcher { return &watcher{s: b.NewWatchStream()} }

func (w *watcher) close() { w.s.Close() }

// next returns the next response of watch id that carries events. A compacted or
// canceled watch, or the stream closing, ends the wait with clientv3's error for it.
func (w *watcher) next(ctx context.Context, id int64) (*pb.WatchResponse, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if len(w.pending) == 0 {
			rs, open := w.s.Take()
			if len(rs) == 0 {
				if !open {
					if err := ctx.Err(); err != nil {
						return nil, err
					}
					return nil, errLostWatcher
				}
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-w.s.Ready():
				}
				continue
			}
			w.pending = append(w.pending[:0], rs...)
		}
		wr := w.pending[0]
		w.pending[0] = nil
		w.pending = w.pending[1:]
		if wr.GetWatchId() != id {
			continue
		}
		if wr.GetCompactRevision() != 0 {
			return nil, ErrGRPCCompacted
		}
		if wr.GetCanceled() {
			if r := wr.GetCancelReason(); r != "" {
				return nil, errors.New(r)
			}
			return nil, errLostWatcher
		}
		if len(wr.GetEvents()) > 0 {
			return wr, nil
		}
	}
}

type lockServer struct {
	v3lockpb.UnimplementedLockServer
	c concurrency
}

// Lock is etcd's v3lock Lock: concurrency.NewMutex(session(lease), name).Lock(ctx).
func (s *lockServer) Lock(ctx context.Context, r *v3lockpb.LockRequest) (*v3lockpb.LockResponse, error) {
	hdr, key, err := s.c.lock(ctx, r.GetName(), r.GetLease())
	if err != nil {
		return nil, concurrencyError(err)
	}
	return &v3lockpb.LockResponse{Header: s.c.header(hdr), Key: key}, nil
}

func (c concurrency) lock(ctx context.Context, name []byte, lease int64) (*pb.ResponseHeader, []byte, error) {
	lease, err := c.sessionLease(ctx, lease)
	if err != nil {
		return nil, nil, err
	}
	pfx := append(append([]byte{}, name...), '/')
	myKey := sessionKey(name, lease)

	// tryAcquire: put self in the waiters via myKey (or reuse it if this lease already
	// waits or holds), and fetch the current holder in the same round trip.
	resp, err := c.txn(ctx, &pb.TxnRequest{
		Compare: []*pb.Compare{cmpCreateRev(myKey, 0)},
		Success: []*pb.RequestOp{opPut(myKey, nil, lease), opRange(firstCreate(pfx))},
		Failure: []*pb.RequestOp{opRange(&pb.RangeRequest{Key: myKey}), opRange(firstCreate(pfx))},
	})
	if err != nil {
		return nil, nil, err
	}
	myRev := resp.GetHeader().GetRevision()
	if !resp.GetSucceeded() {
		myRev = resp.Responses[0].GetResponseRange().Kvs[0].GetCreateRevision()
	}
	owner := resp.Responses[1].GetResponseRange().GetKvs()
	if len(owner) == 0 || owner[0].GetCreateRevision() == myRev {
		return resp.GetHeader(), myKey, nil
	}

	unlock := func() {
		// Like Mutex.Unlock(client.Ctx()): not bound to the caller's context.
		_, _ = c.b.DeleteRange(context.WithoutCancel(ctx), &pb.DeleteRangeRequest{Key: myKey})
	}
	if err := c.waitDeletes(ctx, pfx, myRev-1); err != nil {
		unlock()
		return nil, nil, err
	}
	// Make sure the session is not expired and the key still exists.
	g, err := c.b.Range(ctx, &pb.RangeRequest{Key: myKey})
	if err != nil {
		unlock()
		return nil, nil, err
	}
	if len(g.GetKvs()) == 0 {
		return nil, nil, errSessionExpired
	}
	return g.GetHeader(), myKey, nil
}

// Unlock is etcd's v3lock Unlock: a plain delete of the key.
func (s *lockServer) Unlock(ctx context.Context, r *v3lockpb.UnlockRequest) (*v3lockpb.UnlockResponse, error) {
	dr := &pb.DeleteRangeRequest{Key: r.GetKey()}
	if err := checkDeleteRequest(dr); err != nil {
		return nil, concurrencyError(err)
	}
	resp, err := s.c.b.DeleteRange(ctx, dr)
	if err != nil {
		return nil, concurrencyError(err)
	}
	return &v3lockpb.UnlockResponse{Header: s.c.header(resp.GetHeader())}, nil
}
