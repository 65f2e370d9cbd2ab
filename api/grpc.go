package api

import (
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"

	"github.com/cairn-kv/cairn/internal/pbcodec"
	"github.com/cairn-kv/cairn/internal/tlsutil"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/v3electionpb"
	"github.com/cairn-kv/cairn/proto/v3lockpb"
)

const (
	// grpcOverheadBytes is what etcd adds to --max-request-bytes for the gRPC receive
	// limit, so that the member (not grpc-go) rejects a too-large request with etcd's
	// "request is too large".
	grpcOverheadBytes = 512 * 1024

	// Defaults used when GRPCConfig leaves a limit at zero (etcd 3.6's flag defaults).
	defaultMaxRequestBytes = 1572864
	defaultMaxTxnOps       = 128

	// gRPC metadata keys etcd's clients send (etcd api/v3rpc/rpctypes/metadatafields.go).
	metadataRequireLeaderKey    = "hasleader"
	metadataHasLeader           = "true"
	metadataClientAPIVersionKey = "client-api-version"
)

// GRPCConfig holds the client-facing gRPC limits, from etcd's flags of the same names.
type GRPCConfig struct {
	// MaxRequestBytes is --max-request-bytes; the server accepts messages up to this
	// plus 512 KiB, as etcd does. Zero means etcd's default 1.5 MiB.
	MaxRequestBytes uint
	// MaxTxnOps is --max-txn-ops. Zero means etcd's default 128.
	MaxTxnOps uint

	// KeepAliveMinTime is --grpc-keepalive-min-time: clients may ping this often
	// (kube-apiserver pings every 30 s). Zero leaves grpc-go's default enforcement.
	KeepAliveMinTime time.Duration
	// KeepAliveInterval / KeepAliveTimeout are --grpc-keepalive-interval/-timeout: the
	// server pings idle clients and drops those that do not answer. Used only if both
	// are positive.
	KeepAliveInterval time.Duration
	KeepAliveTimeout  time.Duration

	// WatchProgressNotifyInterval is --watch-progress-notify-interval (etcd 3.6; also
	// --experimental-watch-progress-notify-interval): how often watchers created with
	// progress_notify get a progress response when idle. Zero means etcd's default 10
	// minutes; less than 100 ms is raised to 100 ms, as etcd does.
	WatchProgressNotifyInterval time.Duration
	// ElectionTimeout is --election-timeout. A watch stream whose client requires a
	// leader ends with "no leader" after three election timeouts without one. Zero
	// means etcd's default 1 s.
	ElectionTimeout time.Duration
	// MaxStreams is --max-concurrent-streams: gRPC streams one client connection may have
	// open at once. Zero means etcd's default, math.MaxUint32.
	MaxStreams uint32
}

// streamWorkers is how many goroutines serve RPCs: enough for a few hundred clients'
// concurrent unary calls; idle, they cost their stacks (a few MiB in all).
const streamWorkers = 256

func (c GRPCConfig) maxRequestBytes() uint {
	if c.MaxRequestBytes == 0 {
		return defaultMaxRequestBytes
	}
	return c.MaxRequestBytes
}

func (c GRPCConfig) maxTxnOps() uint {
	if c.MaxTxnOps == 0 {
		return defaultMaxTxnOps
	}
	return c.MaxTxnOps
}

