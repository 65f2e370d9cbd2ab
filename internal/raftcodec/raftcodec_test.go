package raftcodec

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// randomMessage is a message with each optional field set or not at random (zero values
// included), random entries and, now and then, a snapshot or responses.
func randomMessage(r *rand.Rand, depth int) *raftpb.Message {
	u64 := func() *uint64 {
		if r.IntN(3) == 0 {
			return nil
		}
		v := [...]uint64{0, 1, 127, 128, 1 << 35, ^uint64(0)}[r.IntN(6)]
		if r.IntN(2) == 0 {
			v = r.Uint64() >> r.IntN(64)
		}
		return &v
	}
	bs := func() []byte {
		switch r.IntN(4) {
		case 0:
			return nil
		case 1:
			return []byte{}
		}
		b := make([]byte, r.IntN(300))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	m := &raftpb.Message{To: u64(), From: u64(), Term: u64(), LogTerm: u64(), Index: u64(), Commit: u64(),
		RejectHint: u64(), Vote: u64(), Context: bs()}
	if r.IntN(4) > 0 {
		m.Type = raftpb.MessageType(r.IntN(len(raftpb.MessageType_name))).Enum()
	}
	if r.IntN(3) > 0 {
		m.Reject = proto.Bool(r.IntN(2) == 0)
	}
	for range r.IntN(20) {
		e := &raftpb.Entry{Term: u64(), Index: u64(), Data: bs()}
		if r.IntN(3) > 0 {
			e.Type = raftpb.EntryType(r.IntN(len(raftpb.EntryType_name))).Enum()
		}
		m.Entries = append(m.Entries, e)
	}
	if depth == 0 && r.IntN(10) == 0 {
		m.Snapshot = &raftpb.Snapshot{Data: bs(), Metadata: &raftpb.SnapshotMetadata{Index: u64(), Term: u64(),
			ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}}}}
	}
	if depth == 0 && r.IntN(10) == 0 {
		m.Responses = []*raftpb.Message{randomMessage(r, 1)}
	}
	return m
}

// AppendMessage, MessageSize, AppendEntry and EntrySize write exactly proto.Marshal's
// bytes, and DecodeMessage reads them back equal, for random messages.
func TestMatchesProtoMarshal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		m := randomMessage(r, 0)
		want, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := AppendMessage([]byte{0xAA}, m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[1:], want) || got[0] != 0xAA {
			t.Fatalf("message %d: AppendMessage\n%x\nproto.Marshal\n%x", i, got, want)
		}
		if n := MessageSize(m); n != len(want) {
			t.Fatalf("message %d: MessageSize %d, want %d", i, n, len(want))
		}
		for j, e := range m.Entries {
			want, _ := proto.Marshal(e)
			if got := AppendEntry(nil, e); !bytes.Equal(got, want) || EntrySize(e) != len(want) {
				t.Fatalf("message %d entry %d: AppendEntry %x (size %d), proto.Marshal %x", i, j, got, EntrySize(e), want)
			}
		}
		dec, err := DecodeMessage(want)
		if err != nil {
			t.Fatalf("message %d: decode: %v", i, err)
		}
		if !proto.Equal(dec, m) {
			t.Fatalf("message %d: decoded\n%v\nwant\n%v", i, dec, m)
		}
	}
}

// A decoded message shares no memory with the bytes it came from.
func TestDecodeCopies(t *testing.T) {
	m := &raftpb.Message{Type: raftpb.MsgApp.Enum(), Context: []byte("ctx"),
		Entries: []*raftpb.Entry{{Term: proto.Uint64(1), Index: proto.Uint64(2), Data: []byte("data")}}}
	b, _ := proto.Marshal(m)
	dec, err := DecodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	clear(b)
	if !proto.Equal(dec, m) {
		t.Fatalf("decoded message changed with its buffer: %v", dec)
	}
}

