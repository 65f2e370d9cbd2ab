package api

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// nestLeaves packs ops into one nested txn op whose every level stays within etcd's
// budget (a nested txn may hold what its parent's budget leaves): leaves go in chunks
// of at most budget, inner levels fan out by half the budget.
func nestLeaves(budget int, leaves []*pb.RequestOp) *pb.RequestOp {
	if len(leaves) <= budget {
		return txn(leaves, nil)
	}
	k := budget / 2
	chunk := (len(leaves) + k - 1) / k
	var kids []*pb.RequestOp
	for i := 0; i < len(leaves); i += chunk {
		kids = append(kids, nestLeaves(budget-k, leaves[i:min(i+chunk, len(leaves))]))
	}
	return txn(kids, nil)
}

// worstIntervalTxn is the txn costing the old interval check the most within etcd's
// limits (--max-txn-ops, --max-request-bytes): one nested subtree of deletes of distinct
// keys (nothing to merge), one of puts on distinct keys none of them deletes, so no duplicate cuts the check short and
// every put is tested against every delete at the root. About half the bytes each.
func worstIntervalTxn(maxTxnOps, maxBytes int) *pb.TxnRequest {
	build := func(nDel, nPut int) *pb.TxnRequest {
		dels := ops(nDel, func(i int) *pb.RequestOp { return del(fmt.Sprintf("a%x", i), "") })
		puts := ops(nPut, func(i int) *pb.RequestOp { return put(fmt.Sprintf("b%x", i)) })
		return &pb.TxnRequest{Success: ops1(nestLeaves(maxTxnOps-2, dels), nestLeaves(maxTxnOps-2, puts))}
	}
	nDel, nPut := maxBytes/10, maxBytes/16
	for range 4 { // scale to just under maxBytes
		size := proto.Size(build(nDel, nPut))
		nDel, nPut = nDel*maxBytes/size*99/100, nPut*maxBytes/size*99/100
	}
	r := build(nDel, nPut)
	if err := checkTxnRequest(r, maxTxnOps); err != nil {
		panic(fmt.Sprintf("worst txn breaks etcd's limits: %v", err))
	}
	if proto.Size(r) > maxBytes {
		panic(fmt.Sprintf("worst txn is %d bytes > %d", proto.Size(r), maxBytes))
	}
	return r
}

// BenchmarkCheckIntervalsWorst is the duplicate-key check of worstIntervalTxn at etcd's
// defaults (128 ops, 1.5 MiB).
func BenchmarkCheckIntervalsWorst(b *testing.B) {
	r := worstIntervalTxn(defaultMaxTxnOps, defaultMaxRequestBytes)
	puts, dels := countPutsDels(r.GetSuccess())
	b.Logf("txn: %d bytes, %d deletes, %d puts", proto.Size(r), dels, puts)
	b.ResetTimer()
	for range b.N {
		if _, err := checkIntervals(r.GetSuccess()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckTxnWorst is all of a Txn's validation (etcd's checks, duplicate keys,
// Cairn's total bound, which refuses this one) on worstIntervalTxn.
func BenchmarkCheckTxnWorst(b *testing.B) {
	r := worstIntervalTxn(defaultMaxTxnOps, defaultMaxRequestBytes)
	b.ResetTimer()
	for range b.N {
		if err := checkTxn(r, defaultMaxTxnOps); status.Code(err) != codes.InvalidArgument {
			b.Fatal(err)
		}
	}
}

func countPutsDels(reqs []*pb.RequestOp) (puts, dels int) {
	for _, op := range reqs {
		switch {
		case op.GetRequestPut() != nil:
			puts++
		case op.GetRequestDeleteRange() != nil:
			dels++
		case op.GetRequestTxn() != nil:
			p, d := countPutsDels(op.GetRequestTxn().GetSuccess())
			p2, d2 := countPutsDels(op.GetRequestTxn().GetFailure())
			puts, dels = puts+p+p2, dels+d+d2
		}
	}
	return puts, dels
}