// NewGRPCServer builds the gRPC server of the client port: etcd's KV, Maintenance,
// Cluster, Watch, Lease and Auth services plus grpc.health.v1 ("" SERVING). RPCs the
// member does not serve yet answer codes.Unimplemented.
func NewGRPCServer(b Backend, cfg GRPCConfig, lg *zap.Logger) *grpc.Server {
	if lg == nil {
		lg = zap.NewNop()
	}
	recvLimit := uint64(cfg.maxRequestBytes()) + grpcOverheadBytes
	if recvLimit > math.MaxInt32 {
		recvLimit = math.MaxInt32
	}
	opts := []grpc.ServerOption{
		grpc.Creds(tlsutil.ServerCredentials()), // the client's certificate, for --client-cert-auth
		grpc.ChainUnaryInterceptor(unaryInterceptor(b), authUnaryInterceptor(b)),
		grpc.ChainStreamInterceptor(streamInterceptor(b), authStreamInterceptor(b)),
		grpc.MaxRecvMsgSize(int(recvLimit)),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(cmp.Or(cfg.MaxStreams, math.MaxUint32)),
		grpc.ForceServerCodecV2(pbcodec.Codec{}), // VT marshalling, pre-encoded watch responses
		// RPCs run on reused goroutines, whose stacks are already grown: a goroutine per
		// RPC (gRPC's default) spent 8% of a member's CPU under put-100 copying stacks as
		// they grew. A request arriving while every worker is busy still gets a goroutine.
		grpc.NumStreamWorkers(streamWorkers),
	}
	if cfg.KeepAliveMinTime > 0 {
		opts = append(opts, grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             cfg.KeepAliveMinTime,
			PermitWithoutStream: false,
		}))
	}
	if cfg.KeepAliveInterval > 0 && cfg.KeepAliveTimeout > 0 {
		opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    cfg.KeepAliveInterval,
			Timeout: cfg.KeepAliveTimeout,
		}))
	}
	s := grpc.NewServer(opts...)

	s.RegisterService(kvServiceDesc(), &kvServer{b: b, maxTxnOps: int(cfg.maxTxnOps())})
	pb.RegisterMaintenanceServer(s, &maintenanceServer{b: b})
	pb.RegisterClusterServer(s, &clusterServer{b: b})
	pb.RegisterWatchServer(s, newWatchServer(b, cfg, lg))
	pb.RegisterLeaseServer(s, &leaseServer{b: b, lg: lg})
	registerAuth(s, b)
	v3lockpb.RegisterLockServer(s, &lockServer{c: concurrency{b: b}})
	v3electionpb.RegisterElectionServer(s, &electionServer{c: concurrency{b: b}})

	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, hs)

	lg.Debug("registered gRPC services",
		zap.Uint("max-request-bytes", cfg.maxRequestBytes()),
		zap.Uint("max-txn-ops", cfg.maxTxnOps()))
	return s
}

// checkCall is etcd's per-RPC gate (v3rpc/interceptor.go): learners serve only Status
// and serializable Range; the client API version must be valid UTF-8; a client that
// asked for a leader (metadata hasleader=true) gets "no leader" when there is none.
func checkCall(ctx context.Context, b Backend, req any) error {
	if isLearner(b) && !rpcSupportedForLearner(req) {
		return ErrGRPCNotSupportedForLearner
	}
	// Single-key lookups: metadata.FromIncomingContext copies the whole map, per request.
	if vs := metadata.ValueFromIncomingContext(ctx, metadataClientAPIVersionKey); len(vs) > 0 && !utf8.ValidString(vs[0]) {
		return ErrGRPCInvalidClientAPIVersion
	}
	if requiresLeader(ctx) && b.Leader() == 0 {
		return ErrGRPCNoLeader
	}
	return nil
}

func rpcSupportedForLearner(req any) bool {
	switch r := req.(type) {
	case *pb.StatusRequest:
		return true
	case *pb.RangeRequest:
		return r.GetSerializable()
	default:
		return false
	}
}

func unaryInterceptor(b Backend) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := checkCall(ctx, b, req); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

func streamInterceptor(b Backend) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := checkCall(ss.Context(), b, nil); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

// fillHeader stamps cluster id, member id and raft term on a response header, and the
// current revision if the member left it at zero (etcd's v3rpc header.fill).
func fillHeader(b Backend, h **pb.ResponseHeader) {
	cur := b.Header()
	if *h == nil {
		*h = &pb.ResponseHeader{}
	}
	if cur == nil {
		return
	}
	(*h).ClusterId = cur.GetClusterId()
	(*h).MemberId = cur.GetMemberId()
	(*h).RaftTerm = cur.GetRaftTerm()
	if (*h).Revision == 0 {
		(*h).Revision = cur.GetRevision()
	}
}

