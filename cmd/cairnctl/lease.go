package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// `bench lease-keepalive`: --leases leases are granted (not timed), then
// --clients goroutines, each with its own LeaseKeepAlive stream opened before
// the clock starts, send --total keep-alives between them; keep-alive i renews
// lease i%leases. One request, then its response: the latency is that round
// trip. A response for another lease, or with TTL <= 0 (lease not found), is
// an error. The leases are revoked afterwards, also when the run timed out.

// revokeTimeout bounds the cleanup, which runs even after --timeout expired.
const revokeTimeout = 10 * time.Second

func runLeaseKeepAlive(ctx context.Context, cfg *benchConfig) (*Result, error) {
	conns, err := dialAll(ctx, cfg.endpoints, cfg.conns)
	defer closeAll(conns)
	if err != nil {
		return nil, err
	}
	lcs := make([]pb.LeaseClient, len(conns))
	for i, cc := range conns {
		lcs[i] = pb.NewLeaseClient(cc)
	}

	ids := make([]int64, 0, cfg.leases)
	revoke := func() map[string]int {
		rctx, cancel := context.WithTimeout(context.Background(), revokeTimeout)
		defer cancel()
		errs := map[string]int{}
		for i, id := range ids {
			if _, err := lcs[i%len(lcs)].LeaseRevoke(rctx, &pb.LeaseRevokeRequest{ID: id}); err != nil {
				errs["revoke: "+err.Error()]++
			}
		}
		return errs
	}
	for i := range cfg.leases {
		resp, err := lcs[i%len(lcs)].LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: cfg.leaseTTL})
		if err == nil && resp.Error != "" {
			err = errors.New(resp.Error)
		}
		if err != nil {
			revoke()
			return nil, fmt.Errorf("grant lease %d: %w", i, err)
		}
		ids = append(ids, resp.ID)
	}

	streams := make([]pb.Lease_LeaseKeepAliveClient, cfg.clients)
	sctx, stopStreams := context.WithCancel(ctx)
	defer stopStreams()
	for c := range streams {
		if streams[c], err = lcs[c%len(lcs)].LeaseKeepAlive(sctx); err != nil {
			stopStreams()
			revoke()
			return nil, fmt.Errorf("open keep-alive stream %d: %w", c, err)
		}
	}

	var next atomic.Int64
	perClient := make([]clientStats, cfg.clients)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range cfg.clients {
		st := &perClient[c]
		st.lat = make([]time.Duration, 0, cfg.total/cfg.clients+1)
		stream := streams[c]
		lc := lcs[c%len(lcs)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := &pb.LeaseKeepAliveRequest{}
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(cfg.total) {
					break
				}
				var err error
				if stream == nil { // the last one failed; reopening is part of this request
					stream, err = lc.LeaseKeepAlive(sctx)
				}
				req.ID = ids[i%int64(len(ids))]
				t0 := time.Now()
				var resp *pb.LeaseKeepAliveResponse
				if err == nil {
					if err = stream.Send(req); err == nil {
						resp, err = stream.Recv()
					} else {
						_, err = stream.Recv() // Send's io.EOF hides the stream's status
					}
					if err != nil {
						stream = nil
					}
				}
				d := time.Since(t0)
				if err == nil {
					switch {
					case resp.ID != req.ID:
						err = fmt.Errorf("keep-alive response for lease %x, sent %x", resp.ID, req.ID)
					case resp.TTL <= 0:
						err = fmt.Errorf("keep-alive: lease not found (TTL %d)", resp.TTL)
					}
				}
				if err == nil {
					st.lat = append(st.lat, d)
					continue
				}
				if abandoned(ctx) {
					break // abandoned by --timeout; not the server's error
				}
				if st.errs == nil {
					st.errs = make(map[string]int)
				}
				st.errs[err.Error()]++
			}
			if stream != nil {
				stream.CloseSend()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	timedOut := ctx.Err() != nil
	stopStreams()

	var lat []time.Duration
	errs := revoke()
	for _, st := range perClient {
		lat = append(lat, st.lat...)
		for m, n := range st.errs {
			errs[m] += n
		}
	}
	res := newResult(lat, errs, elapsed)
	res.TimedOut = timedOut
	res.Op, res.Workload, res.Target, res.Round = cfg.op, cfg.workload, cfg.target, cfg.round
	res.Clients, res.Conns, res.Leases = cfg.clients, cfg.conns, cfg.leases
	res.Endpoints = cfg.endpoints.String()
	return res, nil
}
