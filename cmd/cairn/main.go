package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"

	"github.com/cairn-kv/cairn/api"
	"github.com/cairn-kv/cairn/internal/gctune"
	"github.com/cairn-kv/cairn/internal/tlsutil"
	"github.com/cairn-kv/cairn/raftnode"
	"github.com/cairn-kv/cairn/server"
)

var (
	etcdVersion  = server.EtcdVersion
	cairnVersion = server.CairnVersion
)

// stopTimeout bounds the graceful part of shutdown on SIGTERM/SIGINT.
const stopTimeout = 10 * time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

func run(args, environ []string, stdout, stderr io.Writer) int {
	cfg, err := parseConfig(args, environ)
	if err != nil {
		fmt.Fprintf(stderr, "cairn: %v\n", err)
		return 1
	}
	if cfg.PrintHelp {
		fmt.Fprint(stdout, usageText(newConfig().flagSet()))
		return 0
	}
	if cfg.PrintVersion {
		fmt.Fprint(stdout, versionText())
		return 0
	}
	lg, err := newLogger(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "cairn: cannot set up logging: %v\n", err)
		return 1
	}
	defer lg.Sync()
	logNotes(lg, cfg.notes)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if gctune.Enabled(environ) {
		go gctune.Run(ctx)
	}
	if err := serve(ctx, cfg, lg); err != nil {
		lg.Error("cairn failed", zap.Error(err))
		return 1
	}
	return 0
}

// newLogger builds etcd's zap logger: JSON, etcd's field names and time format, at
// --log-level, to --log-outputs ("default" and "stderr" are stderr).
func newLogger(cfg *config) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.Set(cfg.LogLevel); err != nil {
		return nil, err
	}
	var outs []string
	for _, o := range cfg.LogOutputs {
		switch o {
		case "default", "stderr":
			outs = append(outs, "stderr")
		case "journal":
			return nil, errors.New("--log-outputs=journal is not supported by Cairn")
		default:
			outs = append(outs, o)
		}
	}
	zc := zap.Config{
		Level:            zap.NewAtomicLevelAt(lvl),
		Sampling:         &zap.SamplingConfig{Initial: 100, Thereafter: 100},
		Encoding:         "json",
		OutputPaths:      outs,
		ErrorOutputPaths: outs,
		EncoderConfig: zapcore.EncoderConfig{
			TimeKey:       "ts",
			LevelKey:      "level",
			NameKey:       "logger",
			CallerKey:     "caller",
			MessageKey:    "msg",
			StacktraceKey: "stacktrace",
			LineEnding:    zapcore.DefaultLineEnding,
			EncodeLevel:   zapcore.LowercaseLevelEncoder,
			EncodeTime: func(t time.Time, enc zapcore.PrimitiveArrayEncoder) {
				enc.AppendString(t.Format("2006-01-02T15:04:05.000000Z0700"))
			},
			EncodeDuration: zapcore.StringDurationEncoder,
			EncodeCaller:   zapcore.ShortCallerEncoder,
		},
	}
	return zc.Build()
}

func logNotes(lg *zap.Logger, notes []note) {
	for _, n := range notes {
		fields := make([]zap.Field, 0, len(n.kv)/2)
		for i := 0; i+1 < len(n.kv); i += 2 {
			fields = append(fields, zap.String(n.kv[i], n.kv[i+1]))
		}
		if n.warn {
			lg.Warn(n.msg, fields...)
		} else {
			lg.Info(n.msg, fields...)
		}
	}
}

