package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// benchOps are the `cairnctl bench` operations; report is the odd one out
// (it reads results instead of generating load).
var benchOps = []struct{ name, summary string }{
	{"put", "Put random or sequential keys"},
	{"range", "Range (Get) one fixed key, linearizable or serializable"},
	{"txn-put", "Txn with no compares and a single Put in the success branch"},
	{"watch", "watchers on a few streams; puts; event delivery latency and fan-out rate"},
	{"lease-keepalive", "LeaseKeepAlive round trips on bidi streams over granted leases"},
	{"report", "read --json results of several runs; print Cairn/etcd ratio table"},
}

func benchUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: cairnctl bench <op> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Ops:")
	for _, op := range benchOps {
		fmt.Fprintf(w, "  %-16s %s\n", op.name, op.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `Run "cairnctl bench <op> --help" for an op's flags.`)
}

func runBench(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		benchUsage(stderr)
		return exitUsage
	}
	switch op := args[0]; op {
	case "-h", "-help", "--help", "help":
		benchUsage(stdout)
		return exitOK
	case "report":
		return runBenchReport(args[1:], stdout, stderr)
	case "put", "range", "txn-put":
		cfg, code := parseBenchFlags(op, args[1:], stdout, stderr)
		if cfg == nil {
			return code
		}
		return runLoadCommand(cfg, runLoad, stdout, stderr)
	case "watch", "lease-keepalive":
		cfg, code := parseBenchFlags(op, args[1:], stdout, stderr)
		if cfg == nil {
			return code
		}
		if op == "watch" {
			return runLoadCommand(cfg, runWatch, stdout, stderr)
		}
		return runLoadCommand(cfg, runLeaseKeepAlive, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "cairnctl bench: unknown op %q\n\n", op)
		benchUsage(stderr)
		return exitUsage
	}
}

// benchConfig is one load run, as given on the command line.
type benchConfig struct {
	op          string
	endpoints   members
	clients     int
	conns       int
	keySize     int
	valSize     int
	keySpace    int
	sequential  bool
	total       int
	consistency string // range only: "l" or "s"
	key         string // range only
	timeout     time.Duration
	jsonOut     bool
	// Labels copied into the JSON result so `bench report` can group runs.
	workload, target string
	round            int

	// watch only; clients is --put-clients.
	watchers, streams int
	idleTimeout       time.Duration
	rate              float64 // puts/s; 0 is unpaced
	// lease-keepalive only.
	leases   int
	leaseTTL int64
}

