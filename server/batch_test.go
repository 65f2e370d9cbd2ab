package server

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// batchRequests are KV writes whose answers depend on each other's order: txns
// comparing what earlier requests wrote, deletes, a put and a txn that fail (lease not
// found, ignore_value on a missing key) between requests that succeed, a txn whose
// compare fails.
func batchRequests() []*pb.InternalRaftRequest {
	put := func(k, v string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Value: []byte(v)}}}
	}
	cmp := func(k string, target pb.Compare_CompareTarget, res pb.Compare_CompareResult, c *pb.Compare) *pb.Compare {
		c.Key, c.Target, c.Result = []byte(k), target, res
		return c
	}
	return []*pb.InternalRaftRequest{
		{Put: &pb.PutRequest{Key: []byte("a"), Value: []byte("1")}},
		{Put: &pb.PutRequest{Key: []byte("b"), Value: []byte("1")}},
		{Txn: &pb.TxnRequest{
			Compare: []*pb.Compare{cmp("a", pb.Compare_VERSION, pb.Compare_EQUAL, &pb.Compare{TargetUnion: &pb.Compare_Version{Version: 1}})},
			Success: []*pb.RequestOp{put("a", "2")}, Failure: []*pb.RequestOp{put("c", "no")},
		}},
		{Put: &pb.PutRequest{Key: []byte("x"), Value: []byte("1"), Lease: 999}}, // fails: no such lease
		{Txn: &pb.TxnRequest{
			Compare: []*pb.Compare{cmp("a", pb.Compare_VALUE, pb.Compare_EQUAL, &pb.Compare{TargetUnion: &pb.Compare_Value{Value: []byte("2")}})},
			Success: []*pb.RequestOp{
				{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("b"), PrevKv: true}}},
				put("d", "1"),
			},
		}},
		{Txn: &pb.TxnRequest{Success: []*pb.RequestOp{ // fails: ignore_value of a missing key
			put("f", "1"),
			{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("e"), IgnoreValue: true}}},
		}}},
		{DeleteRange: &pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), PrevKv: true}},
		{Txn: &pb.TxnRequest{
			Compare: []*pb.Compare{cmp("a", pb.Compare_CREATE, pb.Compare_EQUAL, &pb.Compare{TargetUnion: &pb.Compare_CreateRevision{CreateRevision: 0}})},
			Success: []*pb.RequestOp{put("a", "3")},
		}},
		{Put: &pb.PutRequest{Key: []byte("a"), Value: []byte("4"), PrevKv: true}},
		{Txn: &pb.TxnRequest{ // compare fails: the failure branch runs
			Compare: []*pb.Compare{cmp("a", pb.Compare_MOD, pb.Compare_GREATER, &pb.Compare{TargetUnion: &pb.Compare_ModRevision{ModRevision: 100}})},
			Success: []*pb.RequestOp{put("g", "no")},
			Failure: []*pb.RequestOp{put("g", "1"), {Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a")}}}},
		}},
	}
}

// proposeAsBatch proposes reqs as one batched entry, in this order, and returns each
// one's result.
func proposeAsBatch(t *testing.T, s *Server, reqs []*pb.InternalRaftRequest) []applyResult {
	t.Helper()
	var data []byte
	var waits []<-chan applyResult
	for _, r := range reqs {
		r.Header = &pb.RequestHeader{}
		r.Id = s.ids.next()
		b, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		data = appendBatched(data, b)
		waits = append(waits, s.proposals.register(r.Id))
	}
	if err := s.node.Propose(ctx(t), data); err != nil {
		t.Fatalf("propose batch: %v", err)
	}
	var res []applyResult
	for _, w := range waits {
		select {
		case r := <-w:
			res = append(res, r)
		case <-ctx(t).Done():
			t.Fatal("batched request not applied")
		}
	}
	return res
}

