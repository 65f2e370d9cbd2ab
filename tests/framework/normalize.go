package framework

import (
	"bytes"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// gogoMessage is what etcd's (gogoproto-generated) messages implement.
type gogoMessage interface {
	Marshal() ([]byte, error)
	Unmarshal([]byte) error
	String() string
}

// StripHeader zeroes the member-specific header fields (cluster_id,
// member_id, raft_term) and keeps revision.
func StripHeader(h *pb.ResponseHeader) {
	if h == nil {
		return
	}
	h.ClusterId, h.MemberId, h.RaftTerm = 0, 0, 0
}

// Normalize returns a deep copy of a KV response (Range, Put, DeleteRange,
// Txn, Compaction — or any etcd message) with every ResponseHeader in it,
// including those nested in txn responses, stripped by StripHeader. It
// panics on a message type it cannot copy.
func Normalize[T gogoMessage](m T) T {
	c := clone(m)
	strip(c)
	return c
}

func clone[T gogoMessage](m T) T {
	var zero T
	if any(m) == nil {
		return zero
	}
	b, err := m.Marshal()
	if err != nil {
		panic(fmt.Sprintf("normalize: marshal %T: %v", m, err))
	}
	var c gogoMessage
	switch any(m).(type) {
	case *pb.RangeResponse:
		c = &pb.RangeResponse{}
	case *pb.PutResponse:
		c = &pb.PutResponse{}
	case *pb.DeleteRangeResponse:
		c = &pb.DeleteRangeResponse{}
	case *pb.TxnResponse:
		c = &pb.TxnResponse{}
	case *pb.CompactionResponse:
		c = &pb.CompactionResponse{}
	case *pb.StatusResponse:
		c = &pb.StatusResponse{}
	case *pb.MemberListResponse:
		c = &pb.MemberListResponse{}
	case *pb.HashKVResponse:
		c = &pb.HashKVResponse{}
	case *pb.LeaseGrantResponse:
		c = &pb.LeaseGrantResponse{}
	case *pb.LeaseRevokeResponse:
		c = &pb.LeaseRevokeResponse{}
	default:
		panic(fmt.Sprintf("normalize: unsupported type %T", m))
	}
	if err := c.Unmarshal(b); err != nil {
		panic(fmt.Sprintf("normalize: unmarshal %T: %v", m, err))
	}
	return c.(T)
}

func strip(m any) {
	switch r := m.(type) {
	case *pb.RangeResponse:
		if r != nil {
			StripHeader(r.Header)
		}
	case *pb.PutResponse:
		if r != nil {
			StripHeader(r.Header)
		}
	case *pb.DeleteRangeResponse:
		if r != nil {
			StripHeader(r.Header)
		}
	case *pb.CompactionResponse:
		if r != nil {
			StripHeader(r.Header)
		}
	case *pb.StatusResponse:
		if r != nil {
			StripHeader(r.Header)
		}
	case *pb.MemberListResponse:
		if r != nil {
			StripHeader(r.Header)
		}
	case *pb.HashKVResponse:
		if r != nil {
			StripHeader(r.Header)
		}
	case *pb.LeaseGrantResponse:
		if r != nil {
			StripHeader(r.Header)
		}
	case *pb.LeaseRevokeResponse:
		if r != nil {
			StripHeader(r.Header)
		}
	case *pb.TxnResponse:
		if r == nil {
			return
		}
		StripHeader(r.Header)
		for _, op := range r.Responses {
			switch v := op.GetResponse().(type) {
			case *pb.ResponseOp_ResponseRange:
				strip(v.ResponseRange)
			case *pb.ResponseOp_ResponsePut:
				strip(v.ResponsePut)
			case *pb.ResponseOp_ResponseDeleteRange:
				strip(v.ResponseDeleteRange)
			case *pb.ResponseOp_ResponseTxn:
				strip(v.ResponseTxn)
			}
		}
	}
}

// WireEqual reports whether two messages encode to the same protobuf bytes
// (etcd's generated marshalling is deterministic: fields in number order,
// no maps in KV messages). Presence of an empty sub-message counts.
func WireEqual(a, b gogoMessage) bool {
	ab, err1 := a.Marshal()
	bb, err2 := b.Marshal()
	return err1 == nil && err2 == nil && bytes.Equal(ab, bb)
}
