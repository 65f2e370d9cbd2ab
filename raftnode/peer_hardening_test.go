package raftnode

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/proto/peerpb"
)

func heartbeat(from, to uint64) []byte {
	b, _ := proto.Marshal(&raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: proto.Uint64(from), To: proto.Uint64(to), Term: proto.Uint64(5)})
	return b
}

// A connection to the peer port that is not a current member's changes nothing: a
// stream from an unknown member id, and raft messages that claim another sender than
// their envelope, are refused before anything reaches raft.
func TestPeerPortRefusesNonMembers(t *testing.T) {
	recv := NewPeerTransport(zaptest.NewLogger(t), 2, testClusterID, nil)
	defer recv.Stop()
	var stepped atomic.Int64
	recv.SetHandler(func(context.Context, *raftpb.Message) error { stepped.Add(1); return nil }, func(uint64) {})
	_, url := servePeerTransport(t, recv) // member 1 is a member; 7 is not

	addr := DialTarget(url)
	for _, protocol := range peerProtocols {
		for _, tc := range []struct {
			name string
			env  *peerpb.Envelope
			code codes.Code
			msg  string
		}{
			{"unknown member", &peerpb.Envelope{ClusterId: testClusterID, From: 7, To: 2, Messages: [][]byte{heartbeat(7, 2)}},
				codes.PermissionDenied, "is not a member of this cluster"},
			{"spoofed sender", &peerpb.Envelope{ClusterId: testClusterID, From: 1, To: 2, Messages: [][]byte{heartbeat(3, 2)}},
				codes.InvalidArgument, "a raft message from 3 to 2 in an envelope from 1 to 2"},
			{"for another member", &peerpb.Envelope{ClusterId: testClusterID, From: 1, To: 2, Messages: [][]byte{heartbeat(1, 9)}},
				codes.InvalidArgument, "a raft message from 1 to 9"},
			{"garbage", &peerpb.Envelope{ClusterId: testClusterID, From: 1, To: 2, Messages: [][]byte{{0xff, 0xff, 0xff}}},
				codes.InvalidArgument, "unmarshal raft message"},
		} {
			err := sendEnvelope(t, protocol, addr, nil, tc.env)
			if s := status.Convert(err); s.Code() != tc.code || !strings.Contains(s.Message(), tc.msg) {
				t.Fatalf("%s, %s stream: %v, want %v %q", tc.name, protocol, err, tc.code, tc.msg)
			}
		}
	}
	if n := stepped.Load(); n != 0 {
		t.Fatalf("%d refused messages reached raft", n)
	}
	// A member's own message still goes through, on either stream.
	for _, protocol := range peerProtocols {
		env := &peerpb.Envelope{ClusterId: testClusterID, From: 1, To: 2, Messages: [][]byte{heartbeat(1, 2)}}
		if err := sendEnvelope(t, protocol, addr, nil, env); err != nil {
			t.Fatalf("%s stream: %v", protocol, err)
		}
	}
	if n := stepped.Load(); n != 2 {
		t.Fatalf("%d messages stepped, want 2", n)
	}
}

// A received snapshot's db may not exceed the bound: reading past it fails.
func TestSnapshotBoundedByQuota(t *testing.T) {
	r := &limitedReader{r: bytes.NewReader(make([]byte, 100)), left: 64}
	if _, err := io.ReadAll(r); !errors.Is(err, ErrSnapshotRefused) {
		t.Fatalf("reading 100 bytes with a bound of 64: %v", err)
	}
	r = &limitedReader{r: bytes.NewReader(make([]byte, 64)), left: 64}
	if b, err := io.ReadAll(r); err != nil || len(b) != 64 {
		t.Fatalf("reading 64 bytes with a bound of 64: %d, %v", len(b), err)
	}
}

// A snapshot from an older term, or from another member than the leader of the current
// term, is refused before its db is written: nothing lands in the snapshot directory.
func TestReceiveSnapshotRefusesStaleLeader(t *testing.T) {
	dir := t.TempDir()
	n, err := Start(testConfig(t, dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for n.Leader() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	term := n.Term()
	snap := &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(99), Term: proto.Uint64(term),
		ConfState: &raftpb.ConfState{Voters: []uint64{1, 2}}}}
	for _, m := range []*raftpb.Message{
		{Type: raftpb.MsgSnap.Enum(), From: proto.Uint64(2), To: proto.Uint64(1), Term: proto.Uint64(term - 1), Snapshot: snap},
		{Type: raftpb.MsgSnap.Enum(), From: proto.Uint64(2), To: proto.Uint64(1), Term: proto.Uint64(term), Snapshot: snap},
	} {
		err := n.ReceiveSnapshot(context.Background(), m, bytes.NewReader([]byte("db")))
		if !errors.Is(err, ErrSnapshotRefused) {
			t.Fatalf("snapshot from %d at term %d (current %d, leader 1): %v", m.GetFrom(), m.GetTerm(), term, err)
		}
		if _, err := n.SnapshotDB(99); err == nil {
			t.Fatalf("a refused snapshot's db was saved")
		}
	}
}

// FuzzDecodePeerEnvelope: whatever bytes arrive, decoding an envelope in place never
// panics, reads what proto.Unmarshal reads, and a message the stream would accept is
// from the envelope's sender and for this member.
func FuzzDecodePeerEnvelope(f *testing.F) {
	env := func(from uint64, msgs ...[]byte) []byte {
		b, _ := proto.Marshal(&peerpb.Envelope{ClusterId: testClusterID, From: from, To: 2, Messages: msgs})
		return b
	}
	f.Add(env(1, heartbeat(1, 2)), uint64(2))
	f.Add(env(1, heartbeat(3, 2), heartbeat(1, 2)), uint64(2))
	f.Add(env(1, []byte{0x08, 0x01}), uint64(2))
	f.Add(env(1, []byte{0xff, 0xff, 0xff}), uint64(2))
	f.Add([]byte{}, uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, local uint64) {
		var e receivedEnvelope
		if err := e.DecodeRaw(b); err != nil {
			return
		}
		var want peerpb.Envelope
		if err := proto.Unmarshal(b, &want); err != nil {
			t.Fatalf("decoded an envelope proto.Unmarshal refuses: %v", err)
		}
		if e.clusterID != want.ClusterId || e.from != want.From || e.to != want.To || len(e.msgs) != len(want.Messages) {
			t.Fatalf("decoded %+v, proto.Unmarshal %v", e, &want)
		}
		for i, rm := range e.msgs {
			if rm.size != len(want.Messages[i]) {
				t.Fatalf("message %d: size %d, want %d", i, rm.size, len(want.Messages[i]))
			}
			if rm.err != nil || checkPeerMessage(rm.m, e.from, local) != nil {
				continue
			}
			if rm.m.GetFrom() != e.from || rm.m.GetTo() != local {
				t.Fatalf("accepted a message from %d to %d in an envelope from %d to %d", rm.m.GetFrom(), rm.m.GetTo(), e.from, local)
			}
		}
	})
}
