package api

import (
	"context"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"

	"github.com/cairn-kv/cairn/internal/pbcodec"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// rangeEncoder is a Backend that can answer a Range with its KVs already encoded (the
// member does: server.RangeEncoded). resp carries the header, More and Count; kvs is
// the encoded kvs field, which goes between the header and More on the wire. ok false:
// r is not served that way, use Range.
type rangeEncoder interface {
	RangeEncoded(ctx context.Context, r *pb.RangeRequest) (resp *pb.RangeResponse, kvs mem.BufferSlice, ok bool, err error)
}

// kvServiceDesc is the KV service with Range served by kvRangeHandler: the gRPC answer
// is the response's encoding assembled from the member's encoded KVs, not a
// RangeResponse for the codec to encode (a large Range held its KVs twice, decoded and
// encoded, and spent most of its time decoding and encoding them again).
func kvServiceDesc() *grpc.ServiceDesc {
	d := pb.KV_ServiceDesc
	d.Methods = slices.Clone(d.Methods)
	for i := range d.Methods {
		if d.Methods[i].MethodName == "Range" {
			d.Methods[i].Handler = kvRangeHandler
		}
	}
	return &d
}

// kvRangeHandler is the generated Range handler calling kvServer.rangeWire.
func kvRangeHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(pb.RangeRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	handler := func(ctx context.Context, req any) (any, error) {
		return srv.(*kvServer).rangeWire(ctx, req.(*pb.RangeRequest))
	}
	if interceptor == nil {
		return handler(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: pb.KV_Range_FullMethodName}
	return interceptor(ctx, in, info, handler)
}

// rangeWire is Range answered, when the backend can, as the response's encoding
// (a *pbcodec.Encoded the codec sends as is); the same bytes Range's answer encodes to.
func (s *kvServer) rangeWire(ctx context.Context, r *pb.RangeRequest) (any, error) {
	enc, ok := s.b.(rangeEncoder)
	if !ok {
		return s.Range(ctx, r)
	}
	if err := checkRangeRequest(r); err != nil {
		return nil, err
	}
	resp, kvs, ok, err := enc.RangeEncoded(ctx, r)
	if !ok {
		return s.Range(ctx, r)
	}
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.b, &resp.Header)
	e, err := encodeRangeResponse(resp, kvs)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// encodeRangeResponse is resp's encoding with kvs, the encoded kvs field, in place of
// resp.Kvs (which is empty): fields in ascending order, as MarshalVT writes them.
func encodeRangeResponse(resp *pb.RangeResponse, kvs mem.BufferSlice) (*pbcodec.Encoded, error) {
	head, err := (&pb.RangeResponse{Header: resp.Header}).MarshalVT()
	if err != nil {
		return nil, err
	}
	tail, err := (&pb.RangeResponse{More: resp.More, Count: resp.Count}).MarshalVT()
	if err != nil {
		return nil, err
	}
	bufs := make(mem.BufferSlice, 0, len(kvs)+2)
	bufs = append(bufs, mem.SliceBuffer(head))
	bufs = append(bufs, kvs...)
	if len(tail) > 0 {
		bufs = append(bufs, mem.SliceBuffer(tail))
	}
	return pbcodec.EncodedSlice(bufs), nil
}
