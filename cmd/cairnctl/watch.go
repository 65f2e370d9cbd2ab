package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// `bench watch`: --watchers watchers spread over --streams Watch streams
// (watcher i on stream i%S, watching key i%K), all created before the first
// put; then --total puts by --put-clients goroutines, put i to key i%K (with
// --rate R, put i is not sent before i/R seconds after the first).
//
// Each put's send time is taken just before the Put RPC is sent and keyed by
// the revision its response reports; each event's receipt time is taken when
// its WatchResponse is received. Latency is receipt - send for the event with
// that mod revision, so it includes the put's own commit. Throughput is
// in-order event deliveries per second, from the first put to the last
// delivery. Afterwards every watcher's event list is compared with the puts
// to its key: a missing, duplicate, out-of-order or foreign event is an error.

// Error messages of the delivery check, so tests and readers can rely on them.
const (
	errWatchUnexpected = "watch: event for a revision no put of this run reported"
	errWatchWrongKey   = "watch: event for a key the watcher does not watch"
	errWatchOrder      = "watch: duplicate or out-of-order event"
	errWatchGap        = "watch: missing event (a later one was delivered)"
	errWatchMissing    = "watch: missing event (never delivered)"
)

// watcherLog is what one watcher received; its stream's receive goroutine
// owns it until the streams are closed.
type watcherLog struct {
	key  int             // key number
	revs []int64         // mod revisions, as received
	recv []time.Duration // receipt times (since the run's base time), parallel to revs
}

// putRecord is one successful put.
type putRecord struct {
	key  int
	rev  int64
	sent time.Duration // since the run's base time, just before sending
	lat  time.Duration // sent -> response
}

// watchStats is the outcome of checkWatch.
type watchStats struct {
	lat      []time.Duration
	errs     map[string]int
	lastRecv time.Duration // latest receipt of an in-order event; 0 if none
}

// checkWatch matches every watcher's events with the puts to its key. A
// revision that no put reported is an error (a put whose response was lost
// still counts). Events that never arrived are errors, unless the run timed
// out: then an undelivered tail is abandoned, like an unanswered request.
func checkWatch(watchers []*watcherLog, puts []putRecord, keySpace int, timedOut bool) watchStats {
	st := watchStats{errs: map[string]int{}}
	byRev := make(map[int64]putRecord, len(puts))
	perKey := make([][]int64, keySpace)
	for _, p := range puts {
		byRev[p.rev] = p
		perKey[p.key] = append(perKey[p.key], p.rev)
	}
	for _, revs := range perKey {
		slices.Sort(revs)
	}
	for _, w := range watchers {
		want := perKey[w.key]
		next := 0 // index in want of the next expected revision
		var last int64
		for i, rev := range w.revs {
			p, ok := byRev[rev]
			switch {
			case !ok:
				st.errs[errWatchUnexpected]++
			case p.key != w.key:
				st.errs[errWatchWrongKey]++
			case rev <= last:
				st.errs[errWatchOrder]++
			default:
				for next < len(want) && want[next] < rev {
					st.errs[errWatchGap]++
					next++
				}
				next++ // want[next] == rev: byRev and perKey hold the same puts
				last = rev
				st.lat = append(st.lat, w.recv[i]-p.sent)
				st.lastRecv = max(st.lastRecv, w.recv[i])
			}
		}
		if missing := len(want) - next; missing > 0 && !timedOut {
			st.errs[errWatchMissing] += missing
		}
	}
	return st
}

// watchStream is one gRPC Watch stream and its watchers, in creation order.
type watchStream struct {
	stream   pb.Watch_WatchClient
	watchers []*watcherLog
	created  chan error // one value per create request: nil, or why it failed
	errs     map[string]int
}

