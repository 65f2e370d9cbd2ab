package linearizability

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Lease safety: a keep-alive sent at time s and answered with success (TTL t) promises
// the lease until s + t at the earliest: the server renewed it after s. A lock held on
// that promise has two holders if the cluster revokes the lease before then. The lease
// workload keeps leases alive, each with one key, and a watcher records when each key
// is deleted (the lease's revocation, observed: the revocation itself committed no
// later). A deletion observed before s + t of a success is a violation, whatever the
// clocks of the members: all times are the test process's monotonic clock.

// LeaseConfig configures RunLeases.
type LeaseConfig struct {
	// Prefix is where the leases' keys go (one key per lease); nothing else may
	// write under it.
	Prefix string
	// TTL is each lease's TTL in seconds.
	TTL int64
	// Every paces each keeper's keep-alives.
	Every time.Duration
	// OpTimeout bounds every request.
	OpTimeout time.Duration
	// MaxOps bounds each keeper's requests (next to the stop channel).
	MaxOps int
}

// leaseRun is one lease of one keeper, its key, and every successful keep-alive.
type leaseRun struct {
	keeper string
	key    string
	id     clientv3.LeaseID
	oks    []leaseOK
}

type leaseOK struct {
	sent time.Time
	ttl  int64
}

// LeaseReport is what RunLeases observed; Violations is empty when lease safety held.
type LeaseReport struct {
	Leases, KeepAlives, KeepAliveErrors, Expired int
	Violations                                   []string
}

func (r *LeaseReport) String() string {
	return fmt.Sprintf("%d leases, %d keep-alives succeeded, %d failed, %d leases expired and deleted, %d safety violations",
		r.Leases, r.KeepAlives, r.KeepAliveErrors, r.Expired, len(r.Violations))
}

// RunLeases runs one keeper per client, each keeping one lease (and its key) alive at a
// time and granting a new one when the cluster expired it, and a watcher on watcher,
// until stop is closed; it then checks every success against the deletions observed.
// The watcher gets grace after the stop to deliver deletions that were committed.
func RunLeases(keepers []Client, watcher *clientv3.Client, cfg LeaseConfig, stop <-chan struct{}, grace time.Duration) (*LeaseReport, error) {
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	deleted := map[string]time.Time{}
	var dmu sync.Mutex
	wdone := make(chan struct{})
	// From the current revision, so the watch starts before any keeper's key exists.
	rctx, rcancel := context.WithTimeout(context.Background(), cfg.OpTimeout*5)
	r, err := watcher.Get(rctx, cfg.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	rcancel()
	if err != nil {
		return nil, fmt.Errorf("lease workload: revision to watch from: %w", err)
	}
	wch := watcher.Watch(wctx, cfg.Prefix, clientv3.WithPrefix(), clientv3.WithRev(r.Header.Revision+1))
	go func() {
		defer close(wdone)
		for wr := range wch {
			now := time.Now()
			for _, ev := range wr.Events {
				if ev.Type != mvccpb.DELETE {
					continue
				}
				dmu.Lock()
				if _, seen := deleted[string(ev.Kv.Key)]; !seen {
					deleted[string(ev.Kv.Key)] = now
				}
				dmu.Unlock()
			}
		}
	}()

	var mu sync.Mutex
	var runs []*leaseRun
	rep := &LeaseReport{}
	var wg sync.WaitGroup
	for i, k := range keepers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kp := &keeper{name: k.Name, cli: k.Cli, cfg: cfg, prefix: fmt.Sprintf("%s%d/", cfg.Prefix, i)}
			kp.run(stop, func(lr *leaseRun) {
				mu.Lock()
				runs = append(runs, lr)
				mu.Unlock()
			})
			mu.Lock()
			rep.KeepAliveErrors += kp.errs
			mu.Unlock()
		}()
	}
	wg.Wait()
	time.Sleep(grace)
	wcancel()
	<-wdone

	dmu.Lock()
	defer dmu.Unlock()
	rep.Leases = len(runs)
	sort.Slice(runs, func(i, j int) bool { return runs[i].key < runs[j].key })
	for _, lr := range runs {
		rep.KeepAlives += len(lr.oks)
		at, gone := deleted[lr.key]
		if !gone {
			continue
		}
		rep.Expired++
		for _, ok := range lr.oks {
			if until := ok.sent.Add(time.Duration(ok.ttl) * time.Second); at.Before(until) {
				rep.Violations = append(rep.Violations, fmt.Sprintf(
					"%s: lease %x (key %s): keep-alive sent at %s succeeded (TTL %d), but the key was deleted %v before the lease's promised end",
					lr.keeper, lr.id, lr.key, ok.sent.Format("15:04:05.000"), ok.ttl, until.Sub(at).Round(time.Millisecond)))
			}
		}
	}
	return rep, nil
}

type keeper struct {
	name   string
	cli    *clientv3.Client
	cfg    LeaseConfig
	prefix string
	seq    int
	errs   int
}

// run grants a lease, puts its key, keeps it alive until the cluster says it is gone
// (then starts over with a new lease and key) or stop.
func (k *keeper) run(stop <-chan struct{}, add func(*leaseRun)) {
	var cur *leaseRun
	for i := 0; i < k.cfg.MaxOps; i++ {
		select {
		case <-stop:
			return
		default:
		}
		started := time.Now()
		if cur == nil {
			cur = k.start()
			if cur != nil {
				add(cur)
			}
		} else if !k.keepAlive(cur) {
			cur = nil
		}
		select {
		case <-stop:
			return
		case <-time.After(k.cfg.Every - time.Since(started)):
		}
	}
}

// start grants a lease and puts its key; nil when the grant failed. A failed put keeps
// the lease: the key may exist (the outcome is unknown), and it is kept alive like any.
func (k *keeper) start() *leaseRun {
	ctx, cancel := context.WithTimeout(context.Background(), k.cfg.OpTimeout)
	defer cancel()
	sent := time.Now()
	g, err := k.cli.Grant(ctx, k.cfg.TTL)
	if err != nil {
		k.errs++
		return nil
	}
	k.seq++
	lr := &leaseRun{keeper: k.name, key: fmt.Sprintf("%s%d", k.prefix, k.seq), id: g.ID}
	// The grant is a promise too: the lease lives a TTL from after the request.
	lr.oks = append(lr.oks, leaseOK{sent: sent, ttl: g.TTL})
	if _, err := k.cli.Put(ctx, lr.key, "held", clientv3.WithLease(g.ID)); err != nil {
		k.errs++
	}
	return lr
}

// keepAlive sends one keep-alive; false once the cluster says the lease is gone.
func (k *keeper) keepAlive(lr *leaseRun) bool {
	ctx, cancel := context.WithTimeout(context.Background(), k.cfg.OpTimeout)
	defer cancel()
	sent := time.Now()
	r, err := k.cli.KeepAliveOnce(ctx, lr.id)
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		return false
	case err != nil:
		k.errs++
		return true
	}
	lr.oks = append(lr.oks, leaseOK{sent: sent, ttl: r.TTL})
	return true
}
