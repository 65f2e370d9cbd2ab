package server

import (
	"bytes"
	"fmt"
	"math"
	"sort"

	"github.com/cairn-kv/cairn/lease"
	"github.com/cairn-kv/cairn/mvcc"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// kvView is what requests execute against: a read snapshot, or the apply loop's write
// transaction, which also sees its own earlier writes.
type kvView interface {
	Range(key, end []byte, o mvcc.RangeOptions) (*mvcc.RangeResult, error)
	// rev is the store revision as this view sees it (what response headers carry).
	rev() int64
	put(key, value []byte, lease int64)
	deleteRange(key, end []byte) []*mvccpb.KeyValue
}

type readView struct{ *mvcc.ReadTxn }

func (v readView) rev() int64 { return v.Rev() }

// A read view is only handed requests that write nothing (see isTxnReadOnly).
func (v readView) put([]byte, []byte, int64) { panic("server: put on a read view") }
func (v readView) deleteRange([]byte, []byte) []*mvccpb.KeyValue {
	panic("server: delete on a read view")
}

type writeView struct {
	tw      *mvcc.WriteTxn
	leases  *lease.Lessor
	changed bool
	// leaseChanges keeps the lessor's key sets in step with the store once the request
	// succeeded (applyLeaseChanges): a put moves the key to the lease it names (or to
	// none), a delete detaches it.
	leaseChanges []func()
}

func (s *Server) newWriteView(tx *mvcc.WriteTxn) *writeView {
	return &writeView{tw: tx, leases: s.lessor}
}

func (v *writeView) Range(key, end []byte, o mvcc.RangeOptions) (*mvcc.RangeResult, error) {
	return v.tw.Range(key, end, o)
}

func (v *writeView) rev() int64 {
	if v.changed {
		return v.tw.Rev() + 1
	}
	return v.tw.Rev()
}

func (v *writeView) put(key, value []byte, leaseID int64) {
	v.changed = true
	v.tw.Put(key, value, leaseID)
	if leaseID != 0 {
		k := string(key)
		v.leaseChanges = append(v.leaseChanges, func() {
			// checkPut made sure the lease exists, and nothing in between revokes it.
			// Attaching moves the key from a lease it had.
			_ = v.leases.Attach(lease.LeaseID(leaseID), k)
		})
		return
	}
	// The lessor knows the key's lease as the store does: every put, delete and revoke
	// before this one (earlier requests' changes are applied before the next runs; a
	// txn writes a key once) moved it in both.
	if old := v.leases.LeaseOf(string(key)); old != lease.NoLease {
		v.detach(int64(old), key)
	}
}

func (v *writeView) deleteRange(key, end []byte) []*mvccpb.KeyValue {
	deleted := v.tw.DeleteRange(key, end)
	if len(deleted) > 0 {
		v.changed = true
	}
	for _, kv := range deleted {
		if kv.Lease != 0 {
			v.detach(kv.Lease, kv.Key)
		}
	}
	return deleted
}

func (v *writeView) detach(id int64, key []byte) {
	k := string(key)
	v.leaseChanges = append(v.leaseChanges, func() { v.leases.Detach(lease.LeaseID(id), k) })
}

// applyLeaseChanges hands the request's key moves to the lessor, in order.
func (v *writeView) applyLeaseChanges() {
	for _, f := range v.leaseChanges {
		f()
	}
}

// executeRange serves a RangeRequest from v with etcd's semantics: count is the whole
// range's count whatever the limit or filters; sorting and revision filters need every
// key, so they disable the limit pushed down to the store.
func executeRange(v kvView, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	limit := r.Limit
	if !isDefaultOrdering(r.SortTarget, r.SortOrder) || hasRevisionFilters(r) {
		limit = 0
	}
	if limit > 0 && limit < math.MaxInt64 {
		limit++ // one more than asked tells whether there is more
	}
	rr, err := v.Range(r.Key, r.RangeEnd, mvcc.RangeOptions{Limit: limit, Rev: r.Revision, CountOnly: r.CountOnly})
	if err != nil {
		return nil, err
	}
	kvs := filterKVs(rr.KVs, r)
	sortKVs(kvs, r)
	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: v.rev()}, Count: int64(rr.Count)}
	if r.Limit > 0 && len(kvs) > int(r.Limit) {
		kvs = kvs[:r.Limit]
		resp.More = true
	}
	if r.KeysOnly {
		for _, kv := range kvs {
			kv.Value = nil
		}
	}
	resp.Kvs = kvs
	return resp, nil
}

