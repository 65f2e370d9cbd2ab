package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// healthRequestTimeout bounds the Range a health check does: etcd uses its request
// timeout, 5 s plus two election timeouts (7 s with the default 1 s).
const healthRequestTimeout = 7 * time.Second

// storageVersioner is implemented by a Backend that knows its storage schema version
// (etcd's /version "storage"). Without it the cluster version is reported, which equals
// the storage version on a 3.6 member that is not mid-downgrade.
type storageVersioner interface {
	StorageVersion() string
}

// NewHTTPHandler serves the HTTP endpoints of the client and metrics ports as etcd 3.6
// does: /health, /livez, /readyz (with /livez/<check> and /readyz/<check>), /version,
// /metrics (reg), and /debug/pprof/ when enablePprof is set.
func NewHTTPHandler(b Backend, reg *prometheus.Registry, enablePprof bool, lg *zap.Logger) http.Handler {
	if lg == nil {
		lg = zap.NewNop()
	}
	m := newHealthMetrics(reg, lg)
	mux := http.NewServeMux()

	mux.Handle("/health", healthHandler(b, m, lg))

	livez := &checkRegistry{kind: "livez", m: m, lg: lg}
	livez.add("serializable_read", readCheck(b, true))
	livez.install(mux)

	readyz := &checkRegistry{kind: "readyz", m: m, lg: lg}
	readyz.add("data_corruption", alarmCheck(b, pb.AlarmType_CORRUPT))
	readyz.add("serializable_read", readCheck(b, true))
	readyz.add("linearizable_read", readCheck(b, false))
	readyz.add("non_learner", learnerCheck(b))
	readyz.install(mux)

	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		if !allowGET(w, r) {
			return
		}
		cluster := b.ClusterVersion()
		if cluster == "" {
			cluster = "not_decided"
		}
		storage := cluster
		if sv, ok := b.(storageVersioner); ok {
			storage = sv.StorageVersion()
		}
		if storage == "" {
			storage = "unknown"
		}
		body, _ := json.Marshal(struct {
			Server  string `json:"etcdserver"`
			Cluster string `json:"etcdcluster"`
			Storage string `json:"storage"`
		}{EtcdVersion, cluster, storage})
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})

	var gatherer prometheus.Gatherer = prometheus.DefaultGatherer
	if reg != nil {
		gatherer = reg
	}
	mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))

	if enablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func allowGET(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet {
		return true
	}
	w.Header().Set("Allow", http.MethodGet)
	http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
	return false
}

// healthStatus is etcd's /health body.
type healthStatus struct {
	Health string `json:"health"`
	Reason string `json:"reason"`
}

// healthHandler is etcd's /health: alarms (minus ?exclude=), then a leader (unless
// ?serializable=true), then a keys-only limit-1 Range (serializable if asked).
func healthHandler(b Backend, m *healthMetrics, lg *zap.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !allowGET(w, r) {
			lg.Warn("/health error", zap.Int("status-code", http.StatusMethodNotAllowed))
			return
		}
		excluded := querySet(r, "exclude")
		serializable := r.URL.Query().Get("serializable") == "true"
		h := checkHealth(r.Context(), b, excluded, serializable, lg)
		if h.Health == "true" {
			m.success.Inc()
		} else {
			m.failed.Inc()
		}
		d, _ := json.Marshal(h)
		if h.Health != "true" {
			http.Error(w, string(d), http.StatusServiceUnavailable)
			lg.Warn("/health error", zap.String("output", string(d)), zap.Int("status-code", http.StatusServiceUnavailable))
			return
		}
		w.WriteHeader(http.StatusOK)
		w.Write(d)
	}
}

func checkHealth(ctx context.Context, b Backend, excluded map[string]struct{}, serializable bool, lg *zap.Logger) healthStatus {
	for _, a := range b.Alarms() {
		if _, skip := excluded[a.GetAlarm().String()]; skip {
			continue
		}
		h := healthStatus{Health: "false"}
		switch a.GetAlarm() {
		case pb.AlarmType_NOSPACE:
			h.Reason = "ALARM NOSPACE"
		case pb.AlarmType_CORRUPT:
			h.Reason = "ALARM CORRUPT"
		default:
			h.Reason = "ALARM UNKNOWN"
		}
		lg.Warn("serving /health false due to an alarm", zap.String("alarm", alarmText(a)))
		return h
	}
	if !serializable && b.Leader() == 0 {
		lg.Warn("serving /health false; no leader")
		return healthStatus{Health: "false", Reason: "RAFT NO LEADER"}
	}
	cctx, cancel := context.WithTimeout(withRoot(ctx, b), healthRequestTimeout)
	_, err := b.Range(cctx, &pb.RangeRequest{Key: []byte{0}, KeysOnly: true, Limit: 1, Serializable: serializable})
	cancel()
	if err != nil {
		lg.Warn("serving /health false; Range fails", zap.Error(err))
		return healthStatus{Health: "false", Reason: fmt.Sprintf("RANGE ERROR:%s", err)}
	}
	return healthStatus{Health: "true"}
}

func querySet(r *http.Request, name string) map[string]struct{} {
	set := make(map[string]struct{})
	for _, q := range r.URL.Query()[name] {
		if q != "" {
			set[q] = struct{}{}
		}
	}
	return set
}

type healthCheck func(ctx context.Context) error

