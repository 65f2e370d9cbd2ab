package framework

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// Cairn's peer protocol (proto/peerpb in the root module), spoken from outside the
// cluster to check what a member's peer port refuses. The root module's proto packages
// cannot be linked into this module next to etcd's (both register "etcdserverpb" and
// "authpb" under the same names), so the few messages the tests send are encoded here by
// hand; the field numbers are those of proto/peerpb/*.proto.

// Peer RPC method names (proto/peerpb: package cairn.peerpb).
const (
	PeerMethodSend         = "/cairn.peerpb.Peer/Send"
	PeerMethodSendSnapshot = "/cairn.peerpb.Peer/SendSnapshot"
	PeerMethodLeaseRenew   = "/cairn.peerpb.LeaseForward/Renew"
	PeerMethodLeaseTTL     = "/cairn.peerpb.LeaseForward/TimeToLive"
	PeerMethodPromote      = "/cairn.peerpb.MemberForward/Promote"
	PeerMethodHashKV       = "/cairn.peerpb.HashCheck/HashKV"
)

// PeerHeader is what every peer request carries first: the sender's cluster and member
// ids, and (streams only) the receiving member's id.
type PeerHeader struct {
	ClusterID, From, To uint64
}

// PeerEnvelope encodes a cairn.peerpb.Envelope: raft messages (marshalled
// raftpb.Message) from h.From to h.To.
func PeerEnvelope(h PeerHeader, msgs ...[]byte) []byte {
	b := h.append(nil, true)
	for _, m := range msgs {
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendBytes(b, m)
	}
	return b
}

// PeerSnapshotChunk encodes the first cairn.peerpb.SnapshotChunk of a snapshot stream:
// the header, the MsgSnap (marshalled raftpb.Message) and a piece of the db.
func PeerSnapshotChunk(h PeerHeader, msg, data []byte) []byte {
	b := h.append(nil, true)
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	b = protowire.AppendBytes(b, msg)
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	return protowire.AppendBytes(b, data)
}

// PeerRequest encodes a forwarded request (LeaseRenewRequest, LeaseTimeToLiveRequest,
// MemberPromoteForwardRequest): cluster_id = 1, from = 2 and the marshalled etcd request
// as field 3.
func PeerRequest(h PeerHeader, req []byte) []byte {
	b := h.append(nil, false)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	return protowire.AppendBytes(b, req)
}

// PeerHashKVRequest encodes a cairn.peerpb.PeerHashKVRequest.
func PeerHashKVRequest(h PeerHeader, rev int64) []byte {
	b := h.append(nil, false)
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(rev))
}

func (h PeerHeader) append(b []byte, withTo bool) []byte {
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, h.ClusterID)
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, h.From)
	if withTo {
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, h.To)
	}
	return b
}

// DialPeerPort connects to a member's peer URL as an outsider would: plaintext for
// http://, TLS with cfg for https://.
func DialPeerPort(peerURL string, cfg *tls.Config) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if strings.HasPrefix(peerURL, "https://") {
		creds = credentials.NewTLS(cfg)
	}
	target := strings.TrimPrefix(strings.TrimPrefix(peerURL, "https://"), "http://")
	return grpc.NewClient(target, grpc.WithTransportCredentials(creds), grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
}

// PeerCall makes the unary peer RPC method with an encoded request; the answer's bytes
// or its error (the status the member sent).
func PeerCall(ctx context.Context, cc *grpc.ClientConn, method string, req []byte) ([]byte, error) {
	var resp []byte
	err := cc.Invoke(ctx, method, req, &resp)
	return resp, err
}

// PeerStream opens the client stream method (Send, SendSnapshot), writes the encoded
// messages, half-closes and returns how the member ended the stream. A stream the member
// ends early (a refusal) returns that refusal, whatever was still unsent.
func PeerStream(ctx context.Context, cc *grpc.ClientConn, method string, msgs ...[]byte) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, method)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := st.SendMsg(m); err != nil {
			break // the stream ended; RecvMsg says why
		}
	}
	_ = st.CloseSend()
	var resp []byte
	return st.RecvMsg(&resp)
}

// peerDirectStreamMagic opens a direct stream (raftnode/direct_stream.go): the peer
// port's raft stream outside gRPC. The member answers with the same bytes.
const peerDirectStreamMagic = "CAIRN raft stream v1\r\n\r\n"

// PeerDirectStream opens a direct stream to the member at peerURL (TLS with cfg for
// https://), writes the envelopes (PeerEnvelope's), ends the stream and returns how the
// member took it: nil if it closed without a word, else the status it refused with.
func PeerDirectStream(ctx context.Context, peerURL string, cfg *tls.Config, envelopes ...[]byte) error {
	target := strings.TrimPrefix(strings.TrimPrefix(peerURL, "https://"), "http://")
	var (
		c   net.Conn
		err error
	)
	if strings.HasPrefix(peerURL, "https://") {
		c, err = (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", target)
	} else {
		c, err = (&net.Dialer{}).DialContext(ctx, "tcp", target)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	r := bufio.NewReader(c)
	if _, err := io.WriteString(c, peerDirectStreamMagic); err != nil {
		return err
	}
	answer := make([]byte, len(peerDirectStreamMagic))
	if _, err := io.ReadFull(r, answer); err != nil || string(answer) != peerDirectStreamMagic {
		return fmt.Errorf("no direct stream: answered %q, %v", answer, err)
	}
	for _, env := range envelopes {
		if _, err := c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(env))), env...)); err != nil {
			break // the stream ended; the status says why
		}
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		return err
	}
	// A status: 1 byte gRPC code, uvarint length, message.
	code, err := r.ReadByte()
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return err
	}
	n, err := binary.ReadUvarint(r)
	if err != nil || n > 4096 {
		return fmt.Errorf("bad status from the member: %d bytes, %v", n, err)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return err
	}
	return status.Error(codes.Code(code), string(msg))
}