func isDefaultOrdering(t pb.RangeRequest_SortTarget, o pb.RangeRequest_SortOrder) bool {
	return o == pb.RangeRequest_NONE || (t == pb.RangeRequest_KEY && o == pb.RangeRequest_ASCEND)
}

func hasRevisionFilters(r *pb.RangeRequest) bool {
	return r.MinModRevision != 0 || r.MaxModRevision != 0 || r.MinCreateRevision != 0 || r.MaxCreateRevision != 0
}

func filterKVs(kvs []*mvccpb.KeyValue, r *pb.RangeRequest) []*mvccpb.KeyValue {
	if !hasRevisionFilters(r) {
		return kvs
	}
	out := kvs[:0]
	for _, kv := range kvs {
		switch {
		case r.MaxModRevision != 0 && kv.ModRevision > r.MaxModRevision,
			r.MinModRevision != 0 && kv.ModRevision < r.MinModRevision,
			r.MaxCreateRevision != 0 && kv.CreateRevision > r.MaxCreateRevision,
			r.MinCreateRevision != 0 && kv.CreateRevision < r.MinCreateRevision:
			continue
		}
		out = append(out, kv)
	}
	return out
}

// kvsBy sorts key-values by one field. Ties keep whatever order sort.Sort leaves, which
// is what etcd returns for the same input, so responses compare equal byte for byte.
type kvsBy struct {
	kvs  []*mvccpb.KeyValue
	less func(a, b *mvccpb.KeyValue) bool
}

func (s kvsBy) Len() int           { return len(s.kvs) }
func (s kvsBy) Swap(i, j int)      { s.kvs[i], s.kvs[j] = s.kvs[j], s.kvs[i] }
func (s kvsBy) Less(i, j int) bool { return s.less(s.kvs[i], s.kvs[j]) }

var sortLess = map[pb.RangeRequest_SortTarget]func(a, b *mvccpb.KeyValue) bool{
	pb.RangeRequest_KEY:     func(a, b *mvccpb.KeyValue) bool { return bytes.Compare(a.Key, b.Key) < 0 },
	pb.RangeRequest_VERSION: func(a, b *mvccpb.KeyValue) bool { return a.Version < b.Version },
	pb.RangeRequest_CREATE:  func(a, b *mvccpb.KeyValue) bool { return a.CreateRevision < b.CreateRevision },
	pb.RangeRequest_MOD:     func(a, b *mvccpb.KeyValue) bool { return a.ModRevision < b.ModRevision },
	pb.RangeRequest_VALUE:   func(a, b *mvccpb.KeyValue) bool { return bytes.Compare(a.Value, b.Value) < 0 },
}

func sortKVs(kvs []*mvccpb.KeyValue, r *pb.RangeRequest) {
	order := r.SortOrder
	if r.SortTarget != pb.RangeRequest_KEY && order == pb.RangeRequest_NONE {
		order = pb.RangeRequest_ASCEND
	}
	if isDefaultOrdering(r.SortTarget, order) {
		return
	}
	less, ok := sortLess[r.SortTarget]
	if !ok {
		return
	}
	var s sort.Interface = kvsBy{kvs: kvs, less: less}
	if order == pb.RangeRequest_DESCEND {
		s = sort.Reverse(s)
	}
	sort.Sort(s)
}

// checkPut finds the errors a put would hit before anything is written, returning the
// previous key-value when the request needs it. The lease is checked first, as etcd's
// txn.Put does for a plain put (a put inside a txn is checked by checkTxnPut).
func (s *Server) checkPut(v kvView, p *pb.PutRequest) (*mvccpb.KeyValue, error) {
	if p.Lease != 0 && !s.leaseExists(p.Lease) {
		return nil, ErrLeaseNotFound
	}
	if !p.IgnoreValue && !p.IgnoreLease && !p.PrevKv {
		return nil, nil
	}
	rr, err := v.Range(p.Key, nil, mvcc.RangeOptions{})
	if err != nil {
		return nil, err
	}
	var prev *mvccpb.KeyValue
	if len(rr.KVs) > 0 {
		prev = rr.KVs[0]
	}
	if (p.IgnoreValue || p.IgnoreLease) && prev == nil {
		return nil, ErrKeyNotFound
	}
	return prev, nil
}

