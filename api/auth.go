package api

import (
	"context"
	"errors"

	"google.golang.org/grpc"

	"github.com/cairn-kv/cairn/internal/errs"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// AuthBackend is implemented by a Backend that serves etcd's auth: the Auth service and
// the permission checks the client edge makes itself (as etcd's v3rpc does). A Backend
// without it registers pb.UnimplementedAuthServer and checks nothing.
type AuthBackend interface {
	AuthEnable(ctx context.Context, r *pb.AuthEnableRequest) (*pb.AuthEnableResponse, error)
	AuthDisable(ctx context.Context, r *pb.AuthDisableRequest) (*pb.AuthDisableResponse, error)
	AuthStatus(ctx context.Context, r *pb.AuthStatusRequest) (*pb.AuthStatusResponse, error)
	Authenticate(ctx context.Context, r *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error)
	UserAdd(ctx context.Context, r *pb.AuthUserAddRequest) (*pb.AuthUserAddResponse, error)
	UserGet(ctx context.Context, r *pb.AuthUserGetRequest) (*pb.AuthUserGetResponse, error)
	UserList(ctx context.Context, r *pb.AuthUserListRequest) (*pb.AuthUserListResponse, error)
	UserDelete(ctx context.Context, r *pb.AuthUserDeleteRequest) (*pb.AuthUserDeleteResponse, error)
	UserChangePassword(ctx context.Context, r *pb.AuthUserChangePasswordRequest) (*pb.AuthUserChangePasswordResponse, error)
	UserGrantRole(ctx context.Context, r *pb.AuthUserGrantRoleRequest) (*pb.AuthUserGrantRoleResponse, error)
	UserRevokeRole(ctx context.Context, r *pb.AuthUserRevokeRoleRequest) (*pb.AuthUserRevokeRoleResponse, error)
	RoleAdd(ctx context.Context, r *pb.AuthRoleAddRequest) (*pb.AuthRoleAddResponse, error)
	RoleGet(ctx context.Context, r *pb.AuthRoleGetRequest) (*pb.AuthRoleGetResponse, error)
	RoleList(ctx context.Context, r *pb.AuthRoleListRequest) (*pb.AuthRoleListResponse, error)
	RoleDelete(ctx context.Context, r *pb.AuthRoleDeleteRequest) (*pb.AuthRoleDeleteResponse, error)
	RoleGrantPermission(ctx context.Context, r *pb.AuthRoleGrantPermissionRequest) (*pb.AuthRoleGrantPermissionResponse, error)
	RoleRevokePermission(ctx context.Context, r *pb.AuthRoleRevokePermissionRequest) (*pb.AuthRoleRevokePermissionResponse, error)

	// CheckAdmin allows only the root role (when auth is enabled): etcd's
	// AuthAdmin.isPermitted.
	CheckAdmin(ctx context.Context) error
	// RequireAuthInfo allows any authenticated user (when auth is enabled).
	RequireAuthInfo(ctx context.Context) error
	// WatchPermitted checks read permission on a watch's range.
	WatchPermitted(ctx context.Context, key, rangeEnd []byte) error
	// WithRoot marks ctx as the member's own request, run as root (etcd's
	// AuthStore.WithRoot, for the health checks' reads).
	WithRoot(ctx context.Context) context.Context
}

func withRoot(ctx context.Context, b Backend) context.Context {
	if ab := authBackend(b); ab != nil {
		return ab.WithRoot(ctx)
	}
	return ctx
}

func authBackend(b Backend) AuthBackend {
	ab, _ := b.(AuthBackend)
	return ab
}

// requireAuthInfo is nil for a Backend without auth.
func requireAuthInfo(ctx context.Context, b Backend) error {
	if ab := authBackend(b); ab != nil {
		return toGRPCError(ab.RequireAuthInfo(ctx))
	}
	return nil
}

// checkAdmin is nil for a Backend without auth.
func checkAdmin(ctx context.Context, b Backend) error {
	if ab := authBackend(b); ab != nil {
		return toGRPCError(ab.CheckAdmin(ctx))
	}
	return nil
}

// maintenanceAuth is etcd's authMaintenanceServer (and kvServer.Compact's check), by
// gRPC method: which check each Maintenance RPC gets before its handler runs.
func maintenanceAuth(ctx context.Context, ab AuthBackend, method string, req any) error {
	switch method {
	case "/etcdserverpb.KV/Compact", // etcd's kvServer.Compact checks admin too
		"/etcdserverpb.Maintenance/Defragment", "/etcdserverpb.Maintenance/Snapshot",
		"/etcdserverpb.Maintenance/Hash", "/etcdserverpb.Maintenance/HashKV",
		"/etcdserverpb.Maintenance/MoveLeader", "/etcdserverpb.Maintenance/Downgrade":
		return ab.CheckAdmin(ctx)
	case "/etcdserverpb.Maintenance/Status":
		return ab.RequireAuthInfo(ctx)
	case "/etcdserverpb.Maintenance/Alarm":
		if r, ok := req.(*pb.AlarmRequest); ok && r.GetAction() == pb.AlarmRequest_GET {
			return ab.RequireAuthInfo(ctx)
		}
		return ab.CheckAdmin(ctx)
	}
	return nil
}

func authUnaryInterceptor(b Backend) grpc.UnaryServerInterceptor {
	ab := authBackend(b)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if ab != nil {
			if err := maintenanceAuth(ctx, ab, info.FullMethod, req); err != nil {
				return nil, toGRPCError(err)
			}
		}
		return handler(ctx, req)
	}
}

