package api

import (
	"net"
	"net/url"

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
// (recursively), then duplicate keys in the success branch, then in the failure branch.
func checkTxn(r *pb.TxnRequest, maxTxnOps int) error {
	if err := checkTxnRequest(r, maxTxnOps); err != nil {
		return err
	}
	if _, _, err := checkIntervals(r.GetSuccess()); err != nil {
		return err
	}
	if _, _, err := checkIntervals(r.GetFailure()); err != nil {
		return err
	}
	return nil
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
// key is the point [key, key+"\x00").
type keyInterval struct {
	begin, end string
}

// containsKey reports whether the point interval of k overlaps iv. With etcd's affine
// comparison that is begin <= k < end (end "" = infinity). A delete whose range_end is
// "\x00" (meaning "every key from key on" to the store) is the literal interval
// [key, "\x00") here, which contains no key: etcd's check has the same blind spot.
func (iv keyInterval) containsKey(k string) bool {
	if k < iv.begin {
		return false
	}
	return iv.end == "" || k < iv.end
}

type intervalSet []keyInterval

func (s intervalSet) containsKey(k string) bool {
	for _, iv := range s {
		if iv.containsKey(k) {
			return true
		}
	}
	return false
}

// checkIntervals rejects a list of ops (one txn branch) that writes a key twice: two puts
// of one key, or a put of a key inside a deleted range, including ops in nested txns.
// Deletes may overlap each other. A nested txn's then- and else-branch may put the same
// key (only one of them runs). It returns the branch's put keys and deleted intervals for
// the enclosing level, as etcd's v3rpc checkIntervals does.
func checkIntervals(reqs []*pb.RequestOp) (map[string]struct{}, intervalSet, error) {
	var dels intervalSet
	for _, req := range reqs {
		tv, ok := req.GetRequest().(*pb.RequestOp_RequestDeleteRange)
		if !ok || tv.RequestDeleteRange == nil {
			continue
		}
		d := tv.RequestDeleteRange
		if len(d.GetRangeEnd()) != 0 {
			dels = append(dels, keyInterval{string(d.GetKey()), string(d.GetRangeEnd())})
		} else {
			k := string(d.GetKey())
			dels = append(dels, keyInterval{k, k + "\x00"})
		}
	}

	puts := make(map[string]struct{})
	for _, req := range reqs {
		tv, ok := req.GetRequest().(*pb.RequestOp_RequestTxn)
		if !ok {
			continue
		}
		putsThen, delsThen, err := checkIntervals(tv.RequestTxn.GetSuccess())
		if err != nil {
			return nil, dels, err
		}
		putsElse, delsElse, err := checkIntervals(tv.RequestTxn.GetFailure())
		if err != nil {
			return nil, dels, err
		}
		for k := range putsThen {
			if _, dup := puts[k]; dup {
				return nil, dels, ErrGRPCDuplicateKey
			}
			if dels.containsKey(k) {
				return nil, dels, ErrGRPCDuplicateKey
			}
			puts[k] = struct{}{}
		}
		for k := range putsElse {
			if _, dup := puts[k]; dup {
				if _, inThen := putsThen[k]; !inThen {
					return nil, dels, ErrGRPCDuplicateKey
				}
			}
			if dels.containsKey(k) {
				return nil, dels, ErrGRPCDuplicateKey
			}
			puts[k] = struct{}{}
		}
		dels = append(dels, delsThen...)
		dels = append(dels, delsElse...)
	}

	for _, req := range reqs {
		tv, ok := req.GetRequest().(*pb.RequestOp_RequestPut)
		if !ok || tv.RequestPut == nil {
			continue
		}
		k := string(tv.RequestPut.GetKey())
		if _, dup := puts[k]; dup {
			return nil, dels, ErrGRPCDuplicateKey
		}
		if dels.containsKey(k) {
			return nil, dels, ErrGRPCDuplicateKey
		}
		puts[k] = struct{}{}
	}
	return puts, dels, nil
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