// recvLoop reads the stream until it fails. The n-th Created response belongs
// to the n-th watcher: creates are sent one at a time, each after the last
// one's response. received counts events, for the drain phase.
func (ws *watchStream) recvLoop(base time.Time, received *atomic.Int64, keys [][]byte) error {
	byID := make(map[int64]*watcherLog, len(ws.watchers))
	nCreated := 0
	for {
		resp, err := ws.stream.Recv()
		if err != nil {
			return err
		}
		now := time.Since(base)
		switch {
		case resp.Created:
			if nCreated >= len(ws.watchers) {
				ws.errs["watch: Created response for no create request"]++
				continue
			}
			var err error
			if resp.Canceled || resp.WatchId < 0 {
				err = fmt.Errorf("create watcher %d of a stream: refused: %s", nCreated, resp.CancelReason)
			} else {
				byID[resp.WatchId] = ws.watchers[nCreated]
				nCreated++
			}
			select { // the creator waits for exactly one value per request
			case ws.created <- err:
			default:
				ws.errs["watch: Created response for no create request"]++
			}
			continue
		case resp.Canceled:
			ws.errs["watch: watcher canceled by the server: "+resp.CancelReason]++
			continue
		case resp.CompactRevision != 0:
			ws.errs["watch: watcher compacted"]++
			continue
		}
		if len(resp.Events) == 0 {
			continue // progress notification
		}
		received.Add(int64(len(resp.Events)))
		w := byID[resp.WatchId]
		if w == nil {
			ws.errs["watch: events for an unknown watch id"] += len(resp.Events)
			continue
		}
		for _, ev := range resp.Events {
			if ev.Type != mvccpb.Event_PUT || ev.Kv == nil || string(ev.Kv.Key) != string(keys[w.key]) {
				ws.errs[errWatchWrongKey]++
				continue
			}
			w.revs = append(w.revs, ev.Kv.ModRevision)
			w.recv = append(w.recv, now)
		}
	}
}