// sameResult fails unless a and b answered alike: the same error, or equal responses.
func sameResult(t *testing.T, what string, a, b applyResult) {
	t.Helper()
	if fmt.Sprint(a.err) != fmt.Sprint(b.err) {
		t.Fatalf("%s: error %v, one by one %v", what, a.err, b.err)
	}
	if a.err == nil && !proto.Equal(a.resp.(proto.Message), b.resp.(proto.Message)) {
		t.Fatalf("%s:\n%v\none by one:\n%v", what, a.resp, b.resp)
	}
}

// storeSnapshot is what a client sees of the whole store: every key, the revision, the
// HashKV.
func storeSnapshot(t *testing.T, s *Server) string {
	t.Helper()
	resp, err := s.Range(ctx(t), &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
	if err != nil {
		t.Fatal(err)
	}
	h, rev, _, err := s.store.HashByRev(0)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("rev %d hash %d kvs %v", rev, h, resp.Kvs)
}

// A batch of requests in one raft entry gets the same revisions and answers, and
// leaves the same store, as the same requests proposed one by one; a restart that
// replays the batched entries from the WAL rebuilds the same store.
func TestBatchMatchesOneByOne(t *testing.T) {
	cfg := testConfig(t)
	batched := startServer(t, cfg)
	single := startServer(t, testConfig(t))

	got := proposeAsBatch(t, batched, batchRequests())
	for i, r := range batchRequests() {
		want, err := single.propose(ctx(t), r)
		if err != nil {
			want = applyResult{err: err}
		}
		sameResult(t, fmt.Sprintf("request %d", i), got[i], want)
	}
	for i, wantErr := range []bool{3: true, 5: true, 9: false} {
		if (got[i].err != nil) != wantErr {
			t.Fatalf("request %d: error %v", i, got[i].err)
		}
	}
	want := storeSnapshot(t, single)
	if s := storeSnapshot(t, batched); s != want {
		t.Fatalf("batched store:\n%s\none by one:\n%s", s, want)
	}

	// Restart without the db: the whole log, batched entry included, is applied again.
	batched.Stop()
	if err := os.Remove(cfg.BackendPath()); err != nil {
		t.Fatal(err)
	}
	restarted := startServer(t, cfg)
	if s := storeSnapshot(t, restarted); s != want {
		t.Fatalf("after replaying the WAL:\n%s\nwant:\n%s", s, want)
	}
}

// Writes arriving while the Ready loop makes a write durable wait for it (raft could not
// write them sooner) and are proposed together once it ended: one entry, each write with
// its own revision and answer.
func TestWritesDuringSyncWriteShareAnEntry(t *testing.T) {
	s := startServer(t, testConfig(t))
	mustPut(t, s, "warm", "up")
	entries := func() (requests, count uint64) {
		var m dto.Metric
		if err := s.metrics.proposalBatchRequests.Write(&m); err != nil {
			t.Fatal(err)
		}
		return uint64(m.GetHistogram().GetSampleSum()), m.GetHistogram().GetSampleCount()
	}
	reqs0, entries0 := entries()

	// The Ready loop is frozen, so the write this test stands for is the only one.
	s.node.FreezeReadyLoop(time.Minute)
	s.batcher.syncWrite(true) // as the Ready loop does around an fsync
	const n = 20
	revs := make(chan int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := s.Put(ctx(t), &pb.PutRequest{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte("v")})
			if err != nil {
				t.Errorf("put: %v", err)
				return
			}
			revs <- resp.Header.Revision
		}()
	}
	eventually(t, 5*time.Second, "every write queued", func() bool {
		s.batcher.mu.Lock()
		defer s.batcher.mu.Unlock()
		return len(s.batcher.queue) == n
	})
	if reqs, _ := entries(); reqs != reqs0 {
		t.Fatalf("%d requests proposed while the Ready loop was writing", reqs-reqs0)
	}
	s.batcher.syncWrite(false)
	eventually(t, 5*time.Second, "the queue proposed", func() bool {
		reqs, _ := entries()
		return reqs-reqs0 == n
	})
	if reqs, count := entries(); reqs-reqs0 != n || count-entries0 != 1 {
		t.Fatalf("%d requests in %d entries, want %d in one", reqs-reqs0, count-entries0, n)
	}
	s.node.FreezeReadyLoop(0)
	wg.Wait()
	close(revs)
	seen := map[int64]bool{}
	for r := range revs {
		seen[r] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct revisions for %d puts", len(seen), n)
	}
}

