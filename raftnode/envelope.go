package raftnode

import (
	"errors"
	"fmt"

	"github.com/cairn-kv/cairn/internal/pbcodec"
	"github.com/cairn-kv/cairn/internal/raftcodec"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// An envelope goes on the wire as one buffer, written once: its header fields, then each
// raft message marshalled straight into its place (framed as Envelope.messages), so no
// message is marshalled into a slice of its own first and copied again when the
// envelope is. A large envelope's buffer comes from gRPC's mem pool, which gets it back
// once the bytes are written (pbcodec.EncodedPooled); the stream's codec sends it as is.
// The bytes are proto.Marshal's of the Envelope holding each message's proto.Marshal
// (raftcodec writes them without reflection).

// Envelope field numbers (peerpb/peer.proto).
const (
	envelopeClusterIDField protowire.Number = 1
	envelopeFromField      protowire.Number = 2
	envelopeToField        protowire.Number = 3
	envelopeMessagesField  protowire.Number = 4
)

var errInvalidFieldNumber = errors.New("peer: envelope: invalid field number")

var errSizeChanged = errors.New("raftnode: a raft message changed while being marshalled")

// envelopeEncoder gathers the raft messages of the next envelope of one stream.
type envelopeEncoder struct {
	clusterID, from, to uint64
	msgs                []*raftpb.Message
	sizes               []int
}

// add puts m in the next envelope and returns the size of its encoding.
func (e *envelopeEncoder) add(m *raftpb.Message) int {
	n := raftcodec.MessageSize(m)
	e.msgs = append(e.msgs, m)
	e.sizes = append(e.sizes, n)
	return n
}

// size is the length of the next envelope's encoding, were every message added so far
// to marshal.
func (e *envelopeEncoder) size() int {
	total := 0
	for _, f := range [...]uint64{e.clusterID, e.from, e.to} {
		if f != 0 {
			total += protowire.SizeTag(envelopeClusterIDField) + protowire.SizeVarint(f)
		}
	}
	for _, s := range e.sizes {
		total += protowire.SizeTag(envelopeMessagesField) + protowire.SizeBytes(s)
	}
	return total
}

// encode writes the envelope of the messages added since the last call. It returns how
// many messages it holds and the bytes their encodings take; a message that fails to
// marshal is left out and reported to failed.
func (e *envelopeEncoder) encode(failed func(*raftpb.Message, error)) (env *pbcodec.Encoded, n, size int) {
	total := e.size()
	var (
		pool mem.BufferPool
		buf  *[]byte
	)
	if mem.IsBelowBufferPoolingThreshold(total) {
		b := make([]byte, 0, total)
		buf = &b
	} else {
		pool = mem.DefaultBufferPool()
		buf = pool.Get(total)
	}
	*buf, n, size = e.appendTo((*buf)[:0], failed)
	if pool == nil {
		return pbcodec.EncodedBytes(*buf), n, size
	}
	return pbcodec.EncodedPooled(buf, pool), n, size
}

// appendTo appends the envelope of the messages added since the last call to b, as
// encode does, and starts the next envelope.
func (e *envelopeEncoder) appendTo(b []byte, failed func(*raftpb.Message, error)) (_ []byte, n, size int) {
	for _, f := range [...]struct {
		num protowire.Number
		v   uint64
	}{{envelopeClusterIDField, e.clusterID}, {envelopeFromField, e.from}, {envelopeToField, e.to}} {
		if f.v != 0 {
			b = protowire.AppendTag(b, f.num, protowire.VarintType)
			b = protowire.AppendVarint(b, f.v)
		}
	}
	for i, m := range e.msgs {
		start := len(b)
		b = protowire.AppendTag(b, envelopeMessagesField, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(e.sizes[i]))
		// Nothing changes a queued message, so it still has the size add computed.
		out, err := raftcodec.AppendMessage(b, m)
		if err == nil && len(out)-len(b) != e.sizes[i] {
			err = errSizeChanged // size counted it otherwise: the envelope's length would be wrong
		}
		if err != nil {
			failed(m, err)
			b = b[:start]
			continue
		}
		b = out
		n++
		size += e.sizes[i]
	}
	clear(e.msgs)
	e.msgs, e.sizes = e.msgs[:0], e.sizes[:0]
	return b, n, size
}

// A received envelope is decoded straight from gRPC's receive buffer (pbcodec hands
// receivedEnvelope the bytes): each raft message is unmarshalled from its place in it,
// never first copied out into an Envelope of its own. The peer gRPC server must
// therefore use pbcodec (PeerServerOption).

// PeerServerOption is the option every gRPC server serving the peer service (Register)
// must be built with: its codec decodes envelopes in place and sends pre-encoded ones.
func PeerServerOption() grpc.ServerOption { return grpc.ForceServerCodecV2(pbcodec.Codec{}) }

// receivedMessage is one raft message of a received envelope, or why it was refused.
type receivedMessage struct {
	m    *raftpb.Message
	size int // bytes of its encoding
	err  error
}

// receivedEnvelope is a peerpb.Envelope as received: its header and its messages,
// decoded. A message that does not decode is kept as an error in its place, so the
// stream refuses it only after the sender is checked and the messages before it are
// stepped.
type receivedEnvelope struct {
	clusterID, from, to uint64
	msgs                []receivedMessage
}

// DecodeRaw decodes an Envelope's wire form (pbcodec.RawDecoder); it keeps nothing of b.
func (e *receivedEnvelope) DecodeRaw(b []byte) error {
	*e = receivedEnvelope{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		if !num.IsValid() {
			return errInvalidFieldNumber
		}
		b = b[n:]
		switch {
		case typ == protowire.VarintType && num >= envelopeClusterIDField && num <= envelopeToField:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			*[...]*uint64{&e.clusterID, &e.from, &e.to}[num-envelopeClusterIDField] = v
			b = b[n:]
		case typ == protowire.BytesType && num == envelopeMessagesField:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			m, err := raftcodec.DecodeMessage(v) // copies what it keeps
			r := receivedMessage{m: m, size: len(v)}
			if err != nil {
				r = receivedMessage{size: len(v), err: fmt.Errorf("peer: unmarshal raft message: %w", err)}
			}
			e.msgs = append(e.msgs, r)
			b = b[n:]
		default: // unknown to this member: skipped, as proto.Unmarshal would
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return nil
}