// parseBenchFlags returns nil and an exit code when the command should stop
// (bad flags, or --help).
func parseBenchFlags(op string, args []string, stdout, stderr io.Writer) (*benchConfig, int) {
	cfg := &benchConfig{op: op}
	fs := flag.NewFlagSet("cairnctl bench "+op, flag.ContinueOnError)
	var conn connFlags
	conn.register(fs)
	switch op {
	case "watch":
		fs.IntVar(&cfg.clients, "put-clients", 1, "concurrent goroutines issuing the puts")
		fs.IntVar(&cfg.conns, "conns", 1, "gRPC connections; watch streams and put clients are spread over them round-robin, connections over endpoints")
		fs.IntVar(&cfg.total, "total", 1000, "total puts to issue (each is delivered to every watcher of its key)")
		fs.IntVar(&cfg.watchers, "watchers", 1000, "watchers; watcher i is on stream i%streams and watches key i%key-space-size")
		fs.IntVar(&cfg.streams, "streams", 10, "gRPC Watch streams the watchers are spread over")
		fs.DurationVar(&cfg.idleTimeout, "idle-timeout", 5*time.Second, "after the last put, stop waiting for missing events once none has arrived for this long")
		fs.Float64Var(&cfg.rate, "rate", 0, "puts per second over all put clients, put i due at i/rate after the first (0: each client puts as fast as its answers come)")
	case "lease-keepalive":
		fs.IntVar(&cfg.clients, "clients", 1, "concurrent client goroutines, each with its own LeaseKeepAlive stream")
		fs.IntVar(&cfg.conns, "conns", 1, "gRPC connections; clients are spread over them round-robin, connections over endpoints")
		fs.IntVar(&cfg.total, "total", 10000, "total keep-alive requests to issue (request i renews lease i%leases)")
		fs.IntVar(&cfg.leases, "leases", 100, "leases granted before the run and revoked after it")
		fs.Int64Var(&cfg.leaseTTL, "lease-ttl", 60, "TTL in seconds of the granted leases")
	default:
		fs.IntVar(&cfg.clients, "clients", 1, "concurrent client goroutines")
		fs.IntVar(&cfg.conns, "conns", 1, "gRPC connections; clients are spread over them round-robin, connections over endpoints")
		fs.IntVar(&cfg.total, "total", 10000, "total requests to issue")
	}
	fs.DurationVar(&cfg.timeout, "timeout", 5*time.Minute, "bound on the whole run, connecting included")
	if op != "lease-keepalive" {
		fs.IntVar(&cfg.valSize, "val-size", 256, "value size in bytes")
	}
	fs.BoolVar(&cfg.jsonOut, "json", false, "print one JSON object instead of text")
	fs.StringVar(&cfg.workload, "workload", "", "label recorded in the result (e.g. put-100), for bench report")
	fs.StringVar(&cfg.target, "target", "", "label recorded in the result (e.g. cairn, etcd), for bench report")
	fs.IntVar(&cfg.round, "round", 0, "label recorded in the result, for bench report")
	switch op {
	case "range":
		fs.StringVar(&cfg.consistency, "consistency", "l", "l (linearizable) or s (serializable)")
		fs.StringVar(&cfg.key, "read-key", "foo", "key to read; it is Put (with --val-size bytes) before the run")
	case "watch":
		fs.IntVar(&cfg.keySize, "key-size", 8, "key size in bytes (keys are zero-padded decimal numbers)")
		fs.IntVar(&cfg.keySpace, "key-space-size", 1, "number of distinct keys watched and put (put i goes to key i%key-space-size)")
		cfg.sequential = true
	case "lease-keepalive":
	default:
		fs.IntVar(&cfg.keySize, "key-size", 8, "key size in bytes (keys are zero-padded decimal numbers)")
		fs.IntVar(&cfg.keySpace, "key-space-size", 1, "number of distinct keys")
		fs.BoolVar(&cfg.sequential, "sequential-keys", false, "use keys 0,1,2,... in order (wrapping) instead of random ones")
	}
	usage := func(w io.Writer) {
		fmt.Fprintf(w, "Usage: cairnctl bench %s [flags]\n\nFlags:\n", op)
		fs.PrintDefaults()
	}
	if ok, code := parseFlags(fs, args, usage, stdout, stderr); !ok {
		return nil, code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cairnctl bench %s: unexpected arguments %q\n", op, fs.Args())
		return nil, exitUsage
	}
	var err error
	if cfg.endpoints, err = conn.members(); err == nil {
		err = cfg.validate()
	}
	if err != nil {
		fmt.Fprintf(stderr, "cairnctl bench %s: %v\n", op, err)
		return nil, exitUsage
	}
	return cfg, exitOK
}

