package linearizability

import (
	"context"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// WorkloadConfig configures Run.
type WorkloadConfig struct {
	// Keys are the keys operated on.
	Keys []string
	// OpTimeout bounds every request; a request that fails or times out has
	// an unknown outcome.
	OpTimeout time.Duration
	// MaxOps bounds each client's operations (a safety bound next to the
	// stop channel).
	MaxOps int
	// ErrorBackoff is how long a client waits after a failed request, so a
	// client of a dead member does not flood the history with failures.
	ErrorBackoff time.Duration
	// MinOpInterval paces each client: it starts at most one operation per
	// interval, which bounds the history's size.
	MinOpInterval time.Duration
	// Seed seeds the clients' choices (client i uses Seed+i).
	Seed int64
}

// Client is one workload client: a clientv3 client and a name (e.g. the
// endpoints it talks to) for the history.
type Client struct {
	Name string
	Cli  *clientv3.Client
}

// Stats counts what a workload did.
type Stats struct {
	mu     sync.Mutex
	Ops    map[string]int // "put ok", "cas failed", "get error", ...
	Errors map[string]int // error text (shortened) -> count
}

func (s *Stats) add(kind Kind, result string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Ops == nil {
		s.Ops, s.Errors = map[string]int{}, map[string]int{}
	}
	s.Ops[kind.String()+" "+result]++
	if err != nil {
		msg := err.Error()
		if len(msg) > 80 {
			msg = msg[:80]
		}
		s.Errors[msg]++
	}
}

// String renders the counts in a stable order.
func (s *Stats) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []string
	for _, k := range sortedKeys(s.Ops) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, s.Ops[k]))
	}
	var errs []string
	for _, k := range sortedKeys(s.Errors) {
		errs = append(errs, fmt.Sprintf("%dx %q", s.Errors[k], k))
	}
	out := strings.Join(parts, " ")
	if len(errs) > 0 {
		out += "; errors: " + strings.Join(errs, ", ")
	}
	return out
}

// Run runs one goroutine per client until stop is closed (or MaxOps),
// recording every operation into rec, and returns once all have finished
// (at most OpTimeout+ErrorBackoff after stop is closed).
func Run(clients []Client, cfg WorkloadConfig, rec *Recorder, stop <-chan struct{}) *Stats {
	stats := &Stats{}
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &worker{
				id: i, c: c, cfg: cfg, rec: rec, stats: stats,
				rnd:  rand.New(rand.NewSource(cfg.Seed + int64(i))),
				last: map[string]*State{},
			}
			w.run(stop)
		}()
	}
	wg.Wait()
	return stats
}

type worker struct {
	id    int
	c     Client
	cfg   WorkloadConfig
	rec   *Recorder
	stats *Stats
	rnd   *rand.Rand
	seq   int
	// last is what this client last saw of each key (nil: nothing yet),
	// the expected value of its next CAS on it.
	last map[string]*State
}

func (w *worker) run(stop <-chan struct{}) {
	proc := w.rec.NewProcess()
	for i := 0; i < w.cfg.MaxOps; i++ {
		select {
		case <-stop:
			return
		default:
		}
		key := w.cfg.Keys[w.rnd.Intn(len(w.cfg.Keys))]
		var kind Kind
		switch r := w.rnd.Intn(100); {
		case r < 35:
			kind = Get
		case r < 60:
			kind = Put
		case r < 90:
			kind = CAS
		default:
			kind = Delete
		}
		started := time.Now()
		out, err := w.do(proc, kind, key)
		if out.Unknown {
			// This operation stays open forever in the history.
			proc = w.rec.NewProcess()
		}
		pause := w.cfg.MinOpInterval - time.Since(started)
		if err != nil {
			pause = max(pause, w.cfg.ErrorBackoff)
		}
		if pause > 0 {
			select {
			case <-stop:
				return
			case <-time.After(pause):
			}
		}
	}
}