// Unknown fields and known fields of another wire type are skipped, as proto.Unmarshal
// does (it keeps them as unknown fields, which a member never re-sends); enum values raft
// does not define are kept, as raft's enums are open.
func TestDecodeUnknown(t *testing.T) {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 9999) // no such MessageType: kept
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte("to as bytes"))
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, 7)
	b = protowire.AppendTag(b, 99, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, 1)
	var ent []byte
	ent = protowire.AppendTag(ent, 1, protowire.VarintType)
	ent = protowire.AppendVarint(ent, 77) // no such EntryType: kept
	ent = protowire.AppendTag(ent, 5, protowire.BytesType)
	ent = protowire.AppendBytes(ent, []byte("x"))
	ent = protowire.AppendTag(ent, 3, protowire.VarintType)
	ent = protowire.AppendVarint(ent, 42)
	b = protowire.AppendTag(b, 7, protowire.BytesType)
	b = protowire.AppendBytes(b, ent)
	want := &raftpb.Message{}
	if err := proto.Unmarshal(b, want); err != nil {
		t.Fatal(err)
	}
	if len(want.ProtoReflect().GetUnknown()) == 0 || want.GetType() != 9999 {
		t.Fatalf("proto.Unmarshal kept no unknown field: %v", want)
	}
	got, err := DecodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, withoutUnknown(want)) || got.GetFrom() != 7 || got.Entries[0].GetIndex() != 42 {
		t.Fatalf("decoded %v, want %v", got, want)
	}
}

// withoutUnknown is m with the unknown fields of it and every message in it dropped.
func withoutUnknown(m proto.Message) proto.Message {
	m = proto.Clone(m)
	var drop func(protoreflect.Message)
	drop = func(m protoreflect.Message) {
		m.SetUnknown(nil)
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.Message() == nil:
			case fd.IsList():
				for i := 0; i < v.List().Len(); i++ {
					drop(v.List().Get(i).Message())
				}
			default:
				drop(v.Message())
			}
			return true
		})
	}
	drop(m.ProtoReflect())
	return m
}

// FuzzDecodeMessage: on any bytes DecodeMessage fails exactly when proto.Unmarshal does,
// and otherwise yields what it yields, unknown fields aside.
func FuzzDecodeMessage(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		b, _ := proto.Marshal(randomMessage(r, 0))
		f.Add(b)
	}
	f.Add([]byte{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{0x3a, 0x02, 0x08})
	f.Add([]byte{0x0c})
	f.Fuzz(func(t *testing.T, b []byte) {
		want := &raftpb.Message{}
		wantErr := proto.Unmarshal(b, want)
		got, err := DecodeMessage(b)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("DecodeMessage: %v; proto.Unmarshal: %v", err, wantErr)
		}
		if err == nil && !proto.Equal(withoutUnknown(got), withoutUnknown(want)) {
			t.Fatalf("decoded\n%v\nproto.Unmarshal\n%v", got, want)
		}
	})
}

// BenchmarkMessage is one MsgApp of 16 entries of 300 bytes, encoded and decoded by
// protobuf-go and by this package.
func BenchmarkMessage(b *testing.B) {
	m := &raftpb.Message{Type: raftpb.MsgApp.Enum(), To: proto.Uint64(2), From: proto.Uint64(1), Term: proto.Uint64(3),
		Index: proto.Uint64(100), LogTerm: proto.Uint64(3), Commit: proto.Uint64(99)}
	for j := range 16 {
		m.Entries = append(m.Entries, &raftpb.Entry{Term: proto.Uint64(3), Index: proto.Uint64(uint64(101 + j)),
			Type: raftpb.EntryNormal.Enum(), Data: bytes.Repeat([]byte{1}, 300)})
	}
	wire, _ := proto.Marshal(m)
	buf := make([]byte, 0, len(wire))
	b.Run("encode=proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf, _ = proto.MarshalOptions{}.MarshalAppend(buf[:0], m)
		}
	})
	b.Run("encode=raftcodec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = MessageSize(m)
			buf, _ = AppendMessage(buf[:0], m)
		}
	})
	b.Run("decode=proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := proto.Unmarshal(wire, &raftpb.Message{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode=raftcodec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeMessage(wire); err != nil {
				b.Fatal(err)
			}
		}
	})
}
