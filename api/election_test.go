package api

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/v3electionpb"
)

// observeStream is the server side of an Observe call: what is sent goes to a channel.
type observeStream struct {
	grpc.ServerStream
	ctx  context.Context
	sent chan *v3electionpb.LeaderResponse
}

func (s *observeStream) Context() context.Context { return s.ctx }

func (s *observeStream) Send(r *v3electionpb.LeaderResponse) error {
	s.sent <- r
	return nil
}

type campaignResult struct {
	r   *v3electionpb.CampaignResponse
	err error
}

func TestElection(t *testing.T) {
	m := newMemKV()
	s := &electionServer{c: concurrency{b: m}}
	la, lb := grantLease(t, m), grantLease(t, m)
	name := []byte("e")

	_, err := s.Leader(testCtx(t), &v3electionpb.LeaderRequest{Name: name})
	requireStatus(t, err, codes.Unknown, "election: no leader")

	// Observe before anyone campaigns: it waits for the first candidate.
	octx, ocancel := context.WithCancel(context.Background())
	ostream := &observeStream{ctx: octx, sent: make(chan *v3electionpb.LeaderResponse, 16)}
	odone := make(chan error, 1)
	go func() { odone <- s.Observe(&v3electionpb.LeaderRequest{Name: name}, ostream) }()
	expect := func(val string) {
		t.Helper()
		r := receive(t, ostream.sent)
		if string(r.Kv.Value) != val || r.Header.GetRevision() < r.Kv.ModRevision || r.Header.GetClusterId() != 1 {
			t.Fatalf("observed %v, want %q", r, val)
		}
	}
	requireWaiting(t, ostream.sent)

	ca, err := s.Campaign(testCtx(t), &v3electionpb.CampaignRequest{Name: name, Lease: la, Value: []byte("a")})
	if err != nil {
		t.Fatal(err)
	}
	leaderA := ca.Leader
	if string(leaderA.Key) != "e/101" || leaderA.Rev != ca.Header.Revision || leaderA.Lease != la || string(leaderA.Name) != "e" {
		t.Fatalf("campaign a: %v", ca)
	}
	expect("a")

	cb := make(chan campaignResult, 1)
	go func() {
		r, err := s.Campaign(testCtx(t), &v3electionpb.CampaignRequest{Name: name, Lease: lb, Value: []byte("b")})
		cb <- campaignResult{r, err}
	}()
	requireWaiting(t, cb)

	if _, err := s.Proclaim(testCtx(t), &v3electionpb.ProclaimRequest{Leader: leaderA, Value: []byte("a2")}); err != nil {
		t.Fatal(err)
	}
	expect("a2")
	lr, err := s.Leader(testCtx(t), &v3electionpb.LeaderRequest{Name: name})
	if err != nil || string(lr.Kv.Value) != "a2" || string(lr.Kv.Key) != "e/101" {
		t.Fatalf("leader: %v %v", lr, err)
	}

	stale := &v3electionpb.LeaderKey{Name: name, Key: leaderA.Key, Rev: leaderA.Rev + 100, Lease: la}
	_, err = s.Proclaim(testCtx(t), &v3electionpb.ProclaimRequest{Leader: stale, Value: []byte("x")})
	requireStatus(t, err, codes.Unknown, "election: not leader")
	_, err = s.Proclaim(testCtx(t), &v3electionpb.ProclaimRequest{})
	requireStatus(t, err, codes.Unknown, `"leader" field must be provided`)
	_, err = s.Resign(testCtx(t), &v3electionpb.ResignRequest{})
	requireStatus(t, err, codes.Unknown, `"leader" field must be provided`)
	if _, err := s.Resign(testCtx(t), &v3electionpb.ResignRequest{Leader: stale}); err != nil {
		t.Fatalf("resign with a stale key: %v", err)
	}
	requireWaiting(t, cb)

	if _, err := s.Resign(testCtx(t), &v3electionpb.ResignRequest{Leader: leaderA}); err != nil {
		t.Fatal(err)
	}
	rb := receive(t, cb)
	if rb.err != nil || string(rb.r.Leader.Key) != "e/102" {
		t.Fatalf("campaign b: %+v", rb)
	}
	expect("b")

	// Campaigning again with another value proclaims it, keeping the key.
	again, err := s.Campaign(testCtx(t), &v3electionpb.CampaignRequest{Name: name, Lease: lb, Value: []byte("b2")})
	if err != nil || again.Leader.Rev != rb.r.Leader.Rev {
		t.Fatalf("re-campaign: %v %v", again, err)
	}
	expect("b2")

	// A campaign given up by its caller removes its key.
	cctx, ccancel := context.WithCancel(context.Background())
	cc := make(chan campaignResult, 1)
	lc := grantLease(t, m)
	go func() {
		r, err := s.Campaign(cctx, &v3electionpb.CampaignRequest{Name: name, Lease: lc, Value: []byte("c")})
		cc <- campaignResult{r, err}
	}()
	requireWaiting(t, cc)
	ccancel()
	requireStatus(t, receive(t, cc).err, codes.Canceled, "context canceled")
	if r, _ := m.Range(testCtx(t), &pb.RangeRequest{Key: sessionKey(name, lc)}); len(r.Kvs) != 0 {
		t.Fatal("canceled campaign's key left behind")
	}

	// The leader's lease going ends the leadership.
	if _, err := m.LeaseRevoke(testCtx(t), &pb.LeaseRevokeRequest{ID: lb}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Leader(testCtx(t), &v3electionpb.LeaderRequest{Name: name})
	requireStatus(t, err, codes.Unknown, "election: no leader")

	ocancel()
	requireStatus(t, receive(t, odone), codes.Canceled, "context canceled")
	if n := m.numStreams(); n != 0 {
		t.Fatalf("%d watch streams left open", n)
	}
}