// checkTxnPut is checkPut in etcd's order for a put inside a txn (its txn.checkPut):
// the key an ignore_value or ignore_lease put needs first, then the lease. A plain put
// checks the lease first.
func (s *Server) checkTxnPut(v kvView, p *pb.PutRequest) error {
	if p.IgnoreValue || p.IgnoreLease {
		rr, err := v.Range(p.Key, nil, mvcc.RangeOptions{})
		if err != nil {
			return err
		}
		if len(rr.KVs) == 0 {
			return ErrKeyNotFound
		}
	}
	if p.Lease != 0 && !s.leaseExists(p.Lease) {
		return ErrLeaseNotFound
	}
	return nil
}

func executePut(v kvView, p *pb.PutRequest, prev *mvccpb.KeyValue) *pb.PutResponse {
	val, lease := p.Value, p.Lease
	if p.IgnoreValue {
		val = prev.Value
	}
	if p.IgnoreLease {
		lease = prev.Lease
	}
	resp := &pb.PutResponse{Header: &pb.ResponseHeader{}}
	if p.PrevKv {
		resp.PrevKv = prev
	}
	v.put(p.Key, val, lease)
	resp.Header.Revision = v.rev()
	return resp
}

func executeDeleteRange(v kvView, d *pb.DeleteRangeRequest) *pb.DeleteRangeResponse {
	deleted := v.deleteRange(d.Key, d.RangeEnd)
	resp := &pb.DeleteRangeResponse{Header: &pb.ResponseHeader{Revision: v.rev()}, Deleted: int64(len(deleted))}
	if d.PrevKv {
		resp.PrevKvs = deleted
	}
	return resp
}

// executeTxn runs a transaction on v. Every compare in the whole (nested) request is
// decided first against the state before the txn, and every op on the chosen path is
// checked before the first write, so a txn either fails whole or applies whole.
func (s *Server) executeTxn(v kvView, rt *pb.TxnRequest) (*pb.TxnResponse, error) {
	path := compareToPath(v, rt)
	if _, err := s.checkTxn(v, rt, path); err != nil {
		return nil, err
	}
	resp, _ := newTxnResp(rt, path)
	if _, err := s.runTxnOps(v, rt, path, resp); err != nil {
		return nil, err
	}
	resp.Header.Revision = v.rev()
	return resp, nil
}

func txnOps(rt *pb.TxnRequest, succeeded bool) []*pb.RequestOp {
	if succeeded {
		return rt.Success
	}
	return rt.Failure
}

// compareToPath decides the txn and its nested txns depth first: one bool per txn in
// the order they are reached.
func compareToPath(v kvView, rt *pb.TxnRequest) []bool {
	ok := applyCompares(v, rt.Compare)
	path := []bool{ok}
	for _, op := range txnOps(rt, ok) {
		if t := op.GetRequestTxn(); t != nil {
			path = append(path, compareToPath(v, t)...)
		}
	}
	return path
}

func applyCompares(v kvView, cmps []*pb.Compare) bool {
	for _, c := range cmps {
		if !applyCompare(v, c) {
			return false
		}
	}
	return true
}