func (c *benchConfig) validate() error {
	clientsFlag := "--clients"
	if c.op == "watch" {
		clientsFlag = "--put-clients"
	}
	switch {
	case c.clients < 1:
		return fmt.Errorf("%s must be >= 1", clientsFlag)
	case c.conns < 1:
		return errors.New("--conns must be >= 1")
	case c.total < 1:
		return errors.New("--total must be >= 1")
	case c.timeout <= 0:
		return errors.New("--timeout must be > 0")
	case c.valSize < 0:
		return errors.New("--val-size must be >= 0")
	}
	switch c.op {
	case "watch":
		switch {
		case c.watchers < 1 || c.streams < 1:
			return errors.New("--watchers and --streams must be >= 1")
		case c.streams > c.watchers:
			return fmt.Errorf("--streams %d exceeds --watchers %d: a stream would have no watcher", c.streams, c.watchers)
		case c.conns > c.streams:
			return fmt.Errorf("--conns %d exceeds --streams %d: a connection would carry no watch stream", c.conns, c.streams)
		case c.keySpace > c.watchers:
			return fmt.Errorf("--key-space-size %d exceeds --watchers %d: some keys would have no watcher", c.keySpace, c.watchers)
		case c.idleTimeout <= 0:
			return errors.New("--idle-timeout must be > 0")
		case c.rate < 0:
			return errors.New("--rate must be >= 0")
		}
	case "lease-keepalive":
		switch {
		case c.leases < 1:
			return errors.New("--leases must be >= 1")
		case c.leaseTTL < 1:
			return errors.New("--lease-ttl must be >= 1")
		}
		return nil
	}
	if c.op == "range" {
		if c.consistency != "l" && c.consistency != "s" {
			return fmt.Errorf("--consistency must be l or s, not %q", c.consistency)
		}
		if c.key == "" {
			return errors.New("--key must not be empty")
		}
		return nil
	}
	if c.keySize < 1 || c.keySpace < 1 {
		return errors.New("--key-size and --key-space-size must be >= 1")
	}
	// Keys are decimal, so the largest key number must fit in key-size digits.
	if digits := len(strconv.Itoa(c.keySpace - 1)); digits > c.keySize {
		return fmt.Errorf("--key-space-size %d needs keys of %d bytes, --key-size is %d", c.keySpace, digits, c.keySize)
	}
	return nil
}

// loadFunc runs one benchmark; a non-nil error means no measurement was possible.
type loadFunc func(ctx context.Context, cfg *benchConfig) (*Result, error)

func runLoadCommand(cfg *benchConfig, load loadFunc, stdout, stderr io.Writer) int {
	ctx, cancel := runContext(cfg.timeout)
	defer cancel()
	res, err := load(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "cairnctl bench %s: %v\n", cfg.op, err)
		return exitFail
	}
	if cfg.jsonOut {
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(res); err != nil {
			fmt.Fprintf(stderr, "cairnctl bench %s: write result: %v\n", cfg.op, err)
			return exitFail
		}
	} else {
		res.writeText(stdout)
	}
	// Non-zero so scripts (and readiness polls) notice; the numbers are printed anyway.
	if res.Errors > 0 || res.TimedOut {
		return exitFail
	}
	return exitOK
}