type kvServer struct {
	pb.UnimplementedKVServer
	b         Backend
	maxTxnOps int
}

func (s *kvServer) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := checkRangeRequest(r); err != nil {
		return nil, err
	}
	resp, err := s.b.Range(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.b, &resp.Header)
	return resp, nil
}

// RangeStream is etcd 3.7's streaming Range: the same checks as Range, then the
// member's chunks, each in a RangeStreamResponse; the header of the last one is filled
// as Range's is. A sort other than ascending by key would need the whole result before
// the first chunk: etcd 3.7 refuses it with Unimplemented (use Range), and so does this.
func (s *kvServer) RangeStream(r *pb.RangeRequest, srv pb.KV_RangeStreamServer) error {
	if err := checkRangeRequest(r); err != nil {
		return err
	}
	if !isKeyAscending(r) {
		return ErrGRPCRangeStreamSort
	}
	err := s.b.RangeStream(srv.Context(), r, func(resp *pb.RangeResponse) error {
		if resp.Header != nil {
			fillHeader(s.b, &resp.Header)
		}
		return srv.Send(&pb.RangeStreamResponse{RangeResponse: resp})
	})
	return toGRPCError(err)
}

// isKeyAscending: r's effective order (etcd's: no order with a target other than the
// key sorts ascending by that target) is the store's own, ascending by key.
func isKeyAscending(r *pb.RangeRequest) bool {
	switch r.GetSortOrder() {
	case pb.RangeRequest_NONE:
		return r.GetSortTarget() == pb.RangeRequest_KEY
	case pb.RangeRequest_ASCEND:
		return r.GetSortTarget() == pb.RangeRequest_KEY
	}
	return false
}

func (s *kvServer) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := checkPutRequest(r); err != nil {
		return nil, err
	}
	resp, err := s.b.Put(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.b, &resp.Header)
	return resp, nil
}

func (s *kvServer) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := checkDeleteRequest(r); err != nil {
		return nil, err
	}
	resp, err := s.b.DeleteRange(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.b, &resp.Header)
	return resp, nil
}

func (s *kvServer) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := checkTxn(r, s.maxTxnOps); err != nil {
		return nil, err
	}
	resp, err := s.b.Txn(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.b, &resp.Header)
	return resp, nil
}

// Compact: etcd checks nothing here; the member answers ErrCompacted for a revision at
// or below the compacted one and ErrFutureRev above the current one.
func (s *kvServer) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	resp, err := s.b.Compact(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.b, &resp.Header)
	return resp, nil
}

type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	b Backend
}

func (s *maintenanceServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	resp, err := s.b.Status(ctx)
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.b, &resp.Header)
	if resp.Version == "" {
		resp.Version = EtcdVersion
	}
	if isLearner(s.b) {
		resp.IsLearner = true
	}
	if resp.DowngradeInfo == nil {
		resp.DowngradeInfo = &pb.DowngradeInfo{Enabled: false}
	}
	// etcd lists "no leader" and each active alarm in errors (etcdctl endpoint status
	// shows them); the member's own entries, if any, are kept.
	if resp.Leader == 0 && !contains(resp.Errors, errTextNoLeader) {
		resp.Errors = append(resp.Errors, errTextNoLeader)
	}
	for _, a := range s.b.Alarms() {
		if t := alarmText(a); !contains(resp.Errors, t) {
			resp.Errors = append(resp.Errors, t)
		}
	}
	return resp, nil
}

const errTextNoLeader = "etcdserver: no leader"

// alarmText renders an alarm as etcd's (gogo protobuf) compact text form does, which is
// what etcd puts in StatusResponse.errors: "memberID:1234 alarm:NOSPACE ".
func alarmText(a *pb.AlarmMember) string {
	s := ""
	if a.GetMemberID() != 0 {
		s += fmt.Sprintf("memberID:%d ", a.GetMemberID())
	}
	if a.GetAlarm() != pb.AlarmType_NONE {
		s += fmt.Sprintf("alarm:%s ", a.GetAlarm())
	}
	return s
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func (s *maintenanceServer) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	resp, err := s.b.HashKV(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.b, &resp.Header)
	return resp, nil
}

