package server

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/cairn-kv/cairn/auth"
	"github.com/cairn-kv/cairn/lease"
	"github.com/cairn-kv/cairn/mvcc"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// gRPC metadata keys a client's token comes in (etcd's rpctypes.TokenFieldNameGRPC and
// TokenFieldNameSwagger, the latter with an optional "Bearer " prefix).
const (
	tokenFieldGRPC    = "token"
	tokenFieldSwagger = "authorization"
)

func newAuthStore(cfg Config, lg *zap.Logger, waiter func(uint64) <-chan struct{}) (*auth.Store, error) {
	return auth.New(auth.Config{
		Logger:      lg,
		BcryptCost:  cfg.BcryptCost,
		TokenOpts:   cfg.AuthToken,
		TokenTTL:    cfg.AuthTokenTTL,
		IndexWaiter: waiter,
	})
}

// loadAuth (re)loads the auth state from the store: at boot and after a snapshot
// replaced the db.
func (s *Server) loadAuth() error {
	d, err := s.store.Auth()
	if err != nil {
		return fmt.Errorf("server: load auth: %w", err)
	}
	return s.auth.Restore(d.Enabled, d.Revision, d.Users, d.Roles)
}

// waitApplied is the auth store's index waiter: simple tokens name the entry that
// assigned them.
func (s *Server) waitApplied(index uint64) <-chan struct{} {
	if w := s.appliedW; w != nil {
		return w.wait(index)
	}
	c := make(chan struct{})
	close(c)
	return c
}

type rootKey struct{}

// WithRoot marks ctx as the member's own request, run as the root user (the health
// checks' reads, as etcd's AuthStore.WithRoot). Clients cannot set it: it is a context
// value, not metadata.
func (s *Server) WithRoot(ctx context.Context) context.Context {
	return context.WithValue(ctx, rootKey{}, true)
}

// authInfo is who the client behind ctx is: from the token in its metadata (nil when it
// sent none, or auth is disabled), ErrInvalidAuthToken for a token this member does not
// know.
func (s *Server) authInfo(ctx context.Context) (*auth.AuthInfo, error) {
	if ctx.Value(rootKey{}) != nil && s.auth.Enabled() {
		return &auth.AuthInfo{Username: auth.RootUser, Revision: s.auth.Revision()}, nil
	}
	// Single-key lookups: metadata.FromIncomingContext copies the whole map, per request.
	if s.auth.Enabled() {
		ts := metadata.ValueFromIncomingContext(ctx, tokenFieldGRPC)
		if ts == nil {
			ts = metadata.ValueFromIncomingContext(ctx, tokenFieldSwagger)
		}
		if len(ts) > 0 {
			return s.auth.AuthInfoFromToken(ctx, strings.TrimPrefix(ts[0], "Bearer "))
		}
	}
	if !s.cfg.ClientCertAuth {
		return nil, nil
	}
	return s.authInfoFromTLS(ctx), nil
}

// authInfoFromTLS is etcd's AuthInfoFromTLS: the common name of the client's verified
// certificate, except for requests through the gRPC gateway (the gateway's own
// certificate is not the caller's).
func (s *Server) authInfoFromTLS(ctx context.Context) *auth.AuthInfo {
	p, ok := peer.FromContext(ctx)
	if !ok || p == nil || p.AuthInfo == nil {
		return nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil
	}
	for _, chain := range ti.State.VerifiedChains {
		if len(chain) == 0 {
			continue
		}
		if gw := metadata.ValueFromIncomingContext(ctx, "grpcgateway-accept"); len(gw) > 0 {
			s.lg.Warn("ignoring common name in gRPC-gateway proxy request",
				zap.String("common-name", chain[0].Subject.CommonName))
			return nil
		}
		return &auth.AuthInfo{Username: chain[0].Subject.CommonName, Revision: s.auth.Revision()}
	}
	return nil
}

// requestHeader is what a proposal carries of its sender for the checks at apply time.
func (s *Server) requestHeader(ctx context.Context) (*pb.RequestHeader, error) {
	ai, err := s.authInfo(ctx)
	if err != nil {
		return nil, err
	}
	h := &pb.RequestHeader{}
	if ai != nil {
		h.Username, h.AuthRevision = ai.Username, ai.Revision
	}
	return h, nil
}

