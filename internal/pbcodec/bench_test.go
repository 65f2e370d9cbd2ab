package pbcodec

import (
	"bytes"
	"testing"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/mvccpb"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// The hot messages, encoded and decoded the way the member did before (proto: protobuf-go
// through reflection; codec-grpc: gRPC's proto codec) and does now (vt: vtprotobuf's
// code; codec-pbcodec: this package's codec). Run:
//
//	go test -run '^$' -bench . -benchmem ./internal/pbcodec/

func putRequest() *pb.InternalRaftRequest {
	return &pb.InternalRaftRequest{
		Id:     0x1234_5678_9abc,
		Header: &pb.RequestHeader{Username: "root", AuthRevision: 12},
		Put:    &pb.PutRequest{Key: []byte("/registry/pods/default/pod-a"), Value: bytes.Repeat([]byte("v"), 256), Lease: 0x55aa, PrevKv: true},
	}
}

func watchResponse(n int) *pb.WatchResponse {
	wr := &pb.WatchResponse{Header: &pb.ResponseHeader{ClusterId: 0x1234567890, MemberId: 0x987654321, Revision: 1 << 20, RaftTerm: 7}, WatchId: 3}
	for i := range n {
		wr.Events = append(wr.Events, &mvccpb.Event{Kv: keyValue(i), PrevKv: keyValue(i + 1)})
	}
	return wr
}

func batchRequest(n int) *pb.InternalRaftRequest {
	r := &pb.InternalRaftRequest{}
	for i := range n {
		p := putRequest()
		p.Id += uint64(i)
		r.Batch = append(r.Batch, p)
	}
	return r
}

type vtMarshaler interface {
	proto.Message
	MarshalVT() ([]byte, error)
}

// benchMarshal: proto.Marshal against MarshalVT, and gRPC's codec against this one
// (which also pools the buffer of a large message, freed as gRPC frees it once sent).
func benchMarshal(b *testing.B, m vtMarshaler) {
	b.Run("encode=proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := proto.Marshal(m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode=vt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := m.MarshalVT(); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, c := range []struct {
		name  string
		codec encoding.CodecV2
	}{{"grpc", fallback}, {"pbcodec", Codec{}}} {
		b.Run("encode=codec-"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				data, err := c.codec.Marshal(m)
				if err != nil {
					b.Fatal(err)
				}
				data.Free()
			}
		})
	}
}

// benchUnmarshal: proto.Unmarshal against UnmarshalVT, and both codecs.
func benchUnmarshal[T any, P interface {
	*T
	proto.Message
	UnmarshalVT([]byte) error
}](b *testing.B, m P) {
	data, err := proto.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("decode=proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := proto.Unmarshal(data, P(new(T))); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode=vt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := P(new(T)).UnmarshalVT(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, c := range []struct {
		name  string
		codec encoding.CodecV2
	}{{"grpc", fallback}, {"pbcodec", Codec{}}} {
		b.Run("decode=codec-"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			in := mem.BufferSlice{mem.SliceBuffer(data)}
			for b.Loop() {
				if err := c.codec.Unmarshal(in, P(new(T))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkKeyValue(b *testing.B) {
	kv := keyValue(1)
	benchMarshal(b, kv)
	benchUnmarshal(b, kv)
}

// BenchmarkPutRequestEncode is a member's propose: a client's PutRequest in an
// InternalRaftRequest, encoded as the raft entry's data.
func BenchmarkPutRequestEncode(b *testing.B) { benchMarshal(b, putRequest()) }

// BenchmarkInternalRaftRequestDecode is the apply loop's decode of an entry: one put,
// and a batch of 16.
func BenchmarkInternalRaftRequestDecode(b *testing.B) {
	b.Run("put", func(b *testing.B) { benchUnmarshal(b, putRequest()) })
	b.Run("batch16", func(b *testing.B) { benchUnmarshal(b, batchRequest(16)) })
}

// BenchmarkRangeResponse100 is the answer of a Range of 100 keys of 256-byte values.
func BenchmarkRangeResponse100(b *testing.B) {
	resp := rangeResponse(100)
	benchMarshal(b, resp)
	benchUnmarshal(b, resp)
}

// BenchmarkWatchResponse10 is a watch response of 10 events with their previous values.
func BenchmarkWatchResponse10(b *testing.B) { benchMarshal(b, watchResponse(10)) }
