package framework

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
)

// KV.RangeStream is etcd 3.7's (rpc.proto: `rpc RangeStream(RangeRequest) returns
// (stream RangeStreamResponse)`, `message RangeStreamResponse { RangeResponse
// range_response = 1; }`). This module is on etcd 3.6.16's api, which has neither:
// RangeStream calls the method by name with a codec of its own, sending 3.6.16's
// RangeRequest and reading each response as bytes whose field 1 is a RangeResponse.

// RangeStreamMethod is the full gRPC method name of KV.RangeStream.
const RangeStreamMethod = "/etcdserverpb.KV/RangeStream"

// DecodeRangeStreamResponse decodes a RangeStreamResponse's range_response (field 1;
// repeated occurrences merge, as protobuf's do). Any other field is an error.
func DecodeRangeStreamResponse(b []byte) (*pb.RangeResponse, error) {
	resp := &pb.RangeResponse{}
	for len(b) > 0 {
		tag, n := binary.Uvarint(b)
		if n <= 0 || tag != 1<<3|2 {
			return nil, fmt.Errorf("RangeStreamResponse: unexpected tag %d", tag)
		}
		b = b[n:]
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return nil, fmt.Errorf("RangeStreamResponse: bad length")
		}
		part := &pb.RangeResponse{}
		if err := part.Unmarshal(b[n : n+int(l)]); err != nil {
			return nil, err
		}
		MergeRange(resp, part)
		b = b[n+int(l):]
	}
	return resp, nil
}

// MergeRange is proto.Merge for RangeResponse: kvs appended, set fields replaced.
func MergeRange(dst, src *pb.RangeResponse) {
	if src.Header != nil {
		dst.Header = src.Header
	}
	dst.Kvs = append(dst.Kvs, src.Kvs...)
	if src.More {
		dst.More = true
	}
	if src.Count != 0 {
		dst.Count = src.Count
	}
}

// RangeStream calls KV.RangeStream on cc and hands each chunk, with its encoded size,
// to f; it returns the status that ended the stream (nil at io.EOF) or f's error.
func RangeStream(cx context.Context, cc grpc.ClientConnInterface, r *pb.RangeRequest, f func(chunk *pb.RangeResponse, size int) error) error {
	cx, cancel := context.WithCancel(cx)
	defer cancel()
	desc := &grpc.StreamDesc{StreamName: "RangeStream", ServerStreams: true}
	st, err := cc.NewStream(cx, desc, RangeStreamMethod, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return err
	}
	if err := st.SendMsg(r); err != nil {
		return err
	}
	if err := st.CloseSend(); err != nil {
		return err
	}
	for {
		var b []byte
		if err := st.RecvMsg(&b); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		c, err := DecodeRangeStreamResponse(b)
		if err != nil {
			return err
		}
		if err := f(c, len(b)); err != nil {
			return err
		}
	}
}
