package api

import (
	"math/rand/v2"
	"testing"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// slowCheckIntervals is etcd's v3rpc checkIntervals as written there (a linear scan of
// the deletes per put), with Cairn's reading of range_end "\x00": the reference the
// ordered implementation must agree with.
func slowCheckIntervals(reqs []*pb.RequestOp) (map[string]struct{}, []keyInterval, bool) {
	contains := func(dels []keyInterval, k string) bool {
		for _, iv := range dels {
			if k >= iv.begin && (iv.end == "" || k < iv.end) {
				return true
			}
		}
		return false
	}
	var dels []keyInterval
	for _, req := range reqs {
		if tv, ok := req.GetRequest().(*pb.RequestOp_RequestDeleteRange); ok && tv.RequestDeleteRange != nil {
			dels = append(dels, deleteInterval(tv.RequestDeleteRange))
		}
	}
	puts := make(map[string]struct{})
	for _, req := range reqs {
		tv, ok := req.GetRequest().(*pb.RequestOp_RequestTxn)
		if !ok {
			continue
		}
		putsThen, delsThen, ok := slowCheckIntervals(tv.RequestTxn.GetSuccess())
		if !ok {
			return nil, nil, false
		}
		putsElse, delsElse, ok := slowCheckIntervals(tv.RequestTxn.GetFailure())
		if !ok {
			return nil, nil, false
		}
		for k := range putsThen {
			if _, dup := puts[k]; dup || contains(dels, k) {
				return nil, nil, false
			}
			puts[k] = struct{}{}
		}
		for k := range putsElse {
			if _, dup := puts[k]; dup {
				if _, inThen := putsThen[k]; !inThen {
					return nil, nil, false
				}
			}
			if contains(dels, k) {
				return nil, nil, false
			}
			puts[k] = struct{}{}
		}
		dels = append(dels, delsThen...)
		dels = append(dels, delsElse...)
	}
	for _, req := range reqs {
		tv, ok := req.GetRequest().(*pb.RequestOp_RequestPut)
		if !ok || tv.RequestPut == nil {
			continue
		}
		k := string(tv.RequestPut.GetKey())
		if _, dup := puts[k]; dup || contains(dels, k) {
			return nil, nil, false
		}
		puts[k] = struct{}{}
	}
	return puts, dels, true
}

// randomBranch is a random txn branch over a tiny key space (so duplicates, overlaps,
// touching and from-key deletes are frequent), nesting up to depth.
func randomBranch(rng *rand.Rand, depth int) []*pb.RequestOp {
	keys := []string{"a", "b", "c", "d", "e", "f"}
	key := func() string { return keys[rng.IntN(len(keys))] }
	n := rng.IntN(5)
	out := make([]*pb.RequestOp, 0, n)
	for range n {
		switch r := rng.IntN(10); {
		case r < 3:
			out = append(out, put(key()))
		case r < 4:
			out = append(out, del(key(), ""))
		case r < 5:
			out = append(out, del(key(), "\x00"))
		case r < 7:
			out = append(out, del(key(), key()))
		case r < 8:
			out = append(out, get(key()))
		default:
			if depth > 0 {
				out = append(out, txn(randomBranch(rng, depth-1), randomBranch(rng, depth-1)))
			}
		}
	}
	return out
}

// TestCheckIntervalsMatchesReference compares the ordered check with the reference on
// random nested txns, both verdicts and, for accepted branches, the keys they return.
func TestCheckIntervalsMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	accepted, refused := 0, 0
	for i := range 20000 {
		branch := randomBranch(rng, 3)
		wantPuts, wantDels, wantOK := slowCheckIntervals(branch)
		got, err := checkIntervals(branch)
		if (err == nil) != wantOK {
			t.Fatalf("case %d: checkIntervals = %v, reference ok=%v\n%v", i, err, wantOK, &pb.TxnRequest{Success: branch})
		}
		if verdict := checkBranchKeys(branch); (verdict == nil) != wantOK {
			t.Fatalf("case %d: checkBranchKeys = %v, reference ok=%v\n%v", i, verdict, wantOK, &pb.TxnRequest{Success: branch})
		}
		if !wantOK {
			refused++
			continue
		}
		accepted++
		if got.puts.Len() != len(wantPuts) {
			t.Fatalf("case %d: %d puts, reference %d", i, got.puts.Len(), len(wantPuts))
		}
		for k := range wantPuts {
			if !got.puts.Has(k) {
				t.Fatalf("case %d: put %q missing", i, k)
			}
		}
		for _, k := range []string{"", "a", "a\x00", "b", "bb", "c", "d", "e", "f", "g", "z"} {
			want := false
			for _, iv := range wantDels {
				if k >= iv.begin && (iv.end == "" || k < iv.end) {
					want = true
				}
			}
			if got.deleted(k) != want {
				t.Fatalf("case %d: deleted(%q) = %v, reference %v\n%v", i, k, !want, want, &pb.TxnRequest{Success: branch})
			}
		}
	}
	if accepted < 1000 || refused < 1000 {
		t.Fatalf("random cases not varied enough: %d accepted, %d refused", accepted, refused)
	}
	t.Logf("%d accepted, %d refused", accepted, refused)
}