// serverConfig is the member's configuration.
func (c *config) serverConfig(lg *zap.Logger, t *tlsConfigs) server.Config {
	return server.Config{
		Name:                    c.Name,
		DataDir:                 c.DataDir,
		WALDir:                  c.WALDir,
		ListenClientURLs:        c.ListenClientURLs,
		AdvertiseClientURLs:     c.AdvertiseClientURLs,
		ListenPeerURLs:          c.ListenPeerURLs,
		AdvertisePeerURLs:       c.AdvertisePeerURLs,
		ListenMetricsURLs:       c.ListenMetricsURLs,
		InitialCluster:          c.initialClusterMap,
		InitialClusterState:     c.InitialClusterState,
		InitialClusterToken:     c.InitialClusterToken,
		SnapshotCount:           c.SnapshotCount,
		SnapshotCatchUpEntries:  c.SnapshotCatchUpEntries,
		InitialCorruptCheck:     c.InitialCorruptCheck || c.FeatureGates["InitialCorruptCheck"],
		CompactHashCheck:        c.CompactHashCheck || c.FeatureGates["CompactHashCheck"],
		CompactHashCheckTime:    c.CompactHashCheckTime,
		HeartbeatInterval:       time.Duration(c.HeartbeatMs) * time.Millisecond,
		ElectionTimeout:         time.Duration(c.ElectionMs) * time.Millisecond,
		QuotaBackendBytes:       c.QuotaBackendBytes,
		InitialMmapSize:         c.InitialMmapSize,
		DiskReserveBytes:        c.DiskReserveBytes,
		BackupDir:               c.BackupDir,
		BackupInterval:          c.BackupInterval,
		BackupRetention:         c.BackupRetention,
		MaxRequestBytes:         c.MaxRequestBytes,
		MaxTxnOps:               c.MaxTxnOps,
		AuthToken:               c.AuthToken,
		AuthTokenTTL:            time.Duration(c.AuthTokenTTL) * time.Second,
		BcryptCost:              int(c.BcryptCost),
		ClientCertAuth:          c.ClientTLS.ClientCertAuth,
		GRPCKeepAliveMinTime:    c.GRPCKeepAliveMinTime,
		GRPCKeepAliveInterval:   c.GRPCKeepAliveInterval,
		GRPCKeepAliveTimeout:    c.GRPCKeepAliveTimeout,
		EnablePprof:             c.EnablePprof,
		PeerDialTLS:             t.peerDial,
		PeerSkipMemberCertCheck: c.PeerSkipMemberCertCheck,
		Logger:                  lg,

		// Operations: auto-compaction, snapshot and WAL file retention, learners.
		AutoCompactionMode:      c.AutoCompactionMode,
		AutoCompactionRetention: c.autoCompactionRetention,
		MaxLearners:             serverMaxLearners(c.MaxLearners),
		MaxSnapshots:            serverFileLimit(c.MaxSnapshots),
		MaxWALs:                 serverFileLimit(c.MaxWALs),
		ForceNewCluster:         c.ForceNewCluster,
	}
}

// backend is the member as api sees it: api must not import server, so the member's
// concrete watch stream is handed out as an api.WatchStream here.
type backend struct{ *server.Server }

func (b backend) NewWatchStream() api.WatchStream { return b.Server.NewWatchStream() }

func (b backend) Snapshot(ctx context.Context) (api.DBSnapshot, error) {
	size, version, data, err := b.Server.Snapshot(ctx)
	if err != nil {
		return api.DBSnapshot{}, err
	}
	return api.DBSnapshot{Size: size, StorageVersion: version, Data: data}, nil
}