func authStreamInterceptor(b Backend) grpc.StreamServerInterceptor {
	ab := authBackend(b)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if ab != nil {
			if err := maintenanceAuth(ss.Context(), ab, info.FullMethod, nil); err != nil {
				return toGRPCError(err)
			}
		}
		return handler(srv, ss)
	}
}

// watchDenied is the cancel reason of a watch refused by auth, as etcd words it (nil:
// permitted).
func watchDenied(ctx context.Context, b Backend, key, rangeEnd []byte) (string, bool) {
	ab := authBackend(b)
	if ab == nil {
		return "", false
	}
	err := ab.WatchPermitted(ctx, key, rangeEnd)
	switch {
	case err == nil:
		return "", false
	case errors.Is(err, errs.ErrInvalidAuthToken):
		return ErrGRPCInvalidAuthToken.Error(), true
	case errors.Is(err, errs.ErrAuthOldRevision):
		return ErrGRPCAuthOldRevision.Error(), true
	case errors.Is(err, errs.ErrUserEmpty):
		return ErrGRPCUserEmpty.Error(), true
	}
	return ErrGRPCPermissionDenied.Error(), true
}

// authServer is etcd's Auth service; the member stamps the response headers.
type authServer struct {
	pb.UnimplementedAuthServer
	ab AuthBackend
}

func authCall[Req any, Resp any](ctx context.Context, r Req, f func(context.Context, Req) (Resp, error)) (Resp, error) {
	resp, err := f(ctx, r)
	if err != nil {
		var zero Resp
		return zero, toGRPCError(err)
	}
	return resp, nil
}

func (s *authServer) AuthEnable(ctx context.Context, r *pb.AuthEnableRequest) (*pb.AuthEnableResponse, error) {
	return authCall(ctx, r, s.ab.AuthEnable)
}

func (s *authServer) AuthDisable(ctx context.Context, r *pb.AuthDisableRequest) (*pb.AuthDisableResponse, error) {
	return authCall(ctx, r, s.ab.AuthDisable)
}

func (s *authServer) AuthStatus(ctx context.Context, r *pb.AuthStatusRequest) (*pb.AuthStatusResponse, error) {
	return authCall(ctx, r, s.ab.AuthStatus)
}

func (s *authServer) Authenticate(ctx context.Context, r *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	return authCall(ctx, r, s.ab.Authenticate)
}

func (s *authServer) UserAdd(ctx context.Context, r *pb.AuthUserAddRequest) (*pb.AuthUserAddResponse, error) {
	return authCall(ctx, r, s.ab.UserAdd)
}

func (s *authServer) UserGet(ctx context.Context, r *pb.AuthUserGetRequest) (*pb.AuthUserGetResponse, error) {
	return authCall(ctx, r, s.ab.UserGet)
}

func (s *authServer) UserList(ctx context.Context, r *pb.AuthUserListRequest) (*pb.AuthUserListResponse, error) {
	return authCall(ctx, r, s.ab.UserList)
}

func (s *authServer) UserDelete(ctx context.Context, r *pb.AuthUserDeleteRequest) (*pb.AuthUserDeleteResponse, error) {
	return authCall(ctx, r, s.ab.UserDelete)
}

func (s *authServer) UserChangePassword(ctx context.Context, r *pb.AuthUserChangePasswordRequest) (*pb.AuthUserChangePasswordResponse, error) {
	return authCall(ctx, r, s.ab.UserChangePassword)
}

func (s *authServer) UserGrantRole(ctx context.Context, r *pb.AuthUserGrantRoleRequest) (*pb.AuthUserGrantRoleResponse, error) {
	return authCall(ctx, r, s.ab.UserGrantRole)
}

func (s *authServer) UserRevokeRole(ctx context.Context, r *pb.AuthUserRevokeRoleRequest) (*pb.AuthUserRevokeRoleResponse, error) {
	return authCall(ctx, r, s.ab.UserRevokeRole)
}

func (s *authServer) RoleAdd(ctx context.Context, r *pb.AuthRoleAddRequest) (*pb.AuthRoleAddResponse, error) {
	return authCall(ctx, r, s.ab.RoleAdd)
}

func (s *authServer) RoleGet(ctx context.Context, r *pb.AuthRoleGetRequest) (*pb.AuthRoleGetResponse, error) {
	return authCall(ctx, r, s.ab.RoleGet)
}

func (s *authServer) RoleList(ctx context.Context, r *pb.AuthRoleListRequest) (*pb.AuthRoleListResponse, error) {
	return authCall(ctx, r, s.ab.RoleList)
}

func (s *authServer) RoleDelete(ctx context.Context, r *pb.AuthRoleDeleteRequest) (*pb.AuthRoleDeleteResponse, error) {
	return authCall(ctx, r, s.ab.RoleDelete)
}

func (s *authServer) RoleGrantPermission(ctx context.Context, r *pb.AuthRoleGrantPermissionRequest) (*pb.AuthRoleGrantPermissionResponse, error) {
	return authCall(ctx, r, s.ab.RoleGrantPermission)
}

func (s *authServer) RoleRevokePermission(ctx context.Context, r *pb.AuthRoleRevokePermissionRequest) (*pb.AuthRoleRevokePermissionResponse, error) {
	return authCall(ctx, r, s.ab.RoleRevokePermission)
}

// registerAuth registers the Auth service: the Backend's, or Unimplemented.
func registerAuth(s *grpc.Server, b Backend) {
	if ab := authBackend(b); ab != nil {
		pb.RegisterAuthServer(s, &authServer{ab: ab})
		return
	}
	pb.RegisterAuthServer(s, pb.UnimplementedAuthServer{})
}
