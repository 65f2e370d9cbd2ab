package server

import (
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func batchedEntry(index uint64, requests int) *raftpb.Entry {
	var data []byte
	for range requests {
		data = appendBatched(data, []byte("request"))
	}
	return &raftpb.Entry{Index: proto.Uint64(index), Type: raftpb.EntryNormal.Enum(), Data: data}
}

// Snapshots and the log kept behind them count requests, each request of a batched entry
// as one: the same as etcd's one request per entry.
func TestLogRetentionCountsRequests(t *testing.T) {
	r := newLogRetention(5)
	if r.keepFrom() != 0 {
		t.Fatalf("keepFrom %d before any entry", r.keepFrom())
	}
	r.applied(&raftpb.Entry{Index: proto.Uint64(1), Type: raftpb.EntryNormal.Enum()}) // a leader's empty entry
	r.applied(&raftpb.Entry{Index: proto.Uint64(2), Type: raftpb.EntryConfChange.Enum(), Data: []byte{8, 1}})
	r.applied(&raftpb.Entry{Index: proto.Uint64(3), Type: raftpb.EntryNormal.Enum(), Data: []byte{8, 7}}) // a lone request
	if r.since != 3 || r.keepFrom() != 1 {
		t.Fatalf("after 3 entries of one request: since %d, keepFrom %d; want 3, 1", r.since, r.keepFrom())
	}
	r.applied(batchedEntry(4, 3))
	r.applied(batchedEntry(5, 1))
	r.applied(batchedEntry(6, 4))
	// The last 5 requests: entry 6's 4 and entry 5's one.
	if r.since != 11 || r.keepFrom() != 5 {
		t.Fatalf("since %d, keepFrom %d; want 11, 5", r.since, r.keepFrom())
	}
	r.snapshotted()
	r.applied(batchedEntry(7, 128))
	if r.since != 128 || r.keepFrom() != 7 {
		t.Fatalf("after a snapshot and a batch of 128: since %d, keepFrom %d; want 128, 7", r.since, r.keepFrom())
	}
	// Many entries: the front is reused, keepFrom still the 5th last.
	for i := uint64(8); i < 5000; i++ {
		r.applied(batchedEntry(i, 1))
	}
	if r.keepFrom() != 4995 || len(r.recent)-r.head != 5 {
		t.Fatalf("keepFrom %d with %d entries kept; want 4995, 5", r.keepFrom(), len(r.recent)-r.head)
	}
}