// serve starts the member and its client and metrics listeners, and runs until ctx is
// done (a signal) or the member stops on its own.
func serve(ctx context.Context, cfg *config, lg *zap.Logger) error {
	lg.Info("starting Cairn", zap.String("etcd-version", etcdVersion), zap.String("cairn-version", cairnVersion),
		zap.String("name", cfg.Name), zap.String("data-dir", cfg.DataDir))

	tc, err := cfg.tlsConfigs(lg)
	if err != nil {
		return err
	}
	// Bind every port before starting the member, so a taken port fails fast.
	clientLs, err := listenAll(cfg.ListenClientURLs)
	if err != nil {
		return err
	}
	clientHTTPLs, err := listenAll(cfg.ListenClientHTTPURLs)
	if err != nil {
		closeAll(clientLs)
		return err
	}
	metricsLs, err := listenAll(cfg.ListenMetricsURLs)
	if err != nil {
		closeAll(clientLs)
		closeAll(clientHTTPLs)
		return err
	}
	peerLs, err := listenAll(cfg.ListenPeerURLs)
	if err != nil {
		closeAll(clientLs)
		closeAll(clientHTTPLs)
		closeAll(metricsLs)
		return err
	}
	closeListeners := func() {
		closeAll(clientLs)
		closeAll(clientHTTPLs)
		closeAll(metricsLs)
		closeAll(peerLs)
	}

	sc := cfg.serverConfig(lg, tc)
	srv, err := newMember(ctx, sc, lg)
	if err != nil {
		closeListeners()
		return fmt.Errorf("cannot start member: %w", err)
	}
	// Before any client or peer traffic, as etcd does: a member whose data differs from
	// its peers' must not serve it.
	if sc.InitialCorruptCheck {
		if err := srv.CheckInitialHashKV(ctx); err != nil {
			srv.Stop()
			closeListeners()
			return fmt.Errorf("initial corruption check failed: %w", err)
		}
	}
	// Raft traffic between members: its own gRPC server on the peer URLs.
	// Raft messages themselves mostly take direct streams, which the member serves apart.
	maxPeerMessage := raftnode.MaxPeerMessageBytes(cfg.MaxRequestBytes)
	ps := grpc.NewServer(grpc.Creds(tlsutil.ServerCredentials()),
		grpc.MaxRecvMsgSize(maxPeerMessage),
		raftnode.PeerServerOption()) // pbcodec: envelopes decoded in place
	srv.RegisterPeerService(ps)
	for i, l := range peerLs {
		if cfg.ListenPeerURLs[i].Scheme == "https" {
			l = tlsutil.Listener(l, tc.peerServer, rejectedLogger(lg, "rejected connection on peer endpoint"))
		}
		l = srv.PeerListener(l, maxPeerMessage)
		go func(l net.Listener) {
			if err := ps.Serve(l); err != nil {
				lg.Warn("peer listener stopped", zap.String("address", l.Addr().String()), zap.Error(err))
			}
		}(l)
	}
	defer ps.Stop()

	b := backend{srv}
	gs := api.NewGRPCServer(b, api.GRPCConfig{
		MaxRequestBytes:   cfg.MaxRequestBytes,
		MaxTxnOps:         cfg.MaxTxnOps,
		MaxStreams:        uint32(min(cfg.MaxConcurrentStreams, math.MaxUint32)),
		KeepAliveMinTime:  cfg.GRPCKeepAliveMinTime,
		KeepAliveInterval: cfg.GRPCKeepAliveInterval,
		KeepAliveTimeout:  cfg.GRPCKeepAliveTimeout,
		ElectionTimeout:   time.Duration(cfg.ElectionMs) * time.Millisecond,

		WatchProgressNotifyInterval: cfg.WatchProgressNotifyInterval,
	}, lg)
	hh := api.NewHTTPHandler(b, srv.Registry(), cfg.EnablePprof, lg)
	if cfg.FaultInjection {
		mux := http.NewServeMux()
		mux.Handle(server.FaultPath, srv.FaultHandler())
		mux.Handle("/", hh)
		hh = mux
	}
	// etcd's HTTP/JSON API (/v3/...) on the client port only, as etcd serves it. It
	// calls gs in-process; closed once the client listeners have drained (defers run
	// after the drain below).
	clientHH := hh
	if cfg.EnableGRPCGateway {
		gw, err := api.NewGateway(gs, lg)
		if err != nil {
			srv.Stop()
			closeListeners()
			return err
		}
		defer gw.Close()
		clientHH = gw.Mount(hh)
	}
	clientHH = api.AccessControl(clientHH)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	api.ShutdownTimeout = stopTimeout

	// etcd: once --listen-client-http-urls is given, the client URLs serve gRPC only.
	clientHTTP := clientHH
	if len(clientHTTPLs) > 0 {
		clientHTTP = nil
	}
	var wg sync.WaitGroup
	errc := make(chan error, len(clientLs)+len(clientHTTPLs)+len(metricsLs))
	serveClient := func(l net.Listener, port api.ClientPort) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := api.ServeClient(sctx, l, port); err != nil {
				errc <- fmt.Errorf("serving client requests on %s: %w", l.Addr(), err)
			}
		}()
	}
	for i, l := range clientLs {
		port := api.ClientPort{GRPC: gs, HTTP: clientHTTP, Logger: lg}
		if cfg.ListenClientURLs[i].Scheme == "https" {
			port.TLS = tc.client
			if clientHTTP == nil {
				port.TLS = tc.clientGRPC
			}
		}
		serveClient(l, port)
	}
	for i, l := range clientHTTPLs {
		port := api.ClientPort{HTTP: clientHH, Logger: lg}
		if cfg.ListenClientHTTPURLs[i].Scheme == "https" {
			port.TLS = tc.clientHTTP
		}
		serveClient(l, port)
	}
	for i, l := range metricsLs {
		if cfg.ListenMetricsURLs[i].Scheme == "https" {
			l = tlsutil.Listener(l, tc.clientHTTP, rejectedLogger(lg, "rejected connection on client endpoint"))
		}
		wg.Add(1)
		go func(l net.Listener) {
			defer wg.Done()
			if err := serveHTTP(sctx, l, hh); err != nil {
				errc <- fmt.Errorf("serving metrics on %s: %w", l.Addr(), err)
			}
		}(l)
	}

	var runErr error
	select {
	case <-srv.ReadyNotify():
		traffic := "grpc+http"
		if clientHTTP == nil {
			traffic = "grpc"
		}
		logServing(lg, cfg.ListenClientURLs, clientLs, traffic)
		logServing(lg, cfg.ListenClientHTTPURLs, clientHTTPLs, "http")
		for i, l := range metricsLs {
			lg.Info("serving metrics", zap.String("address", cfg.ListenMetricsURLs[i].Scheme+"://"+l.Addr().String()+"/metrics"))
		}
		lg.Info("ready to serve client requests")
		select {
		case <-ctx.Done():
		case <-srv.StopNotify():
			runErr = errors.New("member stopped")
			if why := srv.StopReason(); why != nil {
				runErr = why
			}
		case runErr = <-errc:
		}
	case <-ctx.Done():
	case <-srv.StopNotify():
		runErr = errors.New("member stopped before it was ready")
	case runErr = <-errc:
	}

	if ctx.Err() != nil {
		lg.Info("received signal; shutting down", zap.String("signal", "SIGTERM/SIGINT"))
	}
	// Stop accepting and drain client traffic (bounded), then stop the member.
	cancel()
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(stopTimeout + 5*time.Second):
		lg.Warn("client listeners did not stop in time; stopping anyway")
		gs.Stop()
	}
	srv.Stop()
	lg.Info("stopped Cairn", zap.String("name", cfg.Name))
	return runErr
}

