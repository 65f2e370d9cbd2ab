package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/tmc/grpc-websocket-proxy/wsproxy"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protojson"

	etcdservergw "github.com/cairn-kv/cairn/proto/etcdserverpb/gw"
	v3electiongw "github.com/cairn-kv/cairn/proto/v3electionpb/gw"
	v3lockgw "github.com/cairn-kv/cairn/proto/v3lockpb/gw"
)

// GatewayPrefix is the path prefix of etcd's HTTP/JSON API on the client port.
const GatewayPrefix = "/v3/"

// gatewayBufferBytes is the in-process connection's buffer in each direction.
const gatewayBufferBytes = 1 << 20

// Gateway is etcd's HTTP/JSON API (grpc-gateway): POST /v3/kv/range and the rest, with
// etcd's JSON (proto field names, unset fields left out, int64 as strings, bytes as
// base64, unknown input fields ignored) and errors as grpc-gateway's status body. It
// forwards every request, as a gRPC call, to the member's own client gRPC server over an
// in-process connection, so it passes the same interceptors, limits and errors as a
// gRPC client, and never depends on how the network port is secured. An Authorization
// header reaches the server as "authorization" metadata (grpc-gateway's default), which
// the server reads as the auth token after "token", as etcd does.
type Gateway struct {
	lg      *zap.Logger
	mux     *runtime.ServeMux
	conn    *grpc.ClientConn
	l       *bufconn.Listener
	once    sync.Once
	closing atomic.Bool
	done    chan struct{}
}

// NewGateway serves gs on an in-process listener and returns the gateway in front of it.
// Close it after the client listeners have stopped.
func NewGateway(gs *grpc.Server, lg *zap.Logger) (*Gateway, error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	g := &Gateway{lg: lg, l: bufconn.Listen(gatewayBufferBytes), done: make(chan struct{})}
	conn, err := grpc.NewClient("passthrough:///cairn-gateway",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return g.l.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)),
	)
	if err != nil {
		g.l.Close()
		return nil, fmt.Errorf("api: gateway: connect to the gRPC server: %w", err)
	}
	g.conn = conn
	g.mux = runtime.NewServeMux(runtime.WithMarshalerOption(runtime.MIMEWildcard,
		&runtime.HTTPBodyMarshaler{Marshaler: &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: false},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
		}}))
	register := []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		etcdservergw.RegisterKVHandler,
		etcdservergw.RegisterWatchHandler,
		etcdservergw.RegisterLeaseHandler,
		etcdservergw.RegisterClusterHandler,
		etcdservergw.RegisterMaintenanceHandler,
		etcdservergw.RegisterAuthHandler,
		v3lockgw.RegisterLockHandler,
		v3electiongw.RegisterElectionHandler,
	}
	for _, r := range register {
		if err := r(context.Background(), g.mux, conn); err != nil {
			conn.Close()
			g.l.Close()
			return nil, fmt.Errorf("api: gateway: register handlers: %w", err)
		}
	}
	go func() {
		defer close(g.done)
		// Returns when gs stops (ServeClient's shutdown) or the listener closes.
		if err := gs.Serve(g.l); err != nil && !errors.Is(err, grpc.ErrServerStopped) && !g.closing.Load() {
			lg.Warn("gateway's in-process gRPC listener stopped", zap.Error(err))
		}
	}()
	return g, nil
}

// ServeHTTP serves the gateway's paths (under GatewayPrefix).
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.mux.ServeHTTP(w, r) }

// Mount returns a handler that sends GatewayPrefix to g and everything else to h. As
// etcd's, the gateway also takes WebSocket connections (for the streams: /v3/watch and
// the others), each message a request and each answer a message; a request that is
// not a WebSocket upgrade goes to g unchanged.
func (g *Gateway) Mount(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(GatewayPrefix, wsproxy.WebsocketProxy(g,
		// The gateway's paths are all POST; a WebSocket opens with a GET.
		wsproxy.WithRequestMutator(func(_ *http.Request, out *http.Request) *http.Request {
			out.Method = http.MethodPost
			return out
		}),
		wsproxy.WithMaxRespBodyBufferSize(math.MaxInt32),
		wsproxy.WithLogger(wsLogger{g.lg}),
	))
	mux.Handle("/", h)
	return mux
}

// wsLogger is the WebSocket proxy's logger on zap.
type wsLogger struct{ lg *zap.Logger }

func (w wsLogger) Warnln(v ...any)  { w.lg.Warn(fmt.Sprint(v...)) }
func (w wsLogger) Debugln(v ...any) { w.lg.Debug(fmt.Sprint(v...)) }

// Close closes the in-process connection and listener; calls through the gateway fail
// from then on.
func (g *Gateway) Close() error {
	var err error
	g.once.Do(func() {
		g.closing.Store(true)
		err = g.conn.Close()
		g.l.Close()
		<-g.done
	})
	return err
}

// AccessControl wraps the client port's HTTP handler as etcd's does with its default
// --cors and --host-whitelist ("*"): every answer carries the CORS headers allowing any
// origin, an OPTIONS request (a CORS preflight) answers 200 without reaching h, and the
// old /v3beta/ prefix is served as /v3/.
func AccessControl(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL != nil && strings.HasPrefix(r.URL.Path, "/v3beta/") {
			r.URL.Path = strings.Replace(r.URL.Path, "/v3beta/", GatewayPrefix, 1)
		}
		w.Header().Add("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE")
		w.Header().Add("Access-Control-Allow-Origin", "*")
		w.Header().Add("Access-Control-Allow-Headers", "accept, content-type, authorization")
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusOK)
			return
		}
		h.ServeHTTP(w, r)
	})
}
