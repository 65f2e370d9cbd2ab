package pbcodec

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// Name is the codec's name: gRPC's proto codec's, so the content subtype on the wire
// ("application/grpc", "application/grpc+proto") does not change.
const Name = grpcproto.Name

// VTMessage is a message with vtprotobuf's generated marshal, unmarshal and size.
type VTMessage interface {
	SizeVT() int
	MarshalToSizedBufferVT(dAtA []byte) (int, error)
	UnmarshalVT(dAtA []byte) error
}

// fallback is gRPC's own proto codec, taken before anyone could register this codec
// under the same name.
var fallback = encoding.GetCodecV2(grpcproto.Name)

// Codec is the codec (encoding.CodecV2). Its zero value is ready to use.
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

// Encoded is a message already in its wire form, for a sender that writes the bytes
// itself (a response assembled from cached encodings, a peer envelope): Marshal hands
// them to gRPC as they are, without encoding anything again.
type Encoded struct {
	buf  mem.Buffer
	bufs mem.BufferSlice // instead of buf: the encoding in parts (EncodedSlice)
}

// EncodedBytes is the message whose encoding is b. It may be sent any number of times;
// b must not change meanwhile.
func EncodedBytes(b []byte) *Encoded { return &Encoded{buf: mem.SliceBuffer(b)} }

// EncodedPooled is the message whose encoding is *buf, taken from pool. It is sent once:
// gRPC puts buf back into pool once the bytes are written.
func EncodedPooled(buf *[]byte, pool mem.BufferPool) *Encoded {
	return &Encoded{buf: mem.NewBuffer(buf, pool)}
}

// EncodedSlice is the message whose encoding is the concatenation of bufs, which gRPC
// frees once the bytes are written. It is sent once.
func EncodedSlice(bufs mem.BufferSlice) *Encoded { return &Encoded{bufs: bufs} }

// Bytes is the encoding (of an EncodedSlice, a copy of it).
func (e *Encoded) Bytes() []byte {
	if e.buf == nil {
		return e.bufs.Materialize()
	}
	return e.buf.ReadOnlyData()
}

// Marshal encodes v, into a pooled buffer if it is large enough to be worth pooling.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	if e, ok := v.(*Encoded); ok {
		if e.buf == nil {
			return e.bufs, nil
		}
		return mem.BufferSlice{e.buf}, nil
	}
	m, ok := v.(VTMessage)
	if !ok {
		return fallback.Marshal(v)
	}
	size := m.SizeVT()
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf := make([]byte, size)
		if _, err := m.MarshalToSizedBufferVT(buf); err != nil {
			return nil, fmt.Errorf("pbcodec: marshal %T: %w", v, err)
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	if _, err := m.MarshalToSizedBufferVT((*buf)[:size]); err != nil {
		pool.Put(buf)
		return nil, fmt.Errorf("pbcodec: marshal %T: %w", v, err)
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// RawDecoder is a message that decodes itself: Unmarshal hands it the received bytes,
// which are gRPC's and valid only during the call (it copies what it keeps), so a
// container's parts can be decoded in place instead of copied out first.
type RawDecoder interface{ DecodeRaw(b []byte) error }

// Unmarshal decodes data into v, which gRPC always hands over new (UnmarshalVT merges
// into what v holds, as proto.Merge would).
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	var decode func([]byte) error
	switch m := v.(type) {
	case RawDecoder:
		decode = m.DecodeRaw
	case VTMessage:
		decode = m.UnmarshalVT
	default:
		return fallback.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return decode(buf.ReadOnlyData())
}

// Name is "proto".
func (Codec) Name() string { return Name }