// checkRegistry is one of etcd 3.6's /livez and /readyz: named checks, served together
// at /<kind> (minus ?exclude=<name>) and one by one at /<kind>/<name>.
type checkRegistry struct {
	kind   string
	names  []string
	checks map[string]healthCheck
	m      *healthMetrics
	lg     *zap.Logger
}

func (reg *checkRegistry) add(name string, c healthCheck) {
	if reg.checks == nil {
		reg.checks = make(map[string]healthCheck)
	}
	reg.names = append(reg.names, name)
	reg.checks[name] = c
}

func (reg *checkRegistry) install(mux *http.ServeMux) {
	root := "/" + reg.kind
	mux.Handle(root, reg.handler(root, func(r *http.Request) []string {
		excluded := querySet(r, "exclude")
		names := make([]string, 0, len(reg.names))
		for _, n := range reg.names {
			if _, skip := excluded[n]; skip {
				delete(excluded, n)
				continue
			}
			names = append(names, n)
		}
		if len(excluded) > 0 {
			missing := make([]string, 0, len(excluded))
			for n := range excluded {
				missing = append(missing, fmt.Sprintf("%q", n))
			}
			reg.lg.Warn("some health checks cannot be excluded", zap.Strings("missing-health-checks", missing))
		}
		return names
	}))
	for _, n := range reg.names {
		name := n
		path := root + "/" + name
		mux.Handle(path, reg.handler(path, func(*http.Request) []string { return []string{name} }))
	}
}

func (reg *checkRegistry) handler(path string, which func(*http.Request) []string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !allowGET(w, r) {
			reg.lg.Warn("Health request error", zap.String("path", path), zap.Int("status-code", http.StatusMethodNotAllowed))
			return
		}
		ok, reason := reg.run(r.Context(), which(r))
		if !ok {
			http.Error(w, reason, http.StatusServiceUnavailable)
			reg.lg.Error("Health check error", zap.String("path", path), zap.String("reason", reason), zap.Int("status-code", http.StatusServiceUnavailable))
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if _, verbose := r.URL.Query()["verbose"]; verbose {
			fmt.Fprint(w, reason)
		}
		fmt.Fprint(w, "ok\n")
	}
}

// run runs the named checks and returns whether all passed and etcd's per-check lines
// ("[+]name ok" / "[-]name failed: reason").
func (reg *checkRegistry) run(ctx context.Context, names []string) (bool, string) {
	ok := true
	var out bytes.Buffer
	for _, n := range names {
		if err := reg.checks[n](ctx); err != nil {
			fmt.Fprintf(&out, "[-]%s failed: %v\n", n, err)
			ok = false
			reg.m.record(reg.kind, n, false)
		} else {
			fmt.Fprintf(&out, "[+]%s ok\n", n)
			reg.m.record(reg.kind, n, true)
		}
	}
	return ok, out.String()
}

func readCheck(b Backend, serializable bool) healthCheck {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(withRoot(ctx, b), healthRequestTimeout)
		defer cancel()
		_, err := b.Range(ctx, &pb.RangeRequest{Key: []byte{0}, KeysOnly: true, Limit: 1, Serializable: serializable})
		return err
	}
}

func alarmCheck(b Backend, at pb.AlarmType) healthCheck {
	return func(context.Context) error {
		for _, a := range b.Alarms() {
			if a.GetAlarm() == at {
				return fmt.Errorf("alarm activated: %s", at.String())
			}
		}
		return nil
	}
}

func learnerCheck(b Backend) healthCheck {
	return func(context.Context) error {
		if isLearner(b) {
			return errors.New("not supported for learner")
		}
		return nil
	}
}

// healthMetrics are etcd's health-check metrics. Several handlers (client and metrics
// ports) share one registry, so an already registered collector is reused.
type healthMetrics struct {
	success prometheus.Counter
	failed  prometheus.Counter
	gauge   *prometheus.GaugeVec
	total   *prometheus.CounterVec
}

func newHealthMetrics(reg *prometheus.Registry, lg *zap.Logger) *healthMetrics {
	m := &healthMetrics{
		success: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "etcd", Subsystem: "server", Name: "health_success",
			Help: "The total number of successful health checks",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "etcd", Subsystem: "server", Name: "health_failures",
			Help: "The total number of failed health checks",
		}),
		gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "etcd", Subsystem: "server", Name: "healthcheck",
			Help: "The result of each kind of healthcheck.",
		}, []string{"type", "name"}),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "etcd", Subsystem: "server", Name: "healthchecks_total",
			Help: "The total number of each kind of healthcheck.",
		}, []string{"type", "name", "status"}),
	}
	if reg == nil {
		return m
	}
	m.success = register(reg, m.success, lg)
	m.failed = register(reg, m.failed, lg)
	m.gauge = register(reg, m.gauge, lg)
	m.total = register(reg, m.total, lg)
	return m
}

func register[C prometheus.Collector](reg *prometheus.Registry, c C, lg *zap.Logger) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		lg.Warn("failed to register health metric", zap.Error(err))
	}
	return c
}

func (m *healthMetrics) record(kind, name string, ok bool) {
	val, st := 0.0, "error"
	if ok {
		val, st = 1.0, "success"
	}
	m.gauge.WithLabelValues(kind, name).Set(val)
	m.total.WithLabelValues(kind, name, st).Inc()
}