func runWatch(ctx context.Context, cfg *benchConfig) (*Result, error) {
	conns, err := dialAll(ctx, cfg.endpoints, cfg.conns)
	defer closeAll(conns)
	if err != nil {
		return nil, err
	}
	base := time.Now()
	keys := make([][]byte, cfg.keySpace)
	for k := range keys {
		keys[k] = make([]byte, cfg.keySize)
		fillKey(keys[k], k)
	}
	watchersOnKey := make([]int, cfg.keySpace)
	all := make([]*watcherLog, cfg.watchers)
	perStream := cfg.watchers/cfg.streams + 1
	wantPerWatcher := cfg.total/cfg.keySpace + 1
	streams := make([]*watchStream, cfg.streams)
	for s := range streams {
		streams[s] = &watchStream{created: make(chan error, 1), errs: map[string]int{}}
		streams[s].watchers = make([]*watcherLog, 0, perStream)
	}
	for i := range all {
		w := &watcherLog{key: i % cfg.keySpace}
		w.revs = make([]int64, 0, wantPerWatcher)
		w.recv = make([]time.Duration, 0, wantPerWatcher)
		all[i] = w
		watchersOnKey[w.key]++
		s := streams[i%cfg.streams]
		s.watchers = append(s.watchers, w)
	}

	// Streams live until the measurement is over; canceling sctx ends them.
	sctx, stopStreams := context.WithCancel(ctx)
	defer stopStreams()
	var received atomic.Int64
	var recvWG sync.WaitGroup
	recvErrs := make([]error, len(streams))
	for s, ws := range streams {
		ws.stream, err = pb.NewWatchClient(conns[s%len(conns)]).Watch(sctx)
		if err != nil {
			return nil, fmt.Errorf("open watch stream %d: %w", s, err)
		}
		recvWG.Add(1)
		go func() {
			defer recvWG.Done()
			recvErrs[s] = ws.recvLoop(base, &received, keys)
			close(ws.created) // a creator still waiting learns the stream is gone
		}()
	}
	stop := func() {
		stopStreams()
		recvWG.Wait()
	}

	// Create all watchers before the first put: one at a time per stream
	// (so Created responses map to watchers by order), streams in parallel.
	createErrs := make([]error, len(streams))
	var createWG sync.WaitGroup
	for s, ws := range streams {
		createWG.Add(1)
		go func() {
			defer createWG.Done()
			createErrs[s] = ws.createWatchers(sctx, keys)
		}()
	}
	createWG.Wait()
	if err := errors.Join(createErrs...); err != nil {
		stop()
		return nil, err
	}

	// Puts.
	var next atomic.Int64
	perClient := make([][]putRecord, cfg.clients)
	putErrs := make([]map[string]int, cfg.clients)
	value := makeValue(cfg.valSize)
	start := time.Since(base)
	var putWG sync.WaitGroup
	for c := range cfg.clients {
		kv := pb.NewKVClient(conns[c%len(conns)])
		putWG.Add(1)
		go func() {
			defer putWG.Done()
			recs := make([]putRecord, 0, cfg.total/cfg.clients+1)
			errs := map[string]int{}
			req := &pb.PutRequest{Value: value}
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(cfg.total) {
					break
				}
				k := int(i % int64(cfg.keySpace))
				req.Key = keys[k]
				if cfg.rate > 0 {
					due := start + time.Duration(float64(i)/cfg.rate*float64(time.Second))
					if d := due - time.Since(base); d > 0 {
						time.Sleep(d)
					}
				}
				sent := time.Since(base)
				resp, err := kv.Put(ctx, req)
				if err == nil {
					recs = append(recs, putRecord{key: k, rev: resp.GetHeader().GetRevision(), sent: sent, lat: time.Since(base) - sent})
				} else if !abandoned(ctx) {
					errs["put: "+err.Error()]++
				}
			}
			perClient[c], putErrs[c] = recs, errs
		}()
	}
	putWG.Wait()
	putsEnd := time.Since(base)
	var puts []putRecord
	var expected int64
	for _, recs := range perClient {
		puts = append(puts, recs...)
		for _, p := range recs {
			expected += int64(watchersOnKey[p.key])
		}
	}

	// Drain: wait until as many events arrived as the puts should produce,
	// --idle-timeout passed without a new one, or ctx expired.
	tick := time.NewTicker(time.Millisecond)
	lastCount, lastChange := received.Load(), time.Now()
	for received.Load() < expected && ctx.Err() == nil {
		<-tick.C
		if n := received.Load(); n != lastCount {
			lastCount, lastChange = n, time.Now()
		} else if time.Since(lastChange) > cfg.idleTimeout {
			break
		}
	}
	tick.Stop()
	timedOut := ctx.Err() != nil
	end := time.Since(base)
	stop()

	st := checkWatch(all, puts, cfg.keySpace, timedOut)
	for _, m := range putErrs {
		for msg, n := range m {
			st.errs[msg] += n
		}
	}
	for s, ws := range streams {
		for msg, n := range ws.errs {
			st.errs[msg] += n
		}
		// When the run timed out, streams ended by its cancellation are expected.
		if err := recvErrs[s]; err != nil && !isCanceled(err) && !timedOut {
			st.errs["watch stream: "+err.Error()]++
		}
	}
	if st.lastRecv > 0 && !timedOut {
		end = max(st.lastRecv, putsEnd)
	}
	res := newResult(st.lat, st.errs, end-start)
	res.TimedOut = timedOut
	res.Op, res.Workload, res.Target, res.Round = cfg.op, cfg.workload, cfg.target, cfg.round
	res.Clients, res.Conns = cfg.clients, cfg.conns
	res.Watchers, res.Streams, res.Puts = cfg.watchers, cfg.streams, int(min(next.Load(), int64(cfg.total)))
	res.Endpoints = cfg.endpoints.String()
	if len(puts) > 0 {
		putLat := make([]time.Duration, len(puts))
		for i, p := range puts {
			putLat[i] = p.lat
		}
		pr := newResult(putLat, nil, 0)
		res.PutAvgMs, res.PutP50Ms, res.PutP99Ms = pr.AvgMs, pr.P50Ms, pr.P99Ms
	}
	return res, nil
}

// createWatchers creates the stream's watchers one at a time.
func (ws *watchStream) createWatchers(ctx context.Context, keys [][]byte) error {
	for i, w := range ws.watchers {
		req := &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{
			CreateRequest: &pb.WatchCreateRequest{Key: keys[w.key]},
		}}
		if err := ws.stream.Send(req); err != nil {
			return fmt.Errorf("create watcher %d of a stream: %w", i, err)
		}
		select {
		case err, ok := <-ws.created:
			if !ok {
				return fmt.Errorf("create watcher %d of a stream: stream closed", i)
			}
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("create watcher %d of a stream: %w", i, ctx.Err())
		}
	}
	return nil
}

// isCanceled reports whether err is how a stream ends when its context is
// canceled (which is how the bench closes its streams).
func isCanceled(err error) bool {
	return errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled
}
