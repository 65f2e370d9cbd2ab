package raftnode

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/proto/peerpb"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"
)

// bytesDB is a SnapshotDB over a byte slice.
type bytesDB struct {
	data   []byte
	closed chan struct{}
}

func (b *bytesDB) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(b.data)
	return int64(n), err
}

func (b *bytesDB) Close() error { close(b.closed); return nil }

type receivedSnapshot struct {
	m    *raftpb.Message
	data []byte
	err  error
}

// snapshotPair is member 1 sending snapshots of db to member 2, whose receive takes
// them (nil: record them on got).
func snapshotPair(t *testing.T, db []byte, receive SnapshotReceiver) (send *PeerTransport, src *bytesDB, got chan receivedSnapshot, reports chan raft.SnapshotStatus) {
	recv := NewPeerTransport(zaptest.NewLogger(t), 2, testClusterID, nil)
	t.Cleanup(recv.Stop)
	got = make(chan receivedSnapshot, 4)
	if receive == nil {
		receive = func(_ context.Context, m *raftpb.Message, r io.Reader) error {
			data, err := io.ReadAll(r)
			got <- receivedSnapshot{m: m, data: data, err: err}
			return err
		}
	}
	recv.SetHandler(func(context.Context, *raftpb.Message) error { return nil }, func(uint64) {})
	recv.SetSnapshotHandlers(nil, receive, nil)
	_, url := servePeerTransport(t, recv)

	send = newTestSender(t)
	src = &bytesDB{data: db, closed: make(chan struct{})}
	reports = make(chan raft.SnapshotStatus, 4)
	snap := &raftpb.Snapshot{Data: []byte("members"), Metadata: &raftpb.SnapshotMetadata{
		Index: proto.Uint64(77), Term: proto.Uint64(3), ConfState: &raftpb.ConfState{Voters: []uint64{1, 2}},
	}}
	send.SetSnapshotHandlers(func(context.Context) (*raftpb.Snapshot, SnapshotDB, error) {
		return snap, src, nil
	}, nil, func(id uint64, st raft.SnapshotStatus) {
		if id == 2 {
			reports <- st
		}
	})
	send.AddPeer(2, []string{url})
	return send, src, got, reports
}

// sendSnapshot has send send a MsgSnap to member 2 carrying a stale snapshot, as raft's
// does, and returns how the transport reported the send to raft.
func sendSnapshot(t *testing.T, send *PeerTransport, reports chan raft.SnapshotStatus) raft.SnapshotStatus {
	t.Helper()
	stale := &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(5), Term: proto.Uint64(1)}}
	typ := raftpb.MsgSnap
	send.Send([]*raftpb.Message{{Type: &typ, From: proto.Uint64(1), To: proto.Uint64(2), Term: proto.Uint64(3), Snapshot: stale}})
	select {
	case st := <-reports:
		return st
	case <-time.After(10 * time.Second):
		t.Fatal("no report to raft")
	}
	return raft.SnapshotFailure
}

// raft's MsgSnap carries whatever snapshot storage had; the transport sends the one its
// source makes now, with the whole db in chunks, and reports the outcome to raft.
func TestPeerTransportSendsSnapshotWithDB(t *testing.T) {
	db := make([]byte, 3*snapshotChunkBytes+12345) // several chunks and a partial one
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range db {
		db[i] = byte(rng.Uint32())
	}
	send, src, got, reports := snapshotPair(t, db, nil)
	if st := sendSnapshot(t, send, reports); st != raft.SnapshotFinish {
		t.Fatalf("reported %v, want SnapshotFinish", st)
	}
	var r receivedSnapshot
	select {
	case r = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no snapshot received")
	}
	if r.err != nil {
		t.Fatalf("receiver read: %v", r.err)
	}
	if !bytes.Equal(r.data, db) {
		t.Fatalf("received %d bytes, want the %d sent", len(r.data), len(db))
	}
	if md := r.m.GetSnapshot().GetMetadata(); md.GetIndex() != 77 || md.GetTerm() != 3 || string(r.m.GetSnapshot().GetData()) != "members" {
		t.Fatalf("received snapshot %v, want the source's (index 77)", r.m.GetSnapshot())
	}
	select {
	case <-src.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the db view was not closed")
	}
}

// A receiver that fails (here: it cannot save the db) makes the send fail, and raft is
// told so it retries later.
func TestPeerTransportSnapshotFailureReported(t *testing.T) {
	send, _, _, reports := snapshotPair(t, []byte("db"), func(_ context.Context, _ *raftpb.Message, r io.Reader) error {
		_, _ = io.Copy(io.Discard, r)
		return errors.New("disk full")
	})
	if st := sendSnapshot(t, send, reports); st != raft.SnapshotFailure {
		t.Fatalf("reported %v, want SnapshotFailure", st)
	}
}

// The receiver's reader delivers the db only if the final checksum matches, and treats
// a stream that ends before the checksum as cut short.
func TestSnapshotReaderChecksum(t *testing.T) {
	sum := sha256.Sum256([]byte("abcdef"))
	for _, tc := range []struct {
		name   string
		chunks []*peerpb.SnapshotChunk
		want   error
	}{
		{"intact", []*peerpb.SnapshotChunk{{Data: []byte("abc")}, {Data: []byte("def")}, {Sha256: sum[:]}}, nil},
		{"data and sum in one chunk", []*peerpb.SnapshotChunk{{Data: []byte("abc")}, {Data: []byte("def"), Sha256: sum[:]}}, nil},
		{"corrupted", []*peerpb.SnapshotChunk{{Data: []byte("abc")}, {Data: []byte("dXf")}, {Sha256: sum[:]}}, errSnapshotChecksum},
		{"no checksum", []*peerpb.SnapshotChunk{{Data: []byte("abc")}, {Data: []byte("def")}}, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rest := tc.chunks[1:]
			r := &snapshotReader{next: tc.chunks[0], sum: sha256.New(), from: "1", recv: func() (*peerpb.SnapshotChunk, error) {
				if len(rest) == 0 {
					return nil, io.EOF
				}
				c := rest[0]
				rest = rest[1:]
				return c, nil
			}}
			data, err := io.ReadAll(r)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ReadAll error = %v, want %v", err, tc.want)
			}
			if tc.want == nil && string(data) != "abcdef" {
				t.Fatalf("read %q", data)
			}
		})
	}
}