// runLoad connects, prepares, and issues exactly cfg.total requests (fewer
// only if ctx expires). A non-nil error means no measurement was possible.
func runLoad(ctx context.Context, cfg *benchConfig) (*Result, error) {
	conns, err := dialAll(ctx, cfg.endpoints, cfg.conns)
	defer closeAll(conns)
	if err != nil {
		return nil, err
	}
	kvs := make([]pb.KVClient, len(conns))
	for i, cc := range conns {
		kvs[i] = pb.NewKVClient(cc)
	}
	value := makeValue(cfg.valSize)
	if cfg.op == "range" {
		// The read must find the key, or we would measure the not-found path.
		if _, err := kvs[0].Put(ctx, &pb.PutRequest{Key: []byte(cfg.key), Value: value}); err != nil {
			return nil, fmt.Errorf("put %q before ranging it: %w", cfg.key, err)
		}
	}

	var next atomic.Int64 // next request number; shared so the total is exact
	perClient := make([]clientStats, cfg.clients)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range cfg.clients {
		issue := newIssuer(cfg, kvs[c%len(kvs)], value)
		st := &perClient[c]
		st.lat = make([]time.Duration, 0, cfg.total/cfg.clients+1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(cfg.total) {
					return
				}
				t0 := time.Now()
				err := issue(ctx, i)
				d := time.Since(t0)
				if err == nil {
					st.lat = append(st.lat, d)
					continue
				}
				if abandoned(ctx) {
					return // abandoned by --timeout; not the server's error
				}
				if st.errs == nil {
					st.errs = make(map[string]int)
				}
				st.errs[err.Error()]++
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	var lat []time.Duration
	errs := map[string]int{}
	for _, st := range perClient {
		lat = append(lat, st.lat...)
		for m, n := range st.errs {
			errs[m] += n
		}
	}
	res := newResult(lat, errs, elapsed)
	res.TimedOut = ctx.Err() != nil
	res.Op, res.Workload, res.Target, res.Round = cfg.op, cfg.workload, cfg.target, cfg.round
	res.Clients, res.Conns = cfg.clients, cfg.conns
	res.Endpoints = cfg.endpoints.String()
	return res, nil
}

// runContext bounds a whole run to d without being a deadline: gRPC sends a context's
// deadline with every request (grpc-timeout), which costs each server a timer per
// request, and etcd's benchmark tool sends its requests without one. Once d passed the
// context is cancelled, ending the calls still in flight.
func runContext(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	timer := time.AfterFunc(d, cancel)
	return ctx, func() {
		timer.Stop()
		cancel()
	}
}

// abandoned reports whether a request failed because --timeout expired, not through the
// server's fault: the run's context was cancelled (runContext) before the call returned.
func abandoned(ctx context.Context) bool {
	return ctx.Err() != nil
}

// clientStats is owned by one client goroutine, so recording needs no lock.
type clientStats struct {
	lat  []time.Duration
	errs map[string]int
}

// issuer sends request number i. Each client gets its own, so it can reuse
// its request message and key buffer: gRPC has marshalled the request by the
// time Invoke returns, and the load generator shares the CPU with the server
// under test, so its allocations matter.
type issuer func(ctx context.Context, i int64) error

func newIssuer(cfg *benchConfig, kv pb.KVClient, value []byte) issuer {
	switch cfg.op {
	case "range":
		req := &pb.RangeRequest{Key: []byte(cfg.key), Serializable: cfg.consistency == "s"}
		return func(ctx context.Context, _ int64) error {
			_, err := kv.Range(ctx, req)
			return err
		}
	case "txn-put":
		put := &pb.PutRequest{Key: make([]byte, cfg.keySize), Value: value}
		req := &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: put}}}}
		return func(ctx context.Context, i int64) error {
			fillKey(put.Key, cfg.keyNumber(i))
			_, err := kv.Txn(ctx, req)
			return err
		}
	default: // put
		req := &pb.PutRequest{Key: make([]byte, cfg.keySize), Value: value}
		return func(ctx context.Context, i int64) error {
			fillKey(req.Key, cfg.keyNumber(i))
			_, err := kv.Put(ctx, req)
			return err
		}
	}
}

func (c *benchConfig) keyNumber(i int64) int {
	if c.sequential {
		return int(i % int64(c.keySpace))
	}
	return rand.IntN(c.keySpace)
}

// fillKey writes n as zero-padded decimal filling key; validate guarantees it fits.
func fillKey(key []byte, n int) {
	for j := len(key) - 1; j >= 0; j-- {
		key[j] = byte('0' + n%10)
		n /= 10
	}
}

func makeValue(n int) []byte {
	v := make([]byte, n)
	for i := range v {
		v[i] = 'a' + byte(i%26)
	}
	return v
}

func waitReady(ctx context.Context, cc *grpc.ClientConn) error {
	for {
		s := cc.GetState()
		switch s {
		case connectivity.Ready:
			return nil
		case connectivity.Idle:
			cc.Connect()
		}
		if !cc.WaitForStateChange(ctx, s) {
			return fmt.Errorf("%w (connection state %s)", ctx.Err(), s)
		}
	}
}

// closeAll closes the connections dialAll opened (also after a partial failure).
func closeAll(conns []*grpc.ClientConn) {
	for _, cc := range conns {
		cc.Close()
	}
}
