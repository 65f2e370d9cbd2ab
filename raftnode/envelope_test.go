package raftnode

import (
	"bytes"
	"testing"

	"github.com/cairn-kv/cairn/internal/pbcodec"
	"github.com/cairn-kv/cairn/proto/peerpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// An envelope written by envelopeEncoder is byte for byte proto.Marshal's of the
// Envelope holding each message's proto.Marshal: small and pooled, empty (the idle
// probe) and full.
func TestEnvelopeEncoderMatchesMarshal(t *testing.T) {
	app := &raftpb.Message{Type: raftpb.MsgApp.Enum(), To: proto.Uint64(2), From: proto.Uint64(1), Term: proto.Uint64(3),
		Index: proto.Uint64(40), LogTerm: proto.Uint64(3), Commit: proto.Uint64(39)}
	for i := range 20 {
		app.Entries = append(app.Entries, &raftpb.Entry{Term: proto.Uint64(3), Index: proto.Uint64(uint64(41 + i)), Data: bytes.Repeat([]byte{byte(i)}, 100)})
	}
	hb := &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), To: proto.Uint64(2), From: proto.Uint64(1), Term: proto.Uint64(3)}
	for _, tc := range []struct {
		name string
		msgs []*raftpb.Message
	}{{"idle", nil}, {"heartbeat", []*raftpb.Message{hb}}, {"pooled", []*raftpb.Message{app, hb, app}}} {
		enc := &envelopeEncoder{clusterID: 0xabcdef, from: 1, to: 2}
		want := &peerpb.Envelope{ClusterId: 0xabcdef, From: 1, To: 2}
		wantSize := 0
		for _, m := range tc.msgs {
			enc.add(m)
			b, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			want.Messages = append(want.Messages, b)
			wantSize += len(b)
		}
		env, n, size := enc.encode(func(m *raftpb.Message, err error) { t.Fatalf("%s: %v", tc.name, err) })
		wantBytes, _ := proto.Marshal(want)
		if !bytes.Equal(env.Bytes(), wantBytes) {
			t.Fatalf("%s: encoded\n%x\nwant\n%x", tc.name, env.Bytes(), wantBytes)
		}
		if n != len(tc.msgs) || size != wantSize {
			t.Fatalf("%s: %d messages of %d bytes, want %d of %d", tc.name, n, size, len(tc.msgs), wantSize)
		}
		if len(enc.msgs) != 0 {
			t.Fatalf("%s: messages left in the encoder", tc.name)
		}
		// The receiver decodes it back in place, through the codec.
		var got receivedEnvelope
		if err := (pbcodec.Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(wantBytes)}, &got); err != nil {
			t.Fatalf("%s: decode: %v", tc.name, err)
		}
		if got.clusterID != want.ClusterId || got.from != want.From || got.to != want.To || len(got.msgs) != len(tc.msgs) {
			t.Fatalf("%s: decoded %+v", tc.name, got)
		}
		for i, rm := range got.msgs {
			if rm.err != nil || !proto.Equal(rm.m, tc.msgs[i]) || rm.size != len(want.Messages[i]) {
				t.Fatalf("%s: message %d decoded as %v (%d bytes), %v", tc.name, i, rm.m, rm.size, rm.err)
			}
		}
	}
}

// BenchmarkEnvelopeDecode is the receiving side of BenchmarkEnvelopeEncode's envelope:
// before, gRPC's codec decoding an Envelope (each message copied out) and each message
// unmarshalled from its copy; now, receivedEnvelope decoding the messages in place.
func BenchmarkEnvelopeDecode(b *testing.B) {
	env := &peerpb.Envelope{ClusterId: 0xabcdef, From: 1, To: 2}
	for _, m := range appendMessages() {
		data, _ := proto.Marshal(m)
		env.Messages = append(env.Messages, data)
	}
	wire, _ := proto.Marshal(env)
	in := mem.BufferSlice{mem.SliceBuffer(wire)}
	b.Run("decode=proto", func(b *testing.B) {
		b.ReportAllocs()
		codec := encoding.GetCodecV2(grpcproto.Name)
		for b.Loop() {
			var e peerpb.Envelope
			if err := codec.Unmarshal(in, &e); err != nil {
				b.Fatal(err)
			}
			for _, data := range e.Messages {
				if err := proto.Unmarshal(data, &raftpb.Message{}); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("decode=receivedEnvelope", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := (pbcodec.Codec{}).Unmarshal(in, &receivedEnvelope{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// appendMessages is 8 appends of 16 entries of 300 bytes each.
func appendMessages() []*raftpb.Message {
	var msgs []*raftpb.Message
	for i := range 8 {
		m := &raftpb.Message{Type: raftpb.MsgApp.Enum(), To: proto.Uint64(2), From: proto.Uint64(1), Term: proto.Uint64(3),
			Index: proto.Uint64(uint64(100 + 16*i)), LogTerm: proto.Uint64(3), Commit: proto.Uint64(99)}
		for j := range 16 {
			m.Entries = append(m.Entries, &raftpb.Entry{Term: proto.Uint64(3), Index: proto.Uint64(uint64(101 + 16*i + j)), Data: bytes.Repeat([]byte{1}, 300)})
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// BenchmarkEnvelopeEncode is one envelope of 8 appends of 16 entries of 300 bytes each:
// before, each message marshalled on its own and the envelope by gRPC's proto codec;
// now, envelopeEncoder writing everything once into one buffer.
func BenchmarkEnvelopeEncode(b *testing.B) {
	msgs := appendMessages()
	b.Run("encode=proto", func(b *testing.B) {
		b.ReportAllocs()
		codec := encoding.GetCodecV2(grpcproto.Name)
		env := &peerpb.Envelope{ClusterId: 0xabcdef, From: 1, To: 2}
		for b.Loop() {
			env.Messages = env.Messages[:0]
			for _, m := range msgs {
				data, err := proto.Marshal(m)
				if err != nil {
					b.Fatal(err)
				}
				env.Messages = append(env.Messages, data)
			}
			data, err := codec.Marshal(env)
			if err != nil {
				b.Fatal(err)
			}
			data.Free()
		}
	})
	b.Run("encode=envelopeEncoder", func(b *testing.B) {
		b.ReportAllocs()
		enc := &envelopeEncoder{clusterID: 0xabcdef, from: 1, to: 2}
		for b.Loop() {
			for _, m := range msgs {
				enc.add(m)
			}
			env, _, _ := enc.encode(func(_ *raftpb.Message, err error) { b.Fatal(err) })
			data, err := pbcodec.Codec{}.Marshal(env)
			if err != nil {
				b.Fatal(err)
			}
			data.Free()
		}
	})
}
