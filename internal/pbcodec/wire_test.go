package pbcodec

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cairn-kv/cairn/proto/authpb"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/mvccpb"
	"github.com/cairn-kv/cairn/proto/peerpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// vtFiles are the .proto files make proto generates VT methods for.
var vtFiles = map[string]bool{
	"mvccpb/kv.proto": true, "authpb/auth.proto": true, "etcdserverpb/rpc.proto": true,
	"etcdserverpb/raft_internal.proto": true, "peerpb/peer.proto": true,
}

// vtTypes is every message type of those files, checked to have VT methods.
func vtTypes(t testing.TB) []protoreflect.MessageType {
	// The packages' init registers them; name one type of each so they are linked in.
	_ = []proto.Message{&mvccpb.KeyValue{}, &authpb.User{}, &pb.InternalRaftRequest{}, &peerpb.Envelope{}}
	var types []protoreflect.MessageType
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		if vtFiles[mt.Descriptor().ParentFile().Path()] {
			types = append(types, mt)
		}
		return true
	})
	if len(types) < 100 {
		t.Fatalf("found %d message types of the generated files, want all of them", len(types))
	}
	for _, mt := range types {
		if _, ok := mt.New().Interface().(VTMessage); !ok {
			t.Fatalf("%s has no VT methods", mt.Descriptor().FullName())
		}
	}
	return types
}

// TestVTWireIdentical: for random messages of every generated type, MarshalVT writes
// the bytes of deterministic proto.Marshal, SizeVT is their length, and UnmarshalVT
// reads them back to an equal message (unknown fields included).
func TestVTWireIdentical(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 3))
	for _, mt := range vtTypes(t) {
		for i := range 200 {
			m := mt.New()
			fill(r, m, 3)
			if i%5 == 0 { // unknown fields are carried through as protobuf-go does
				var u []byte
				u = protowire.AppendTag(u, 4095, protowire.VarintType)
				u = protowire.AppendVarint(u, r.Uint64())
				m.SetUnknown(u)
			}
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(m.Interface())
			if err != nil {
				t.Fatal(err)
			}
			vt := m.Interface().(interface {
				VTMessage
				MarshalVT() ([]byte, error)
			})
			got, err := vt.MarshalVT()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: MarshalVT\n%x\nproto.Marshal\n%x\nof %v", mt.Descriptor().FullName(), got, want, m)
			}
			if n := vt.SizeVT(); n != len(want) {
				t.Fatalf("%s: SizeVT %d, proto.Marshal wrote %d", mt.Descriptor().FullName(), n, len(want))
			}
			back := mt.New().Interface().(VTMessage)
			if err := back.UnmarshalVT(want); err != nil {
				t.Fatalf("%s: UnmarshalVT: %v", mt.Descriptor().FullName(), err)
			}
			if !proto.Equal(back.(proto.Message), m.Interface()) {
				t.Fatalf("%s: UnmarshalVT gave %v, want %v", mt.Descriptor().FullName(), back, m)
			}
		}
	}
}

