package api

import (
	"testing"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/mvccpb"
	"google.golang.org/protobuf/proto"
)

// The assembled bytes must be exactly what proto.Marshal gives, for every shape of
// event response, and the cache must hand back one encoding per event.
func TestEncodeEventResponseMatchesMarshal(t *testing.T) {
	put := &mvccpb.Event{Kv: &mvccpb.KeyValue{Key: []byte("k"), Value: []byte("v"), CreateRevision: 2, ModRevision: 9, Version: 3, Lease: 7}}
	del := &mvccpb.Event{Type: mvccpb.Event_DELETE, Kv: &mvccpb.KeyValue{Key: []byte("k2"), ModRevision: 9},
		PrevKv: &mvccpb.KeyValue{Key: []byte("k2"), Value: []byte("old"), CreateRevision: 3, ModRevision: 4, Version: 1}}
	hdr := &pb.ResponseHeader{ClusterId: 1, MemberId: 2, Revision: 9, RaftTerm: 3}
	var e eventEncoder
	for _, wr := range []*pb.WatchResponse{
		{Header: hdr, WatchId: 0, Events: []*mvccpb.Event{put}},
		{Header: hdr, WatchId: 5, Events: []*mvccpb.Event{put, del}},
		{Header: hdr, WatchId: 1 << 40, Events: []*mvccpb.Event{del}},
	} {
		pe, ok, err := e.encodeEventResponse(wr)
		if err != nil || !ok {
			t.Fatalf("encode %v: ok=%v err=%v", wr, ok, err)
		}
		want, _ := proto.MarshalOptions{Deterministic: true}.Marshal(wr)
		if string(pe.Bytes()) != string(want) {
			t.Fatalf("encoding of %v:\n got %x\nwant %x", wr, pe.Bytes(), want)
		}
		var back pb.WatchResponse
		if err := proto.Unmarshal(pe.Bytes(), &back); err != nil || !proto.Equal(&back, wr) {
			t.Fatalf("round trip of %v: %v, %v", wr, &back, err)
		}
	}
	if len(e.cache) != 2 {
		t.Fatalf("%d cached encodings, want 2 (one per event)", len(e.cache))
	}
	for _, wr := range []*pb.WatchResponse{
		{Header: hdr, WatchId: 1, Created: true},
		{Header: hdr, WatchId: 1, Canceled: true, CompactRevision: 3},
		{Header: hdr, WatchId: 1},
		{Header: hdr, WatchId: 1, Fragment: true, Events: []*mvccpb.Event{put}},
	} {
		if _, ok, _ := e.encodeEventResponse(wr); ok {
			t.Fatalf("%v took the event-only path", wr)
		}
	}
}