// Concurrent client writes are proposed together (some raft entry holds more than one
// of them), and every answer is the one the same requests get one by one, in the order
// they were applied (their revisions).
func TestConcurrentWritesBatched(t *testing.T) {
	s := startServer(t, testConfig(t))
	const n = 200
	for round := 0; ; round++ {
		if round == 5 {
			t.Fatal("no two concurrent writes ever shared a raft entry")
		}
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.Put(context.Background(), &pb.PutRequest{Key: []byte(fmt.Sprintf("k%d", i%20)), Value: []byte(fmt.Sprint(round, i))}); err != nil {
					t.Errorf("put: %v", err)
				}
			}()
		}
		wg.Wait()
		var m dto.Metric
		if err := s.metrics.proposalBatchRequests.Write(&m); err != nil {
			t.Fatal(err)
		}
		h := m.GetHistogram()
		t.Logf("round %d: %d requests in %d entries", round, uint64(h.GetSampleSum()), h.GetSampleCount())
		if uint64(h.GetSampleSum()) > h.GetSampleCount() {
			break
		}
	}

	// Concurrent txns depending on each other: each increments a counter by compare and
	// swap. Replayed one by one on another member in the order they were applied (their
	// revisions), each gets the same answer at the same revision.
	base := mustPut(t, s, "ctr", "0").Header.Revision
	var mu sync.Mutex
	answers := map[int64]*pb.TxnResponse{}
	reqs := map[int64]*pb.TxnRequest{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := fmt.Sprint(i % 10)
			r := &pb.TxnRequest{
				Compare: []*pb.Compare{{Key: []byte("ctr"), Target: pb.Compare_VALUE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Value{Value: []byte(v)}}},
				Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("ctr"), Value: []byte(fmt.Sprint(i%10 + 1))}}}},
				Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(fmt.Sprintf("miss%d", i)), Value: []byte(v)}}}},
			}
			resp, err := s.Txn(context.Background(), r)
			if err != nil {
				t.Errorf("txn: %v", err)
				return
			}
			mu.Lock()
			answers[resp.Header.Revision] = resp
			reqs[resp.Header.Revision] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(answers) != n {
		t.Fatalf("%d distinct revisions for %d writing txns", len(answers), n)
	}
	succeeded := 0
	for _, a := range answers {
		if a.Succeeded {
			succeeded++
		}
	}
	if got := string(mustGet(t, s, "ctr").Value); got != fmt.Sprint(succeeded) {
		t.Fatalf("counter %s after %d successful compare-and-swaps", got, succeeded)
	}
	single := startServer(t, testConfig(t))
	for mustPut(t, single, "filler", "").Header.Revision < base-1 {
	}
	mustPut(t, single, "ctr", "0")
	for rev := base + 1; rev <= base+n; rev++ {
		resp, err := single.Txn(ctx(t), reqs[rev])
		if err != nil {
			t.Fatal(err)
		}
		a := answers[rev]
		if resp.Header.Revision != rev || resp.Succeeded != a.Succeeded || len(resp.Responses) != len(a.Responses) {
			t.Fatalf("txn applied at %d answered %v, one by one %v", rev, a, resp)
		}
		for i := range resp.Responses {
			if !proto.Equal(resp.Responses[i], a.Responses[i]) {
				t.Fatalf("txn applied at %d answered %v, one by one %v", rev, a, resp)
			}
		}
	}
}