// TestCodec: the codec's bytes are gRPC's proto codec's, small (unpooled) and large
// (pooled) alike, and it decodes a message received in several buffers; a message
// without VT methods goes through gRPC's codec.
func TestCodec(t *testing.T) {
	c := Codec{}
	if c.Name() != "proto" {
		t.Fatalf("Name %q", c.Name())
	}
	for _, n := range []int{1, 100} {
		resp := rangeResponse(n)
		data, err := c.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := fallback.Marshal(resp)
		if !bytes.Equal(data.Materialize(), want.Materialize()) {
			t.Fatalf("%d kvs: codec bytes differ from gRPC's", n)
		}
		// Split the encoding over three buffers, as a receiver may get it.
		b := data.Materialize()
		data.Free()
		third := len(b) / 3
		split := mem.BufferSlice{mem.SliceBuffer(b[:third]), mem.SliceBuffer(b[third : 2*third]), mem.SliceBuffer(b[2*third:])}
		got := &pb.RangeResponse{}
		if err := c.Unmarshal(split, got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, resp) {
			t.Fatalf("%d kvs: decoded %v", n, got)
		}
		clear(b) // the decoded message shares nothing with the received bytes
		if !proto.Equal(got, resp) {
			t.Fatalf("%d kvs: decoded message aliases the received buffers", n)
		}
	}
	// raftpb has no VT methods: gRPC's codec handles it.
	m := &raftpb.Message{Type: raftpb.MsgApp.Enum(), To: proto.Uint64(2), From: proto.Uint64(1), Entries: []*raftpb.Entry{{Index: proto.Uint64(9), Data: []byte("x")}}}
	if _, ok := any(m).(VTMessage); ok {
		t.Fatal("raftpb.Message has VT methods: test another type")
	}
	data, err := c.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := proto.Marshal(m)
	if !bytes.Equal(data.Materialize(), want) {
		t.Fatal("fallback bytes differ from proto.Marshal")
	}
	got := &raftpb.Message{}
	if err := c.Unmarshal(data, got); err != nil || !proto.Equal(got, m) {
		t.Fatalf("fallback decoded %v, %v", got, err)
	}
}

// fill sets a random subset of m's fields to random values, nesting messages up to depth.
func fill(r *rand.Rand, m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if r.IntN(3) == 0 {
			continue
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() && m.WhichOneof(od) != nil {
			continue
		}
		isMsg := fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for n := r.IntN(3); n > 0; n-- {
				k := scalar(r, fd.MapKey()).MapKey()
				if fd.MapValue().Message() != nil {
					v := mp.NewValue()
					fill(r, v.Message(), depth-1)
					mp.Set(k, v)
				} else {
					mp.Set(k, scalar(r, fd.MapValue()))
				}
			}
		case fd.IsList():
			if isMsg && depth <= 0 {
				continue
			}
			l := m.Mutable(fd).List()
			for n := r.IntN(4); n > 0; n-- {
				if isMsg {
					v := l.NewElement()
					fill(r, v.Message(), depth-1)
					l.Append(v)
				} else {
					l.Append(scalar(r, fd))
				}
			}
		case isMsg:
			if depth > 0 {
				fill(r, m.Mutable(fd).Message(), depth-1)
			}
		default:
			m.Set(fd, scalar(r, fd))
		}
	}
}

func scalar(r *rand.Rand, fd protoreflect.FieldDescriptor) protoreflect.Value {
	small := r.IntN(2) == 0 // small and zero values as well as full-width ones
	u := r.Uint64()
	if small {
		u %= 300
	}
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(u%2 == 1)
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		if r.IntN(10) == 0 { // an enum value this build does not know
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(int32(u)))
		}
		return protoreflect.ValueOfEnum(vals.Get(r.IntN(vals.Len())).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(u))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(u))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(u))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(u)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(r.NormFloat64()))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(r.NormFloat64())
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(strings.Repeat("kv/é", r.IntN(4)))
	case protoreflect.BytesKind:
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return protoreflect.ValueOfBytes(b)
	}
	panic("pbcodec test: unhandled kind " + fd.Kind().String())
}

func rangeResponse(n int) *pb.RangeResponse {
	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{ClusterId: 0x1234567890, MemberId: 0x987654321, Revision: 1 << 20, RaftTerm: 7}, Count: int64(n)}
	for i := range n {
		resp.Kvs = append(resp.Kvs, keyValue(i))
	}
	return resp
}

func keyValue(i int) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{
		Key:            []byte("/registry/pods/default/pod-" + strings.Repeat("x", i%7) + string(rune('a'+i%26))),
		CreateRevision: int64(1000 + i),
		ModRevision:    int64(5000 + i),
		Version:        int64(1 + i%5),
		Value:          bytes.Repeat([]byte{byte(i)}, 256),
		Lease:          int64(i % 3),
	}
}