// serveHTTP serves the HTTP endpoints only (--listen-metrics-urls).
func serveHTTP(ctx context.Context, l net.Listener, h http.Handler) error {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		if hs.Shutdown(sctx) != nil {
			hs.Close()
		}
		<-errc
		return nil
	}
}

// rejectedLogger logs a refused TLS handshake as etcd does.
func rejectedLogger(lg *zap.Logger, msg string) func(remote string, err error) {
	return func(remote string, err error) { lg.Warn(msg, zap.String("remote-addr", remote), zap.Error(err)) }
}

// logServing logs, as etcd does, how each client listener serves.
func logServing(lg *zap.Logger, us []url.URL, ls []net.Listener, traffic string) {
	for i, l := range ls {
		if us[i].Scheme == "https" {
			lg.Info("serving client traffic securely", zap.String("traffic", traffic), zap.String("address", l.Addr().String()))
		} else {
			lg.Info("serving client traffic insecurely; this is strongly discouraged!", zap.String("traffic", traffic), zap.String("address", l.Addr().String()))
		}
	}
}

func listenAll(us []url.URL) ([]net.Listener, error) {
	var ls []net.Listener
	for _, u := range us {
		if u.Scheme != "http" && u.Scheme != "https" {
			closeAll(ls)
			return nil, fmt.Errorf("cannot listen on %s: only http:// and https:// are supported by Cairn", u.String())
		}
		l, err := net.Listen("tcp", u.Host)
		if err != nil {
			closeAll(ls)
			return nil, fmt.Errorf("cannot listen on %s: %w", u.String(), err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

func closeAll(ls []net.Listener) {
	for _, l := range ls {
		l.Close()
	}
}
