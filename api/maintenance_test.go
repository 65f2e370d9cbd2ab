package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// Snapshot sends the db in 32 KiB chunks with the bytes remaining after each, then its
// SHA-256 as one last message, each stamped with the storage version (etcd's stream).
func TestSnapshotStreamsDBThenChecksum(t *testing.T) {
	fb := newFakeBackend()
	fb.db = make([]byte, 3*snapshotChunkSize+1000)
	for i := range fb.db {
		fb.db[i] = byte(i * 7)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := NewGRPCServer(fb, GRPCConfig{}, nil)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := pb.NewMaintenanceClient(dial(t, l.Addr().String())).Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []*pb.SnapshotResponse
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if len(got) != 5 {
		t.Fatalf("%d responses, want 4 chunks and the checksum", len(got))
	}
	var db []byte
	remaining := uint64(len(fb.db))
	for i, r := range got[:4] {
		db = append(db, r.Blob...)
		remaining -= uint64(len(r.Blob))
		if r.RemainingBytes != remaining || r.Version != "3.6.0" || (i < 3 && len(r.Blob) != snapshotChunkSize) {
			t.Fatalf("chunk %d: %d bytes, remaining %d (want %d), version %q", i, len(r.Blob), r.RemainingBytes, remaining, r.Version)
		}
	}
	if !bytes.Equal(db, fb.db) {
		t.Fatal("streamed db differs from the member's")
	}
	sum := sha256.Sum256(fb.db)
	if last := got[4]; !bytes.Equal(last.Blob, sum[:]) || last.RemainingBytes != 0 || last.Version != "3.6.0" {
		t.Fatalf("last response %v, want the db's sha256", last)
	}
}

// --max-concurrent-streams: a connection may have that many streams open; one more waits.
func TestMaxConcurrentStreams(t *testing.T) {
	fb := newFakeBackend()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := NewGRPCServer(fb, GRPCConfig{MaxStreams: 1}, nil)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	cc := dial(t, l.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first, err := pb.NewWatchClient(cc).Watch(ctx)
	if err == nil {
		err = first.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("a")}}})
	}
	if err == nil {
		_, err = first.Recv()
	}
	if err != nil {
		t.Fatalf("first stream: %v", err)
	}
	sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer scancel()
	second, err := pb.NewWatchClient(cc).Watch(sctx)
	if err == nil {
		err = second.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("b")}}})
	}
	if err == nil {
		_, err = second.Recv()
	}
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a second stream with a limit of one: %v, want it held until its deadline", err)
	}
}
