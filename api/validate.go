package api

import (
	"net"
	"net/url"

	"github.com/google/btree"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// Request validation done before a request reaches the member, in etcd's order and with
// etcd's errors (server/etcdserver/api/v3rpc/key.go in etcd 3.6).

func checkRangeRequest(r *pb.RangeRequest) error {
	if len(r.GetKey()) == 0 {
		return ErrGRPCEmptyKey
	}
	if _, ok := pb.RangeRequest_SortOrder_name[int32(r.GetSortOrder())]; !ok {
		return ErrGRPCInvalidSortOption
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(r.GetSortTarget())]; !ok {
		return ErrGRPCInvalidSortOption
	}
	return nil
}

func checkPutRequest(r *pb.PutRequest) error {
	if len(r.GetKey()) == 0 {
		return ErrGRPCEmptyKey
	}
	if r.GetIgnoreValue() && len(r.GetValue()) != 0 {
		return ErrGRPCValueProvided
	}
	if r.GetIgnoreLease() && r.GetLease() != 0 {
		return ErrGRPCLeaseProvided
	}
	return nil
}

func checkDeleteRequest(r *pb.DeleteRangeRequest) error {
	if len(r.GetKey()) == 0 {
		return ErrGRPCEmptyKey
	}
	return nil
}

// checkTxn is everything etcd checks on a Txn before running it: op counts and each op
// (recursively), then duplicate keys in the success branch, then in the failure branch;
// then Cairn's bound on the txn's total size (txnTotalOpsFactor), so a txn etcd refuses
// gets etcd's error.
func checkTxn(r *pb.TxnRequest, maxTxnOps int) error {
	if err := checkTxnRequest(r, maxTxnOps); err != nil {
		return err
	}
	if err := checkBranchKeys(r.GetSuccess()); err != nil {
		return err
	}
	if err := checkBranchKeys(r.GetFailure()); err != nil {
		return err
	}
	if limit := txnTotalOpsFactor * maxTxnOps; countTxnOps(r, limit) > limit {
		return status.Errorf(codes.InvalidArgument,
			"cairn: txn has more than %d compares and operations counting every nested txn (%d x --max-txn-ops)",
			limit, txnTotalOpsFactor)
	}
	return nil
}

// txnTotalOpsFactor bounds a txn's compares plus operations, counted over every nested
// txn and both branches, to this many times --max-txn-ops. etcd's own limit applies per
// level (a nested txn may use what its parent leaves of the budget): that bounds the
// depth (to --max-txn-ops + 1) but not the total, as each level can multiply the ops
// below it. With --max-txn-ops N it allows 3 x (2^N - 1) compares and ops in all (one
// compare and two nested txns per level), and for N = 128 ~2^70 on the path that runs,
// so only the request size bounds them: 1.5 MiB carries ~120,000 compares or ranges,
// each of which may read the whole keyspace on every member's apply loop (and again at
// each restart). etcd accepts those (10,000 compares over 1,000 keys took etcd 3.6.16
// 6.3 s to apply). A txn without nesting holds at most 3 x --max-txn-ops (compares,
// success, failure), so 4 x accepts every one of those and bounds any txn's reads to 4/3
// of the largest of them.
const txnTotalOpsFactor = 4

// countTxnOps counts r's compares and operations at every level (a nested txn counts as
// one operation plus its own), stopping once the count is past limit.
func countTxnOps(r *pb.TxnRequest, limit int) int {
	n := len(r.GetCompare()) + len(r.GetSuccess()) + len(r.GetFailure())
	for _, branch := range [][]*pb.RequestOp{r.GetSuccess(), r.GetFailure()} {
		for _, op := range branch {
			if n > limit {
				return n
			}
			if t := op.GetRequestTxn(); t != nil {
				n += countTxnOps(t, limit-n)
			}
		}
	}
	return n
}

// checkTxnRequest limits the largest of len(compare), len(success), len(failure) to
// maxTxnOps; a nested txn gets what its parent leaves (maxTxnOps minus that largest).
func checkTxnRequest(r *pb.TxnRequest, maxTxnOps int) error {
	opc := len(r.GetCompare())
	if opc < len(r.GetSuccess()) {
		opc = len(r.GetSuccess())
	}
	if opc < len(r.GetFailure()) {
		opc = len(r.GetFailure())
	}
	if opc > maxTxnOps {
		return ErrGRPCTooManyOps
	}
	for _, c := range r.GetCompare() {
		if len(c.GetKey()) == 0 {
			return ErrGRPCEmptyKey
		}
	}
	for _, u := range r.GetSuccess() {
		if err := checkRequestOp(u, maxTxnOps-opc); err != nil {
			return err
		}
	}
	for _, u := range r.GetFailure() {
		if err := checkRequestOp(u, maxTxnOps-opc); err != nil {
			return err
		}
	}
	return nil
}

func checkRequestOp(u *pb.RequestOp, maxTxnOps int) error {
	switch uv := u.GetRequest().(type) {
	case *pb.RequestOp_RequestRange:
		return checkRangeRequest(uv.RequestRange)
	case *pb.RequestOp_RequestPut:
		return checkPutRequest(uv.RequestPut)
	case *pb.RequestOp_RequestDeleteRange:
		return checkDeleteRequest(uv.RequestDeleteRange)
	case *pb.RequestOp_RequestTxn:
		return checkTxnRequest(uv.RequestTxn, maxTxnOps)
	default:
		// An op with no request set: etcd answers "key not found".
		return ErrGRPCKeyNotFound
	}
}

// keyInterval is a half-open key interval [begin, end) where an empty end means
// "to infinity", as etcd's adt.StringAffineInterval compares them. A delete of a single
// key is the point [key, key+"\x00"); a delete whose range_end is "\x00" (every key from
// key on, to the store) is [key, infinity). etcd's own check reads that "\x00" literally,
// as [key, "\x00") holding no key, so it lets [DeleteRange(a, "\x00"), Put(b)] through
// (and panics applying it when the put has ignore_value); Cairn refuses it as a
// duplicate key instead.
type keyInterval struct {
	begin, end string
}

// deleteInterval is the interval a DeleteRange removes.
func deleteInterval(d *pb.DeleteRangeRequest) keyInterval {
	k, end := string(d.GetKey()), d.GetRangeEnd()
	switch {
	case len(end) == 0:
		return keyInterval{k, k + "\x00"}
	case len(end) == 1 && end[0] == 0:
		return keyInterval{k, ""}
	}
	return keyInterval{k, string(end)}
}

// empty reports whether iv holds no key (an end at or below its begin).
func (iv keyInterval) empty() bool { return iv.end != "" && iv.end <= iv.begin }

// txnKeys is what one txn branch writes, for checkIntervals: its put keys and its
// deleted intervals (merged into disjoint ones, ordered by begin), nested txns included.
// Both are ordered so a point lookup, or "any put in this interval", is one search.
type txnKeys struct {
	puts *btree.BTreeG[string]
	dels *btree.BTreeG[keyInterval]
}

// keysCheck is one checkIntervals run: its trees share node free lists (a tree's own
// list costs more than the few keys most nested branches hold).
type keysCheck struct {
	putsFree *btree.FreeListG[string]
	delsFree *btree.FreeListG[keyInterval]
}

func (c *keysCheck) newTxnKeys() *txnKeys {
	return &txnKeys{
		puts: btree.NewWithFreeListG(32, func(a, b string) bool { return a < b }, c.putsFree),
		dels: btree.NewWithFreeListG(32, func(a, b keyInterval) bool { return a.begin < b.begin }, c.delsFree),
	}
}

// deleted reports whether a deleted interval holds k: only the last one beginning at
// or before k can, the intervals being disjoint.
func (t *txnKeys) deleted(k string) bool {
	found := false
	t.dels.DescendLessOrEqual(keyInterval{begin: k}, func(iv keyInterval) bool {
		found = iv.end == "" || k < iv.end
		return false
	})
	return found
}

// putIn reports whether a put key lies in iv.
func (t *txnKeys) putIn(iv keyInterval) bool {
	found := false
	t.puts.AscendGreaterOrEqual(iv.begin, func(k string) bool {
		found = iv.end == "" || k < iv.end
		return false
	})
	return found
}

// addDel inserts iv, merging it with the intervals it overlaps or touches.
func (t *txnKeys) addDel(iv keyInterval) {
	if iv.empty() {
		return
	}
	if prev, ok := t.predecessor(iv.begin); ok && (prev.end == "" || prev.end >= iv.begin) {
		t.dels.Delete(prev)
		iv.begin = prev.begin
		if prev.end == "" || (iv.end != "" && prev.end > iv.end) {
			iv.end = prev.end
		}
	}
	var covered []keyInterval
	t.dels.AscendGreaterOrEqual(keyInterval{begin: iv.begin}, func(next keyInterval) bool {
		if iv.end != "" && next.begin > iv.end {
			return false
		}
		covered = append(covered, next)
		return true
	})
	for _, next := range covered {
		t.dels.Delete(next)
		if iv.end != "" && (next.end == "" || next.end > iv.end) {
			iv.end = next.end
		}
	}
	t.dels.ReplaceOrInsert(iv)
}

func (t *txnKeys) predecessor(begin string) (keyInterval, bool) {
	var out keyInterval
	ok := false
	t.dels.DescendLessOrEqual(keyInterval{begin: begin}, func(iv keyInterval) bool {
		out, ok = iv, true
		return false
	})
	return out, ok
}

// writesOver reports whether later (a nested txn, or a branch's own puts, that comes
// after t's ops) puts a key t puts or deletes. Deletes in later do not conflict with
// puts in t: etcd checks each put only against the deletes before it at each level.
// It walks the smaller side, looking each element up in the other.
func (t *txnKeys) writesOver(later *txnKeys) bool {
	small, big := later.puts, t.puts
	if small.Len() > big.Len() {
		small, big = big, small
	}
	dup := false
	small.Ascend(func(k string) bool {
		dup = big.Has(k)
		return !dup
	})
	if dup {
		return true
	}
	if later.puts.Len() <= t.dels.Len() {
		later.puts.Ascend(func(k string) bool {
			dup = t.deleted(k)
			return !dup
		})
	} else {
		t.dels.Ascend(func(iv keyInterval) bool {
			dup = later.putIn(iv)
			return !dup
		})
	}
	return dup
}

// union returns a and b's keys together, moving the smaller into the larger (each key
// moves O(log n) times over a whole check).
func union(a, b *txnKeys) *txnKeys {
	if a.puts.Len() < b.puts.Len() {
		a.puts, b.puts = b.puts, a.puts
	}
	b.puts.Ascend(func(k string) bool {
		a.puts.ReplaceOrInsert(k)
		return true
	})
	b.puts.Clear(true) // its nodes serve the next trees
	if a.dels.Len() < b.dels.Len() {
		a.dels, b.dels = b.dels, a.dels
	}
	b.dels.Ascend(func(iv keyInterval) bool {
		a.addDel(iv)
		return true
	})
	b.dels.Clear(true)
	return a
}

// checkIntervals rejects a list of ops (one txn branch) that writes a key twice: two puts
// of one key, or a put of a key inside a deleted range, including ops in nested txns.
// Deletes may overlap each other. A nested txn's then- and else-branch may put the same
// key (only one of them runs). The rules are etcd's v3rpc checkIntervals: at each level
// a nested txn's puts are checked against the level's own deletes and the puts and
// deletes of the nested txns before it; the level's own puts against everything. It
// returns the branch's put keys and deleted intervals for the enclosing level.
//
// Each level's keys are kept ordered and merged smaller-into-larger, so the whole check
// is O(n log² n) in the number of ops; a linear scan per put cost O(puts x deletes)
// (about 30 s for a 1.5 MiB nested txn).
func checkIntervals(reqs []*pb.RequestOp) (*txnKeys, error) {
	c := &keysCheck{putsFree: btree.NewFreeListG[string](btree.DefaultFreeListSize), delsFree: btree.NewFreeListG[keyInterval](btree.DefaultFreeListSize)}
	return c.branch(reqs)
}

// checkBranchKeys is checkIntervals' verdict on a txn's branch. A branch of at most one
// put or delete and no nested txn cannot write a key twice: it is let through without
// building the ordered sets, whose allocation was 13% of a member's allocations under
// txn-put (most txns, Kubernetes' included, are one compare and one write).
func checkBranchKeys(reqs []*pb.RequestOp) error {
	writes := 0
	for _, req := range reqs {
		switch req.GetRequest().(type) {
		case *pb.RequestOp_RequestPut, *pb.RequestOp_RequestDeleteRange:
			writes++
		case *pb.RequestOp_RequestTxn:
			writes += 2 // nested: always the whole check
		}
		if writes > 1 {
			_, err := checkIntervals(reqs)
			return err
		}
	}
	return nil
}

func (c *keysCheck) branch(reqs []*pb.RequestOp) (*txnKeys, error) {
	acc := c.newTxnKeys()
	for _, req := range reqs {
		if tv, ok := req.GetRequest().(*pb.RequestOp_RequestDeleteRange); ok && tv.RequestDeleteRange != nil {
			acc.addDel(deleteInterval(tv.RequestDeleteRange))
		}
	}
	for _, req := range reqs {
		tv, ok := req.GetRequest().(*pb.RequestOp_RequestTxn)
		if !ok {
			continue
		}
		then, err := c.branch(tv.RequestTxn.GetSuccess())
		if err != nil {
			return nil, err
		}
		els, err := c.branch(tv.RequestTxn.GetFailure())
		if err != nil {
			return nil, err
		}
		// Only one branch runs: they may write the same keys.
		nested := union(then, els)
		if acc.writesOver(nested) {
			return nil, ErrGRPCDuplicateKey
		}
		acc = union(acc, nested)
	}
	own := c.newTxnKeys()
	for _, req := range reqs {
		tv, ok := req.GetRequest().(*pb.RequestOp_RequestPut)
		if !ok || tv.RequestPut == nil {
			continue
		}
		if _, dup := own.puts.ReplaceOrInsert(string(tv.RequestPut.GetKey())); dup {
			return nil, ErrGRPCDuplicateKey
		}
	}
	if acc.writesOver(own) {
		return nil, ErrGRPCDuplicateKey
	}
	return union(acc, own), nil
}

// validatePeerURLs checks member peer URLs as etcd's types.NewURLs does: each an
// http(s) or unix(s) URL of a host:port with no path.
func validatePeerURLs(us []string) error {
	for _, raw := range us {
		u, err := url.Parse(raw)
		if err != nil {
			return ErrGRPCMemberBadURLs
		}
		switch u.Scheme {
		case "http", "https", "unix", "unixs":
		default:
			return ErrGRPCMemberBadURLs
		}
		if _, _, err := net.SplitHostPort(u.Host); err != nil {
			return ErrGRPCMemberBadURLs
		}
		if u.Path != "" {
			return ErrGRPCMemberBadURLs
		}
	}
	return nil
}