func headerAuthInfo(h *pb.RequestHeader) *auth.AuthInfo {
	return &auth.AuthInfo{Username: h.GetUsername(), Revision: h.GetAuthRevision()}
}

// rootHeader is for the member's own requests that etcd runs as root (revoking expired
// leases).
func rootHeader() *pb.RequestHeader { return &pb.RequestHeader{Username: auth.RootUser} }

// CheckAdmin is etcd's AuthAdmin.isPermitted: only the root role (when auth is on).
func (s *Server) CheckAdmin(ctx context.Context) error {
	ai, err := s.authInfo(ctx)
	if err != nil {
		return err
	}
	return s.auth.IsAdminPermitted(ai)
}

// RequireAuthInfo is etcd's requireAuthInfo: any authenticated user (when auth is on).
func (s *Server) RequireAuthInfo(ctx context.Context) error {
	if !s.auth.Enabled() {
		return nil
	}
	ai, err := s.authInfo(ctx)
	if err != nil {
		return err
	}
	if ai == nil {
		return auth.ErrUserEmpty
	}
	return nil
}

// WatchPermitted checks a watch's range: read permission on [key, rangeEnd).
func (s *Server) WatchPermitted(ctx context.Context, key, rangeEnd []byte) error {
	ai, err := s.authInfo(ctx)
	if err != nil {
		return err
	}
	if ai == nil {
		ai = &auth.AuthInfo{}
	}
	return s.auth.IsRangePermitted(ai, key, rangeEnd)
}

// serialize runs a local read as etcd's doSerialize: the permission check, the read,
// then ErrAuthOldRevision if the auth state moved on meanwhile.
func (s *Server) serialize(ctx context.Context, chk func(*auth.AuthInfo) error, get func() error) error {
	ai, err := s.authInfo(ctx)
	if err != nil {
		return err
	}
	if ai == nil {
		ai = &auth.AuthInfo{}
	}
	if err := chk(ai); err != nil {
		return err
	}
	if err := get(); err != nil {
		return err
	}
	if ai.Revision != 0 && ai.Revision != s.auth.Revision() {
		return auth.ErrAuthOldRevision
	}
	return nil
}

// checkPutAuth: write on the key, write on every key of a lease it attaches to (its
// holder must be able to revoke it), read for prev_kv.
func (s *Server) checkPutAuth(ai *auth.AuthInfo, r *pb.PutRequest) error {
	if err := s.auth.IsPutPermitted(ai, r.Key); err != nil {
		return err
	}
	if err := s.checkLeasePuts(ai, r.Lease); err != nil {
		return err
	}
	if r.PrevKv {
		return s.auth.IsRangePermitted(ai, r.Key, nil)
	}
	return nil
}

