package server

import (
	"encoding/binary"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
)

func readState(index, id uint64) raft.ReadState {
	ctx := make([]byte, 8)
	binary.BigEndian.PutUint64(ctx, id)
	return raft.ReadState{Index: index, RequestCtx: ctx}
}

// A ReadIndex answer the leader queued for a member's previous run, delivered after the
// member restarted, answers no round of the new run: it carries the index committed
// before the restart, which the restarted member may have applied already, so taking it
// served a stale "linearizable" read (seen in the e2e linearizability test: a follower
// killed with a round pending answered a read with its pre-kill state right after its
// restart). Round ids went on from 0 at each start and any answer to a round at or past
// the current one was taken.
func TestReadIndexAnswerToThePreviousRunIgnored(t *testing.T) {
	boot := time.Now()
	prev := newReadIndexBatcher(nil, boot)
	var last uint64
	for i := 0; i < 100000; i++ { // the previous run's rounds
		last = prev.nextID.Add(1)
	}
	stale := readState(1291, last)

	next := newReadIndexBatcher(nil, boot.Add(time.Millisecond)) // restarted at once
	for i := 0; i < 100000; i++ {
		id := next.nextID.Add(1)
		if answers(stale, id) {
			t.Fatalf("round %d of the new run (id %d) answered by the previous run's round %d", i+1, id, last)
		}
		if !answers(readState(2000, id), id) {
			t.Fatalf("round %d: its own answer not taken", i+1)
		}
		if id > 1 && answers(readState(2000, id-1), id) {
			t.Fatalf("round %d: the previous round's late answer taken", i+1)
		}
	}
	if answers(raft.ReadState{Index: 1, RequestCtx: []byte("short")}, 1) {
		t.Fatal("an answer with a malformed request context taken")
	}
}