func applyCompare(v kvView, c *pb.Compare) bool {
	rr, err := v.Range(c.Key, c.RangeEnd, mvcc.RangeOptions{})
	if err != nil {
		return false
	}
	if len(rr.KVs) == 0 {
		// A missing key has no value to compare; its revisions and version are zero.
		if c.Target == pb.Compare_VALUE {
			return false
		}
		return compareKV(c, &mvccpb.KeyValue{})
	}
	for _, kv := range rr.KVs {
		if !compareKV(c, kv) {
			return false
		}
	}
	return true
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func compareKV(c *pb.Compare, kv *mvccpb.KeyValue) bool {
	var r int
	switch c.Target {
	case pb.Compare_VALUE:
		r = bytes.Compare(kv.Value, c.GetValue())
	case pb.Compare_CREATE:
		r = cmpInt64(kv.CreateRevision, c.GetCreateRevision())
	case pb.Compare_MOD:
		r = cmpInt64(kv.ModRevision, c.GetModRevision())
	case pb.Compare_VERSION:
		r = cmpInt64(kv.Version, c.GetVersion())
	case pb.Compare_LEASE:
		r = cmpInt64(kv.Lease, c.GetLease())
	}
	switch c.Result {
	case pb.Compare_EQUAL:
		return r == 0
	case pb.Compare_NOT_EQUAL:
		return r != 0
	case pb.Compare_GREATER:
		return r > 0
	case pb.Compare_LESS:
		return r < 0
	}
	return true
}

// checkTxn validates the ops on the chosen path; it returns how many nested txns it
// consumed from path.
func (s *Server) checkTxn(v kvView, rt *pb.TxnRequest, path []bool) (int, error) {
	nested := 0
	for _, op := range txnOps(rt, path[0]) {
		switch {
		case op.GetRequestRange() != nil:
			if err := s.checkRangeRev(v, op.GetRequestRange().Revision); err != nil {
				return 0, err
			}
		case op.GetRequestPut() != nil:
			if err := s.checkTxnPut(v, op.GetRequestPut()); err != nil {
				return 0, err
			}
		case op.GetRequestTxn() != nil:
			n, err := s.checkTxn(v, op.GetRequestTxn(), path[1+nested:])
			if err != nil {
				return 0, err
			}
			nested += n + 1
		}
	}
	return nested, nil
}

// checkRangeRev is etcd's check of a range inside a txn, stricter than a plain range's:
// any revision below the compacted one fails, negative ones included (a plain range
// reads those at the current revision).
func (s *Server) checkRangeRev(v kvView, rev int64) error {
	switch {
	case rev == 0:
		return nil
	case rev > v.rev():
		return mvcc.ErrFutureRev
	case rev < s.store.CompactedRev():
		return mvcc.ErrCompacted
	}
	return nil
}

// newTxnResp shapes the response tree for the chosen path; nested txn responses carry
// a header with only the revision, as etcd's do.
func newTxnResp(rt *pb.TxnRequest, path []bool) (*pb.TxnResponse, int) {
	ops := txnOps(rt, path[0])
	resp := &pb.TxnResponse{Header: &pb.ResponseHeader{}, Succeeded: path[0], Responses: make([]*pb.ResponseOp, len(ops))}
	nested := 0
	for i, op := range ops {
		switch {
		case op.GetRequestRange() != nil:
			resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{}}
		case op.GetRequestPut() != nil:
			resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{}}
		case op.GetRequestDeleteRange() != nil:
			resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{}}
		case op.GetRequestTxn() != nil:
			sub, n := newTxnResp(op.GetRequestTxn(), path[1+nested:])
			resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: sub}}
			nested += n + 1
		default:
			resp.Responses[i] = &pb.ResponseOp{}
		}
	}
	return resp, nested
}

func (s *Server) runTxnOps(v kvView, rt *pb.TxnRequest, path []bool, resp *pb.TxnResponse) (int, error) {
	nested := 0
	for i, op := range txnOps(rt, path[0]) {
		switch {
		case op.GetRequestRange() != nil:
			r, err := executeRange(v, op.GetRequestRange())
			if err != nil {
				return 0, fmt.Errorf("server: txn range: %w", err)
			}
			resp.Responses[i].Response.(*pb.ResponseOp_ResponseRange).ResponseRange = r
		case op.GetRequestPut() != nil:
			p := op.GetRequestPut()
			prev, err := s.checkPut(v, p)
			if err != nil {
				return 0, fmt.Errorf("server: txn put: %w", err)
			}
			resp.Responses[i].Response.(*pb.ResponseOp_ResponsePut).ResponsePut = executePut(v, p, prev)
		case op.GetRequestDeleteRange() != nil:
			resp.Responses[i].Response.(*pb.ResponseOp_ResponseDeleteRange).ResponseDeleteRange = executeDeleteRange(v, op.GetRequestDeleteRange())
		case op.GetRequestTxn() != nil:
			sub := resp.Responses[i].Response.(*pb.ResponseOp_ResponseTxn).ResponseTxn
			n, err := s.runTxnOps(v, op.GetRequestTxn(), path[1+nested:], sub)
			if err != nil {
				return 0, err
			}
			nested += n + 1
		}
	}
	return nested, nil
}

// isTxnReadOnly: a txn with only ranges on both branches never needs raft.
func isTxnReadOnly(rt *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{rt.Success, rt.Failure} {
		for _, op := range ops {
			if op.GetRequestRange() == nil {
				return false
			}
		}
	}
	return true
}

// isTxnSerializable: a read-only txn whose ranges all ask for serializable reads.
func isTxnSerializable(rt *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{rt.Success, rt.Failure} {
		for _, op := range ops {
			if r := op.GetRequestRange(); r == nil || !r.Serializable {
				return false
			}
		}
	}
	return true
}