// do performs one operation and records it.
func (w *worker) do(proc int, kind Kind, key string) (Output, error) {
	in := Input{Kind: kind, Key: key}
	if kind == Put || kind == CAS {
		w.seq++
		in.Value = fmt.Sprintf("c%d-%d", w.id, w.seq)
	}
	if kind == CAS {
		if s := w.last[key]; s == nil || !s.Exists {
			in.ExpectAbsent = true
		} else {
			in.Expect = s.Value
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.OpTimeout)
	defer cancel()
	call := w.rec.Now()
	out, err := w.request(ctx, in)
	ret := w.rec.Now()
	meta := w.c.Name
	result := "ok"
	if err != nil {
		out = Output{Unknown: true}
		meta += " error: " + err.Error()
		result = "error"
	} else if kind == CAS && !out.Succeeded {
		result = "failed"
	}
	w.stats.add(kind, result, err)
	if kind == Get && err != nil {
		// A failed read has no effect: leave it out of the history.
		return out, err
	}
	w.rec.Record(proc, in, out, call, ret, meta)
	switch {
	case out.Unknown:
		delete(w.last, key)
	case kind == Put || (kind == CAS && out.Succeeded):
		w.last[key] = &State{Exists: true, Value: in.Value}
	case kind == Delete:
		w.last[key] = &State{}
	default:
		w.last[key] = &State{Exists: out.Found, Value: out.Value}
	}
	return out, err
}

func (w *worker) request(ctx context.Context, in Input) (Output, error) {
	cli := w.c.Cli
	switch in.Kind {
	case Get:
		r, err := cli.Get(ctx, in.Key)
		if err != nil {
			return Output{}, err
		}
		out := Output{Rev: r.Header.Revision}
		if len(r.Kvs) > 1 {
			out.Bad = fmt.Sprintf("get returned %d KVs", len(r.Kvs))
		}
		if len(r.Kvs) > 0 {
			out.Found, out.Value, out.ModRev = true, string(r.Kvs[0].Value), r.Kvs[0].ModRevision
		}
		return out, nil
	case Put:
		r, err := cli.Put(ctx, in.Key, in.Value, clientv3.WithPrevKV())
		if err != nil {
			return Output{}, err
		}
		out := Output{Rev: r.Header.Revision}
		if r.PrevKv != nil {
			out.Found, out.Value, out.ModRev = true, string(r.PrevKv.Value), r.PrevKv.ModRevision
		}
		return out, nil
	case Delete:
		r, err := cli.Delete(ctx, in.Key, clientv3.WithPrevKV())
		if err != nil {
			return Output{}, err
		}
		out := Output{Rev: r.Header.Revision}
		if int(r.Deleted) != len(r.PrevKvs) || r.Deleted > 1 {
			out.Bad = fmt.Sprintf("delete: deleted=%d with %d previous KVs", r.Deleted, len(r.PrevKvs))
		}
		if len(r.PrevKvs) > 0 {
			out.Found, out.Value, out.ModRev = true, string(r.PrevKvs[0].Value), r.PrevKvs[0].ModRevision
		}
		return out, nil
	case CAS:
		cmp := clientv3.Compare(clientv3.Value(in.Key), "=", in.Expect)
		if in.ExpectAbsent {
			cmp = clientv3.Compare(clientv3.Version(in.Key), "=", 0)
		}
		r, err := cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(in.Key, in.Value)).Else(clientv3.OpGet(in.Key)).Commit()
		if err != nil {
			return Output{}, err
		}
		out := Output{Rev: r.Header.Revision, Succeeded: r.Succeeded}
		if r.Succeeded {
			return out, nil
		}
		if len(r.Responses) != 1 || r.Responses[0].GetResponseRange() == nil {
			out.Bad = fmt.Sprintf("failed txn returned %d responses, want one range", len(r.Responses))
			return out, nil
		}
		kvs := r.Responses[0].GetResponseRange().Kvs
		if len(kvs) > 1 {
			out.Bad = fmt.Sprintf("else-get returned %d KVs", len(kvs))
		}
		if len(kvs) > 0 {
			out.Found, out.Value, out.ModRev = true, string(kvs[0].Value), kvs[0].ModRevision
		}
		return out, nil
	}
	return Output{}, fmt.Errorf("unknown kind %v", in.Kind)
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