// checkLeasePuts: write permission on every key attached to the lease (root passes).
func (s *Server) checkLeasePuts(ai *auth.AuthInfo, id int64) error {
	l := s.lessor.Lookup(lease.LeaseID(id))
	if l == nil || s.auth.IsAdminPermitted(ai) == nil {
		return nil
	}
	for _, k := range l.Keys() {
		if err := s.auth.IsPutPermitted(ai, []byte(k)); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) checkDeleteAuth(ai *auth.AuthInfo, r *pb.DeleteRangeRequest) error {
	if err := s.auth.IsDeleteRangePermitted(ai, r.Key, r.RangeEnd); err != nil {
		return err
	}
	if r.PrevKv {
		return s.auth.IsRangePermitted(ai, r.Key, r.RangeEnd)
	}
	return nil
}

// checkTxnAuth: read on every compare, and each op of both branches, nested txns
// included, as etcd's CheckTxnAuth (a delete with prev_kv is checked for read first).
func (s *Server) checkTxnAuth(ai *auth.AuthInfo, rt *pb.TxnRequest) error {
	for _, c := range rt.Compare {
		if err := s.auth.IsRangePermitted(ai, c.Key, c.RangeEnd); err != nil {
			return err
		}
	}
	for _, ops := range [][]*pb.RequestOp{rt.Success, rt.Failure} {
		for _, op := range ops {
			var err error
			switch {
			case op.GetRequestRange() != nil:
				r := op.GetRequestRange()
				err = s.auth.IsRangePermitted(ai, r.Key, r.RangeEnd)
			case op.GetRequestPut() != nil:
				err = s.checkPutAuth(ai, op.GetRequestPut())
			case op.GetRequestDeleteRange() != nil:
				d := op.GetRequestDeleteRange()
				if d.PrevKv {
					if err = s.auth.IsRangePermitted(ai, d.Key, d.RangeEnd); err != nil {
						return err
					}
				}
				err = s.auth.IsDeleteRangePermitted(ai, d.Key, d.RangeEnd)
			case op.GetRequestTxn() != nil:
				err = s.checkTxnAuth(ai, op.GetRequestTxn())
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// checkKVAuth is the apply-time check of a Put, DeleteRange or Txn.
func (s *Server) checkKVAuth(r *pb.InternalRaftRequest) error {
	ai := headerAuthInfo(r.Header)
	switch {
	case r.Put != nil:
		return s.checkPutAuth(ai, r.Put)
	case r.DeleteRange != nil:
		return s.checkDeleteAuth(ai, r.DeleteRange)
	case r.Txn != nil:
		return s.checkTxnAuth(ai, r.Txn)
	}
	return nil
}

// isAuthRequest says whether r is an auth change (all of them need the root role).
func isAuthRequest(r *pb.InternalRaftRequest) bool {
	return r.AuthEnable != nil || r.AuthDisable != nil || r.AuthUserAdd != nil ||
		r.AuthUserDelete != nil || r.AuthUserChangePassword != nil || r.AuthUserGrantRole != nil ||
		r.AuthUserRevokeRole != nil || r.AuthRoleAdd != nil || r.AuthRoleDelete != nil ||
		r.AuthRoleGrantPermission != nil || r.AuthRoleRevokePermission != nil
}

// applyAuth applies an auth change (or Authenticate) at the entry's index. The auth
// state in memory follows only once the store txn ended well (res.done).
func (s *Server) applyAuth(tx *mvcc.WriteTxn, r *pb.InternalRaftRequest, index uint64) applyResult {
	if r.Authenticate != nil {
		token, commit, err := s.auth.Authenticate(r.Authenticate.Name, r.Authenticate.SimpleToken, index)
		if err != nil {
			return applyResult{err: err}
		}
		return applyResult{resp: &pb.AuthenticateResponse{Header: &pb.ResponseHeader{}, Token: token}, done: commit}
	}
	if err := s.auth.IsAdminPermitted(headerAuthInfo(r.Header)); err != nil {
		return applyResult{err: err}
	}
	var (
		commit func()
		err    error
		resp   any
	)
	h := &pb.ResponseHeader{}
	switch {
	case r.AuthEnable != nil:
		commit, err = s.auth.AuthEnable(tx)
		resp = &pb.AuthEnableResponse{Header: h}
	case r.AuthDisable != nil:
		commit, err = s.auth.AuthDisable(tx)
		resp = &pb.AuthDisableResponse{Header: h}
	case r.AuthUserAdd != nil:
		commit, err = s.auth.UserAdd(tx, r.AuthUserAdd)
		resp = &pb.AuthUserAddResponse{Header: h}
	case r.AuthUserDelete != nil:
		commit, err = s.auth.UserDelete(tx, r.AuthUserDelete)
		resp = &pb.AuthUserDeleteResponse{Header: h}
	case r.AuthUserChangePassword != nil:
		commit, err = s.auth.UserChangePassword(tx, r.AuthUserChangePassword)
		resp = &pb.AuthUserChangePasswordResponse{Header: h}
	case r.AuthUserGrantRole != nil:
		commit, err = s.auth.UserGrantRole(tx, r.AuthUserGrantRole)
		resp = &pb.AuthUserGrantRoleResponse{Header: h}
	case r.AuthUserRevokeRole != nil:
		commit, err = s.auth.UserRevokeRole(tx, r.AuthUserRevokeRole)
		resp = &pb.AuthUserRevokeRoleResponse{Header: h}
	case r.AuthRoleAdd != nil:
		commit, err = s.auth.RoleAdd(tx, r.AuthRoleAdd)
		resp = &pb.AuthRoleAddResponse{Header: h}
	case r.AuthRoleDelete != nil:
		commit, err = s.auth.RoleDelete(tx, r.AuthRoleDelete)
		resp = &pb.AuthRoleDeleteResponse{Header: h}
	case r.AuthRoleGrantPermission != nil:
		commit, err = s.auth.RoleGrantPermission(tx, r.AuthRoleGrantPermission)
		resp = &pb.AuthRoleGrantPermissionResponse{Header: h}
	case r.AuthRoleRevokePermission != nil:
		commit, err = s.auth.RoleRevokePermission(tx, r.AuthRoleRevokePermission)
		resp = &pb.AuthRoleRevokePermissionResponse{Header: h}
	}
	if err != nil {
		return applyResult{err: err}
	}
	return applyResult{resp: resp, done: commit}
}

// AuthEnable enables auth (root user with the root role required).
func (s *Server) AuthEnable(ctx context.Context, r *pb.AuthEnableRequest) (*pb.AuthEnableResponse, error) {
	return proposeFor[*pb.AuthEnableResponse](ctx, s, &pb.InternalRaftRequest{AuthEnable: r})
}

// AuthDisable disables auth.
func (s *Server) AuthDisable(ctx context.Context, r *pb.AuthDisableRequest) (*pb.AuthDisableResponse, error) {
	return proposeFor[*pb.AuthDisableResponse](ctx, s, &pb.InternalRaftRequest{AuthDisable: r})
}

// Authenticate checks the password here (bcrypt stays out of the apply loop and the
// password out of the log), then has raft assign the token; if the auth revision moved
// between the check and the assignment, it checks again, as etcd does.
//
// A source (client address) whose attempts failed authFailureBurst times in a row may
// try again once per authFailureRefill; until then it gets "too many requests" without a
// password check (Cairn's brute-force limit; etcd has none).
func (s *Server) Authenticate(ctx context.Context, r *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	if err := s.linearizableRead(ctx); err != nil {
		return nil, err
	}
	src := sourceOf(ctx)
	for {
		if !s.authFailures.Allow(src) {
			s.lg.Warn("refused authentication: too many failed attempts from this source",
				zap.String("source", src), zap.String("user", r.Name))
			return nil, ErrTooManyRequests
		}
		checked, err := s.auth.CheckPassword(r.Name, r.Password)
		if err != nil {
			if err != auth.ErrAuthNotEnabled {
				s.authFailures.Failed(src)
				s.lg.Warn("invalid authentication was requested", zap.String("user", r.Name),
					zap.String("source", src), zap.Error(err))
			}
			return nil, err
		}
		prefix, err := s.auth.GenTokenPrefix()
		if err != nil {
			return nil, err
		}
		resp, err := proposeFor[*pb.AuthenticateResponse](ctx, s, &pb.InternalRaftRequest{
			Authenticate: &pb.InternalAuthenticateRequest{Name: r.Name, SimpleToken: prefix},
		})
		if err != nil {
			return nil, err
		}
		if checked == s.auth.Revision() {
			return resp, nil
		}
		s.lg.Info("revision when password checked became stale; retrying")
	}
}

// Cairn's limit on failed authentications per source (see Authenticate).
const (
	authFailureBurst  = 10
	authFailureRefill = time.Second
)

// sourceOf is the client's address without its port ("" if unknown).
func sourceOf(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
		return host
	}
	return p.Addr.String()
}

// UserAdd adds a user; the password is hashed here, before it is proposed.
func (s *Server) UserAdd(ctx context.Context, r *pb.AuthUserAddRequest) (*pb.AuthUserAddResponse, error) {
	if r.Options == nil || !r.Options.NoPassword {
		h, err := s.auth.HashPassword(r.Password)
		if err != nil {
			return nil, err
		}
		r.HashedPassword, r.Password = h, ""
	}
	return proposeFor[*pb.AuthUserAddResponse](ctx, s, &pb.InternalRaftRequest{AuthUserAdd: r})
}

// UserDelete deletes a user.
func (s *Server) UserDelete(ctx context.Context, r *pb.AuthUserDeleteRequest) (*pb.AuthUserDeleteResponse, error) {
	return proposeFor[*pb.AuthUserDeleteResponse](ctx, s, &pb.InternalRaftRequest{AuthUserDelete: r})
}

// UserChangePassword changes a password, hashed here.
func (s *Server) UserChangePassword(ctx context.Context, r *pb.AuthUserChangePasswordRequest) (*pb.AuthUserChangePasswordResponse, error) {
	if r.Password != "" {
		h, err := s.auth.HashPassword(r.Password)
		if err != nil {
			return nil, err
		}
		r.HashedPassword, r.Password = h, ""
	}
	return proposeFor[*pb.AuthUserChangePasswordResponse](ctx, s, &pb.InternalRaftRequest{AuthUserChangePassword: r})
}

// UserGrantRole grants a role to a user.
func (s *Server) UserGrantRole(ctx context.Context, r *pb.AuthUserGrantRoleRequest) (*pb.AuthUserGrantRoleResponse, error) {
	return proposeFor[*pb.AuthUserGrantRoleResponse](ctx, s, &pb.InternalRaftRequest{AuthUserGrantRole: r})
}

// UserRevokeRole revokes a role from a user.
func (s *Server) UserRevokeRole(ctx context.Context, r *pb.AuthUserRevokeRoleRequest) (*pb.AuthUserRevokeRoleResponse, error) {
	return proposeFor[*pb.AuthUserRevokeRoleResponse](ctx, s, &pb.InternalRaftRequest{AuthUserRevokeRole: r})
}

// RoleAdd adds a role.
func (s *Server) RoleAdd(ctx context.Context, r *pb.AuthRoleAddRequest) (*pb.AuthRoleAddResponse, error) {
	return proposeFor[*pb.AuthRoleAddResponse](ctx, s, &pb.InternalRaftRequest{AuthRoleAdd: r})
}

// RoleDelete deletes a role.
func (s *Server) RoleDelete(ctx context.Context, r *pb.AuthRoleDeleteRequest) (*pb.AuthRoleDeleteResponse, error) {
	return proposeFor[*pb.AuthRoleDeleteResponse](ctx, s, &pb.InternalRaftRequest{AuthRoleDelete: r})
}

// RoleGrantPermission grants a permission to a role.
func (s *Server) RoleGrantPermission(ctx context.Context, r *pb.AuthRoleGrantPermissionRequest) (*pb.AuthRoleGrantPermissionResponse, error) {
	return proposeFor[*pb.AuthRoleGrantPermissionResponse](ctx, s, &pb.InternalRaftRequest{AuthRoleGrantPermission: r})
}

// RoleRevokePermission revokes a permission from a role.
func (s *Server) RoleRevokePermission(ctx context.Context, r *pb.AuthRoleRevokePermissionRequest) (*pb.AuthRoleRevokePermissionResponse, error) {
	return proposeFor[*pb.AuthRoleRevokePermissionResponse](ctx, s, &pb.InternalRaftRequest{AuthRoleRevokePermission: r})
}

// authRead serves an auth read locally after a linearizable read (etcd 3.6 proposes
// these through raft; the answer is the same), allowed by allow.
func (s *Server) authRead(ctx context.Context, allow func(ai *auth.AuthInfo) error) error {
	if err := s.linearizableRead(ctx); err != nil {
		return err
	}
	ai, err := s.authInfo(ctx)
	if err != nil {
		return err
	}
	if ai == nil {
		ai = &auth.AuthInfo{}
	}
	return allow(ai)
}

func (s *Server) adminOnly(ai *auth.AuthInfo) error { return s.auth.IsAdminPermitted(ai) }

// AuthStatus reports whether auth is enabled and its revision (root only).
func (s *Server) AuthStatus(ctx context.Context, _ *pb.AuthStatusRequest) (*pb.AuthStatusResponse, error) {
	if err := s.authRead(ctx, s.adminOnly); err != nil {
		return nil, err
	}
	enabled, rev := s.auth.Status()
	return &pb.AuthStatusResponse{Header: s.Header(), Enabled: enabled, AuthRevision: rev}, nil
}

// UserGet returns a user's roles (root, or the user itself).
func (s *Server) UserGet(ctx context.Context, r *pb.AuthUserGetRequest) (*pb.AuthUserGetResponse, error) {
	err := s.authRead(ctx, func(ai *auth.AuthInfo) error {
		if err := s.auth.IsAdminPermitted(ai); err != nil && r.Name != ai.Username {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	roles, err := s.auth.UserGet(r.Name)
	if err != nil {
		return nil, err
	}
	return &pb.AuthUserGetResponse{Header: s.Header(), Roles: roles}, nil
}

// UserList lists the users (root only).
func (s *Server) UserList(ctx context.Context, _ *pb.AuthUserListRequest) (*pb.AuthUserListResponse, error) {
	if err := s.authRead(ctx, s.adminOnly); err != nil {
		return nil, err
	}
	return &pb.AuthUserListResponse{Header: s.Header(), Users: s.auth.UserList()}, nil
}

// RoleGet returns a role's permissions (root, or a holder of the role).
func (s *Server) RoleGet(ctx context.Context, r *pb.AuthRoleGetRequest) (*pb.AuthRoleGetResponse, error) {
	err := s.authRead(ctx, func(ai *auth.AuthInfo) error {
		if err := s.auth.IsAdminPermitted(ai); err != nil && !s.auth.HasRole(ai.Username, r.Role) {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	perms, err := s.auth.RoleGet(r.Role)
	if err != nil {
		return nil, err
	}
	return &pb.AuthRoleGetResponse{Header: s.Header(), Perm: perms}, nil
}

// RoleList lists the roles (root only).
func (s *Server) RoleList(ctx context.Context, _ *pb.AuthRoleListRequest) (*pb.AuthRoleListResponse, error) {
	if err := s.authRead(ctx, s.adminOnly); err != nil {
		return nil, err
	}
	return &pb.AuthRoleListResponse{Header: s.Header(), Roles: s.auth.RoleList()}, nil
}

// checkLeaseRenew is etcd's: a keep-alive needs write permission on every key of the
// lease (root passes).
func (s *Server) checkLeaseRenew(ctx context.Context, id int64) error {
	_, err := s.checkLeaseKeys(ctx, s.leaseOf(id), true, func(ai *auth.AuthInfo, k []byte) error {
		return s.auth.IsPutPermitted(ai, k)
	})
	return err
}

// checkLeaseKeysRead is etcd's checkLeaseTimeToLive: read permission on every key of
// the lease (root passes); it returns the auth revision it checked at.
func (s *Server) checkLeaseKeysRead(ctx context.Context, id int64) (uint64, error) {
	return s.checkLeaseKeys(ctx, s.leaseOf(id), false, s.readPermitted)
}

// checkLeaseLeases is etcd's: listing leases needs read permission on every key of
// every lease (root passes).
func (s *Server) checkLeaseLeases(ctx context.Context) error {
	_, err := s.checkLeaseKeys(ctx, s.lessor.Leases(), true, s.readPermitted)
	return err
}

func (s *Server) readPermitted(ai *auth.AuthInfo, k []byte) error {
	return s.auth.IsRangePermitted(ai, k, nil)
}

// leaseOf is the lease with id, as a list of at most one.
func (s *Server) leaseOf(id int64) []*lease.Lease {
	if l := s.lessor.Lookup(lease.LeaseID(id)); l != nil {
		return []*lease.Lease{l}
	}
	return nil
}

// checkLeaseKeys is etcd's rule for the lease RPCs: with auth on, a user other than
// root needs perm on every key attached to leases; with strict, an auth change during
// the check answers ErrAuthOldRevision. It returns the auth revision it checked at.
func (s *Server) checkLeaseKeys(ctx context.Context, leases []*lease.Lease, strict bool, perm func(ai *auth.AuthInfo, key []byte) error) (uint64, error) {
	rev := s.auth.Revision()
	if !s.auth.Enabled() {
		return rev, nil
	}
	ai, err := s.authInfo(ctx)
	if err != nil {
		return rev, err
	}
	if ai == nil {
		return rev, auth.ErrUserEmpty
	}
	if s.auth.IsAdminPermitted(ai) == nil {
		return rev, nil
	}
	for _, l := range leases {
		for _, k := range l.Keys() {
			if err := perm(ai, []byte(k)); err != nil {
				return 0, err
			}
		}
	}
	if strict && rev != s.auth.Revision() {
		return 0, auth.ErrAuthOldRevision
	}
	return rev, nil
}
