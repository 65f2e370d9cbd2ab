package server

import (
	"errors"
	"testing"

	"github.com/cairn-kv/cairn/lease"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

func putOp(key string, p *pb.PutRequest) *pb.RequestOp {
	p.Key = []byte(key)
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: p}}
}

// A txn that fails in its last op changes nothing, on the store, on the lessor and across a
// restart (the entry is replayed as applied, never half-applied): here a delete of every
// key >= "a" followed by an ignore_value put of the key it just deleted. The request
// reaches the member without the client edge's validation, which refuses this txn.
func TestFailedTxnChangesNothing(t *testing.T) {
	cfg := testConfig(t)
	s := startServer(t, cfg)
	lg, err := s.LeaseGrant(ctx(t), &pb.LeaseGrantRequest{TTL: 600})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx(t), &pb.PutRequest{Key: []byte("a"), Value: []byte("1"), Lease: lg.ID}); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "b", "2")
	before := mustPut(t, s, "c", "3").Header.Revision

	txn := &pb.TxnRequest{Success: []*pb.RequestOp{
		{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte{0}}}},
		putOp("b", &pb.PutRequest{IgnoreValue: true}),
	}}
	if _, err := s.Txn(ctx(t), txn); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("txn = %v, want %v", err, ErrKeyNotFound)
	}
	check := func(s *Server, when string, wantRev int64) {
		t.Helper()
		for k, v := range map[string]string{"a": "1", "b": "2", "c": "3"} {
			if kv := mustGet(t, s, k); string(kv.Value) != v || kv.ModRevision > before {
				t.Fatalf("%s: %s = %v, want %s unchanged", when, k, kv, v)
			}
		}
		if rev := s.store.Rev(); rev != wantRev {
			t.Fatalf("%s: revision %d, want %d", when, rev, wantRev)
		}
		l := s.lessor.Lookup(lease.LeaseID(lg.ID))
		if l == nil || len(l.Keys()) != 1 || l.Keys()[0] != "a" {
			t.Fatalf("%s: lease keys = %v, want [a]", when, l)
		}
	}
	check(s, "after the failed txn", before)
	if got := mustPut(t, s, "d", "4").Header.Revision; got != before+1 {
		t.Fatalf("next put at %d, want %d", got, before+1)
	}
	s.Stop()
	s2 := startServer(t, cfg)
	check(s2, "after restart", before+1)
}
