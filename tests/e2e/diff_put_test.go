package e2e

import (
	"context"
	"fmt"
	"testing"

	"github.com/cairn-kv/cairn/tests/framework"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// runDiffSteps runs each step against Cairn then etcd and requires identical outcomes
// (normalized response or gRPC code and message).
func runDiffSteps(t *testing.T, p *framework.Pair, steps []diffStep) {
	t.Helper()
	clients := func(m *framework.Member) diffClients {
		conn := m.Client().ActiveConnection()
		return diffClients{kv: pb.NewKVClient(conn), lease: pb.NewLeaseClient(conn)}
	}
	sut, ref := clients(p.Cairn), clients(p.Etcd)
	mismatches := 0
	for i, s := range steps {
		gotResp, gotErr := s.do(ctx(t), sut)
		wantResp, wantErr := s.do(ctx(t), ref)
		got, gotWire := outcome(gotResp, gotErr)
		want, wantWire := outcome(wantResp, wantErr)
		t.Logf("step %d %q: %s", i, s.name, want)
		if got != want || string(gotWire) != string(wantWire) {
			mismatches++
			t.Errorf("step %d %q differs:\n  %s: %s\n  etcd: %s", i, s.name, binName(p.Cairn), got, want)
		}
		if mismatches >= 10 {
			t.Fatalf("stopping after %d mismatches", mismatches)
		}
	}
}

// TestDifferentialPutErrorPrecedence sends every combination of {ignore_value,
// ignore_lease, prev_kv} x {key present, missing} x {lease granted, not granted, 0}, as a
// plain Put and as the only op of a Txn, and requires etcd's answer, including which
// error wins when several apply (etcd checks a txn put's key before its lease, a plain
// put's lease first).
func TestDifferentialPutErrorPrecedence(t *testing.T) {
	t.Parallel()
	p := framework.StartPair(t)
	const granted, missing = 7100, 7199
	steps := []diffStep{
		step("grant lease", func(ctx context.Context, c diffClients) (*pb.LeaseGrantResponse, error) {
			return c.lease.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: granted, TTL: 600})
		}),
	}
	type combo struct {
		ignoreValue, ignoreLease, prevKV, present bool
		lease                                     int64
	}
	var combos []combo
	for flags := 0; flags < 8; flags++ {
		for _, present := range []bool{true, false} {
			for _, l := range []int64{granted, missing, 0} {
				combos = append(combos, combo{flags&1 != 0, flags&2 != 0, flags&4 != 0, present, l})
			}
		}
	}
	var checks []diffStep
	for i, c := range combos {
		for _, inTxn := range []bool{false, true} {
			key := fmt.Sprintf("k%02d-txn=%v", i, inTxn)
			if c.present {
				steps = append(steps, put("create "+key, &pb.PutRequest{Key: bs(key), Value: bs("old"), Lease: granted}))
			}
			r := &pb.PutRequest{Key: bs(key), IgnoreValue: c.ignoreValue, IgnoreLease: c.ignoreLease, PrevKv: c.prevKV, Lease: c.lease}
			if !c.ignoreValue {
				r.Value = bs("new")
			}
			name := fmt.Sprintf("%s ignore_value=%v ignore_lease=%v prev_kv=%v present=%v lease=%d",
				key, c.ignoreValue, c.ignoreLease, c.prevKV, c.present, c.lease)
			if inTxn {
				checks = append(checks, txn("txn put "+name, &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: r}}}}))
			} else {
				checks = append(checks, put("put "+name, r))
			}
		}
	}
	steps = append(steps, checks...)
	steps = append(steps, rng("final all", rangeReq("\x00", "\x00")))
	runDiffSteps(t, p, steps)
}