func (s *maintenanceServer) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	resp, err := s.b.MoveLeader(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.b, &resp.Header)
	return resp, nil
}

// Defragment compacts this member's db file (etcdctl defrag; --cluster calls every member).
func (s *maintenanceServer) Defragment(ctx context.Context, _ *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	if err := s.b.Defragment(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	// etcd answers an empty DefragmentResponse: no header ("{}" through the gateway).
	return &pb.DefragmentResponse{}, nil
}

// snapshotChunkSize is the db bytes per Snapshot response (etcd's send buffer size).
const snapshotChunkSize = 32 * 1024

// Snapshot streams the member's db file in chunks, then its SHA-256 as a last message of
// its own, as etcd does: etcdctl snapshot save checks and keeps that trailer, and
// etcdutl snapshot restore verifies it.
func (s *maintenanceServer) Snapshot(_ *pb.SnapshotRequest, srv pb.Maintenance_SnapshotServer) error {
	sn, err := s.b.Snapshot(srv.Context())
	if err != nil {
		return toGRPCError(err)
	}
	defer sn.Data.Close()
	h := sha256.New()
	for sent := int64(0); sent < sn.Size; {
		// grpc-go may still hold a sent message's bytes: a fresh buffer each time.
		buf := make([]byte, min(snapshotChunkSize, sn.Size-sent))
		if _, err := io.ReadFull(sn.Data, buf); err != nil {
			return toGRPCError(fmt.Errorf("snapshot: read db at byte %d of %d: %w", sent, sn.Size, err))
		}
		sent += int64(len(buf))
		h.Write(buf)
		resp := &pb.SnapshotResponse{RemainingBytes: uint64(sn.Size - sent), Blob: buf, Version: sn.StorageVersion}
		if err := srv.Send(resp); err != nil {
			return err
		}
	}
	return srv.Send(&pb.SnapshotResponse{Blob: h.Sum(nil), Version: sn.StorageVersion})
}

// Alarm lists, raises or clears alarms (etcdctl alarm list / disarm).
func (s *maintenanceServer) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	resp, err := s.b.Alarm(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.b, &resp.Header)
	return resp, nil
}

type clusterServer struct {
	pb.UnimplementedClusterServer
	b Backend
}

func (s *clusterServer) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	if err := validatePeerURLs(r.GetPeerURLs()); err != nil {
		return nil, err
	}
	if err := checkAdmin(ctx, s.b); err != nil {
		return nil, err
	}
	resp, err := s.b.MemberAdd(ctx, r)
	return resp, toGRPCError(err)
}

func (s *clusterServer) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	if err := checkAdmin(ctx, s.b); err != nil {
		return nil, err
	}
	resp, err := s.b.MemberRemove(ctx, r)
	return resp, toGRPCError(err)
}

func (s *clusterServer) MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	if err := validatePeerURLs(r.GetPeerURLs()); err != nil {
		return nil, err
	}
	if err := checkAdmin(ctx, s.b); err != nil {
		return nil, err
	}
	resp, err := s.b.MemberUpdate(ctx, r)
	return resp, toGRPCError(err)
}

func (s *clusterServer) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	if err := checkAdmin(ctx, s.b); err != nil {
		return nil, err
	}
	resp, err := s.b.MemberPromote(ctx, r)
	return resp, toGRPCError(err)
}

func (s *clusterServer) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	// No fillHeader: etcd's cluster service stamps no revision, and the member already
	// filled the rest. etcd requires a user (any) when auth is enabled.
	if err := requireAuthInfo(ctx, s.b); err != nil {
		return nil, err
	}
	resp, err := s.b.MemberList(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return resp, nil
}
