package e2e

import (
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// randomOps generates a random but reproducible sequence of KV requests over a small key
// set, so keys collide, versions grow, ranges overlap and compares go both ways.
type randomOps struct {
	r    *rand.Rand
	keys []string
	rev  int64 // an upper bound on the revision, for revisions near the current one
}

func (g *randomOps) key() string { return g.keys[g.r.Intn(len(g.keys))] }

// span is a key and a range end: a single key, a range, a prefix, from-key or all keys.
func (g *randomOps) span() (string, string) {
	a, b := g.key(), g.key()
	if a > b {
		a, b = b, a
	}
	switch g.r.Intn(5) {
	case 0:
		return a, ""
	case 1:
		return a, b
	case 2:
		return a[:1], string(rune(a[0] + 1))
	case 3:
		return a, "\x00"
	default:
		return "\x00", "\x00"
	}
}

func (g *randomOps) rangeReq() *pb.RangeRequest {
	k, e := g.span()
	r := rangeReq(k, e)
	if g.r.Intn(3) == 0 {
		r.Limit = int64(g.r.Intn(4))
	}
	if g.r.Intn(3) == 0 {
		r.SortTarget = pb.RangeRequest_SortTarget(g.r.Intn(5))
		r.SortOrder = pb.RangeRequest_SortOrder(g.r.Intn(3))
	}
	if g.r.Intn(4) == 0 {
		r.Revision = g.rev - int64(g.r.Intn(10))
	}
	r.KeysOnly = g.r.Intn(6) == 0
	r.CountOnly = g.r.Intn(8) == 0
	if g.r.Intn(6) == 0 {
		r.MinModRevision = g.rev - int64(g.r.Intn(20))
	}
	if g.r.Intn(6) == 0 {
		r.MaxCreateRevision = g.rev - int64(g.r.Intn(20))
	}
	return r
}

func (g *randomOps) putReq() *pb.PutRequest {
	p := &pb.PutRequest{Key: bs(g.key()), Value: bs(strconv.Itoa(g.r.Intn(100))), PrevKv: g.r.Intn(2) == 0}
	if g.r.Intn(8) == 0 {
		p.IgnoreValue, p.Value = true, nil
	}
	return p
}

func (g *randomOps) deleteReq() *pb.DeleteRangeRequest {
	k, e := g.span()
	d := &pb.DeleteRangeRequest{Key: bs(k), PrevKv: g.r.Intn(2) == 0}
	if e != "" {
		d.RangeEnd = bs(e)
	}
	return d
}

func (g *randomOps) compare() *pb.Compare {
	target := pb.Compare_CompareTarget(g.r.Intn(5))
	result := pb.Compare_CompareResult(g.r.Intn(4))
	var c *pb.Compare
	switch target {
	case pb.Compare_VALUE:
		c = cmp(g.key(), target, result, strconv.Itoa(g.r.Intn(100)))
	case pb.Compare_LEASE:
		c = cmp(g.key(), target, result, 0)
	default:
		c = cmp(g.key(), target, result, g.r.Intn(int(g.rev)+2))
	}
	if g.r.Intn(5) == 0 {
		c.RangeEnd = bs("\x00")
	}
	return c
}

func (g *randomOps) ops(depth int) []*pb.RequestOp {
	var ops []*pb.RequestOp
	used := map[string]bool{}
	for n := g.r.Intn(4); n > 0; n-- {
		switch g.r.Intn(4) {
		case 0:
			ops = append(ops, opRange(g.rangeReq()))
		case 1:
			// Distinct keys per branch: duplicates have their own scripted steps.
			if p := g.putReq(); !used[string(p.Key)] {
				used[string(p.Key)] = true
				ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: p}})
			}
		case 2:
			if k := g.key(); !used[k] && len(used) == 0 {
				used[k] = true
				ops = append(ops, opDel(k, "", g.r.Intn(2) == 0))
			}
		default:
			if depth < 1 {
				ops = append(ops, opRange(g.rangeReq()))
			}
		}
	}
	return ops
}

func (g *randomOps) txnReq() *pb.TxnRequest {
	t := &pb.TxnRequest{Success: g.ops(0), Failure: g.ops(0)}
	for n := g.r.Intn(3); n > 0; n-- {
		t.Compare = append(t.Compare, g.compare())
	}
	return t
}

func (g *randomOps) next(i int) diffStep {
	name := fmt.Sprint("op ", i)
	switch n := g.r.Intn(100); {
	case n < 35:
		g.rev++
		return put(name+" put", g.putReq())
	case n < 60:
		return rng(name+" range", g.rangeReq())
	case n < 72:
		g.rev++
		return del(name+" delete", g.deleteReq())
	case n < 97:
		g.rev++
		return txn(name+" txn", g.txnReq())
	default:
		return compact(name+" compact", &pb.CompactionRequest{Revision: g.rev - int64(g.r.Intn(15))})
	}
}

// TestDifferentialRandomKV sends the same random sequence of puts, deletes, ranges, txns
// and compactions to the server under test and to the reference etcd and requires
// identical normalized responses. CAIRN_DIFF_SEED reproduces a run.
func TestDifferentialRandomKV(t *testing.T) {
	t.Parallel()
	seed := diffSeed(t)
	p := framework.StartPair(t, framework.Options{})
	clients := func(m *framework.Member) diffClients {
		return diffClients{kv: pb.NewKVClient(m.Client().ActiveConnection())}
	}
	sut, ref := clients(p.Cairn), clients(p.Etcd)
	g := &randomOps{r: rand.New(rand.NewSource(seed)), keys: []string{"a", "a1", "a2", "b", "b1", "c", "d", "d1"}, rev: 1}
	const steps = 400
	for i := 0; i < steps; i++ {
		s := g.next(i)
		gotResp, gotErr := s.do(ctx(t), sut)
		wantResp, wantErr := s.do(ctx(t), ref)
		got, gotWire := outcome(gotResp, gotErr)
		want, wantWire := outcome(wantResp, wantErr)
		if got != want || string(gotWire) != string(wantWire) {
			t.Fatalf("seed %d step %d %q differs:\n  %s: %s\n  etcd: %s", seed, i, s.name, binName(p.Cairn), got, want)
		}
		// Track the real revision so generated revisions stay near it.
		if wantResp != nil {
			if h, ok := wantResp.(interface{ GetHeader() *pb.ResponseHeader }); ok && h.GetHeader() != nil {
				g.rev = h.GetHeader().Revision
			}
		}
	}
}

// diffSeed is a differential test's random seed: $CAIRN_DIFF_SEED if set, else the
// clock; it is logged so any run can be reproduced.
func diffSeed(t *testing.T) int64 {
	t.Helper()
	seed := time.Now().UnixNano()
	if s := os.Getenv("CAIRN_DIFF_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("CAIRN_DIFF_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (CAIRN_DIFF_SEED=%d reproduces this run)", seed, seed)
	return seed
}
