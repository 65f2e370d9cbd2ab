package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/errs"
	"github.com/cairn-kv/cairn/proto/authpb"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// The package's errors are internal/errs values (api maps them to etcd's gRPC errors).
var (
	ErrRootUserNotExist     = errs.ErrRootUserNotExist
	ErrRootRoleNotExist     = errs.ErrRootRoleNotExist
	ErrUserAlreadyExist     = errs.ErrUserAlreadyExist
	ErrUserEmpty            = errs.ErrUserEmpty
	ErrUserNotFound         = errs.ErrUserNotFound
	ErrRoleAlreadyExist     = errs.ErrRoleAlreadyExist
	ErrRoleNotFound         = errs.ErrRoleNotFound
	ErrRoleEmpty            = errs.ErrRoleEmpty
	ErrPermissionNotGiven   = errs.ErrPermissionNotGiven
	ErrAuthFailed           = errs.ErrAuthFailed
	ErrNoPasswordUser       = errs.ErrNoPasswordUser
	ErrPermissionDenied     = errs.ErrPermissionDenied
	ErrRoleNotGranted       = errs.ErrRoleNotGranted
	ErrPermissionNotGranted = errs.ErrPermissionNotGranted
	ErrAuthNotEnabled       = errs.ErrAuthNotEnabled
	ErrAuthOldRevision      = errs.ErrAuthOldRevision
	ErrInvalidAuthToken     = errs.ErrInvalidAuthToken
	ErrInvalidAuthMgmt      = errs.ErrInvalidAuthMgmt
)

const (
	// RootUser and RootRole are etcd's special names.
	RootUser = "root"
	RootRole = "root"

	// DefaultBcryptCost is etcd's --bcrypt-cost default.
	DefaultBcryptCost = bcrypt.DefaultCost
	// DefaultTokenTTL is etcd's --auth-token-ttl default.
	DefaultTokenTTL = 300 * time.Second
)

// Tx is where a change is persisted: the entry's store write transaction
// (mvcc.WriteTxn), which undoes everything if the request fails.
type Tx interface {
	PutAuthEnabled(enabled bool)
	PutAuthRevision(rev uint64)
	PutAuthUser(name string, value []byte)
	DeleteAuthUser(name string)
	PutAuthRole(name string, value []byte)
	DeleteAuthRole(name string)
}

// AuthInfo is who a request comes from: the user, and the auth revision its token was
// checked at (0: no user).
type AuthInfo struct {
	Username string
	Revision uint64
}

// Config configures a Store.
type Config struct {
	Logger *zap.Logger
	// BcryptCost is --bcrypt-cost; out of bcrypt's range means the default (10), as etcd.
	BcryptCost int
	// TokenOpts is --auth-token: "simple" (default) or "jwt,pub-key=...,priv-key=...,
	// sign-method=...,ttl=...".
	TokenOpts string
	// TokenTTL is --auth-token-ttl for simple tokens; 0 means 300 s.
	TokenTTL time.Duration
	// IndexWaiter returns a channel closed once the raft index is applied; a simple token
	// is valid only on a member that applied the entry that assigned it.
	IndexWaiter func(index uint64) <-chan struct{}
	// Now is the clock for token expiry; nil means time.Now.
	Now func() time.Time
}

// state is one immutable version of the auth data; a change builds the next one.
type state struct {
	enabled  bool
	revision uint64
	users    map[string]*authpb.User
	roles    map[string]*authpb.Role
	perms    map[string]*userPerms // by user: the union of its roles' permissions
}

func (st *state) clone() *state {
	return &state{
		enabled:  st.enabled,
		revision: st.revision,
		users:    maps.Clone(st.users),
		roles:    maps.Clone(st.roles),
	}
}

// Store is the member's auth state.
type Store struct {
	lg     *zap.Logger
	cost   int
	st     atomic.Pointer[state]
	tokens tokenProvider
}

// New returns an empty, disabled store (Restore loads persisted data).
func New(cfg Config) (*Store, error) {
	lg := cfg.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	cost := cfg.BcryptCost
	if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		if cost != 0 {
			lg.Warn("use default bcrypt cost instead of the invalid given cost",
				zap.Int("min-cost", bcrypt.MinCost), zap.Int("max-cost", bcrypt.MaxCost),
				zap.Int("default-cost", bcrypt.DefaultCost), zap.Int("given-cost", cost))
		}
		cost = bcrypt.DefaultCost
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	tp, err := newTokenProvider(lg, cfg)
	if err != nil {
		return nil, err
	}
	s := &Store{lg: lg, cost: cost, tokens: tp}
	st := &state{revision: 1, users: map[string]*authpb.User{}, roles: map[string]*authpb.Role{}}
	st.perms = buildPerms(st)
	s.st.Store(st)
	return s, nil
}

// Restore replaces the state with the content of the auth buckets (at boot, and when a
// snapshot from the leader replaced the db). Tokens are dropped if auth is now disabled.
func (s *Store) Restore(enabled bool, revision uint64, users, roles map[string][]byte) error {
	st := &state{enabled: enabled, revision: max(revision, 1),
		users: make(map[string]*authpb.User, len(users)), roles: make(map[string]*authpb.Role, len(roles))}
	for name, v := range users {
		u := &authpb.User{}
		if err := proto.Unmarshal(v, u); err != nil {
			return fmt.Errorf("auth: decode user %q: %w", name, err)
		}
		st.users[name] = u
	}
	for name, v := range roles {
		r := &authpb.Role{}
		if err := proto.Unmarshal(v, r); err != nil {
			return fmt.Errorf("auth: decode role %q: %w", name, err)
		}
		st.roles[name] = r
	}
	st.perms = buildPerms(st)
	s.st.Store(st)
	if enabled {
		s.tokens.enable()
	} else {
		s.tokens.disable()
	}
	return nil
}

// Enabled says whether auth is enabled.
func (s *Store) Enabled() bool { return s.st.Load().enabled }

// Revision is the current auth revision.
func (s *Store) Revision() uint64 { return s.st.Load().revision }

// BcryptCost is the cost passwords are hashed with.
func (s *Store) BcryptCost() int { return s.cost }

// HashPassword returns the bcrypt hash of password, base64-encoded as etcd carries it in
// a request's hashedPassword.
func (s *Store) HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), s.cost)
	if err != nil {
		return "", fmt.Errorf("auth: hash password: %w", err)
	}
	return base64.StdEncoding.EncodeToString(h), nil
}

// CheckPassword checks a user's password against the current state (outside raft, as
// etcd does) and returns the auth revision it was checked at.
func (s *Store) CheckPassword(name, password string) (uint64, error) {
	st := s.st.Load()
	if !st.enabled {
		return 0, ErrAuthNotEnabled
	}
	u := st.users[name]
	if u == nil {
		return 0, ErrAuthFailed
	}
	if u.GetOptions().GetNoPassword() {
		return 0, ErrNoPasswordUser
	}
	if bcrypt.CompareHashAndPassword(u.Password, []byte(password)) != nil {
		return 0, ErrAuthFailed
	}
	return st.revision, nil
}

// GenTokenPrefix returns the random part of a simple token, for an Authenticate
// proposal ("" for token kinds that need none).
func (s *Store) GenTokenPrefix() (string, error) { return s.tokens.genTokenPrefix() }

// AuthInfoFromToken resolves a token sent by a client: nil, nil when auth is disabled
// (tokens are then ignored, as etcd does), ErrInvalidAuthToken for an unknown, expired
// or malformed one.
func (s *Store) AuthInfoFromToken(ctx context.Context, token string) (*AuthInfo, error) {
	st := s.st.Load()
	if !st.enabled {
		return nil, nil
	}
	ai, ok := s.tokens.info(ctx, token, st.revision)
	if !ok {
		s.lg.Warn("invalid auth token", zap.String("token", redactToken(token)))
		return nil, ErrInvalidAuthToken
	}
	return ai, nil
}

// change runs f on a copy of the state; f persists what it changes through tx. The
// returned commit installs the copy (and runs after, if f returned one).
func (s *Store) change(f func(next *state) (after func(), err error)) (func(), error) {
	next := s.st.Load().clone()
	after, err := f(next)
	if err != nil {
		return nil, err
	}
	next.perms = buildPerms(next)
	return func() {
		s.st.Store(next)
		if after != nil {
			after()
		}
	}, nil
}

func commitRevision(tx Tx, st *state) {
	st.revision++
	tx.PutAuthRevision(st.revision)
}

func putUser(tx Tx, st *state, u *authpb.User) {
	data, _ := proto.Marshal(u) // a message of bytes and strings always marshals
	st.users[string(u.Name)] = u
	tx.PutAuthUser(string(u.Name), data)
}

func putRole(tx Tx, st *state, r *authpb.Role) {
	data, _ := proto.Marshal(r)
	st.roles[string(r.Name)] = r
	tx.PutAuthRole(string(r.Name), data)
}

func hasRootRole(u *authpb.User) bool {
	i := sort.SearchStrings(u.Roles, RootRole)
	return i < len(u.Roles) && u.Roles[i] == RootRole
}

// AuthEnable enables auth; a no-op when it already is.
func (s *Store) AuthEnable(tx Tx) (func(), error) {
	return s.change(func(st *state) (func(), error) {
		if st.enabled {
			s.lg.Info("authentication is already enabled; ignored auth enable request")
			return nil, nil
		}
		u := st.users[RootUser]
		if u == nil {
			return nil, ErrRootUserNotExist
		}
		if !hasRootRole(u) {
			return nil, ErrRootRoleNotExist
		}
		st.enabled = true
		tx.PutAuthEnabled(true)
		return func() {
			s.tokens.enable()
			s.lg.Info("enabled authentication")
		}, nil
	})
}

// AuthDisable disables auth and drops every token; a no-op when it is disabled.
func (s *Store) AuthDisable(tx Tx) (func(), error) {
	return s.change(func(st *state) (func(), error) {
		if !st.enabled {
			return nil, nil
		}
		st.enabled = false
		tx.PutAuthEnabled(false)
		commitRevision(tx, st)
		return func() {
			s.tokens.disable()
			s.lg.Info("disabled authentication")
		}, nil
	})
}

// Authenticate assigns a token to a user whose password the proposer checked. prefix
// and index make a simple token (the entry's raft index). The token is known once the
// commit ran.
func (s *Store) Authenticate(name, prefix string, index uint64) (string, func(), error) {
	st := s.st.Load()
	if !st.enabled {
		return "", nil, ErrAuthNotEnabled
	}
	u := st.users[name]
	if u == nil || u.GetOptions().GetNoPassword() {
		return "", nil, ErrAuthFailed
	}
	token, assign, err := s.tokens.assign(name, st.revision, prefix, index)
	if err != nil {
		return "", nil, err
	}
	return token, assign, nil
}

// password turns a request's password fields into the stored hash: the proposer's
// base64 hash, or (a request from an older proposer) bcrypt of the plain password.
func (s *Store) password(plain, hashed string) ([]byte, error) {
	if plain != "" && hashed == "" {
		return bcrypt.GenerateFromPassword([]byte(plain), s.cost)
	}
	return base64.StdEncoding.DecodeString(hashed)
}

// UserAdd adds a user.
func (s *Store) UserAdd(tx Tx, r *pb.AuthUserAddRequest) (func(), error) {
	return s.change(func(st *state) (func(), error) {
		if r.Name == "" {
			return nil, ErrUserEmpty
		}
		if st.users[r.Name] != nil {
			return nil, ErrUserAlreadyExist
		}
		opts := r.Options
		if opts == nil {
			opts = &authpb.UserAddOptions{}
		}
		var pw []byte
		if !opts.NoPassword {
			var err error
			if pw, err = s.password(r.Password, r.HashedPassword); err != nil {
				return nil, ErrNoPasswordUser
			}
		}
		putUser(tx, st, &authpb.User{Name: []byte(r.Name), Password: pw, Options: proto.Clone(opts).(*authpb.UserAddOptions)})
		commitRevision(tx, st)
		return func() { s.lg.Info("added a user", zap.String("user-name", r.Name)) }, nil
	})
}

// UserDelete deletes a user and its tokens.
func (s *Store) UserDelete(tx Tx, r *pb.AuthUserDeleteRequest) (func(), error) {
	return s.change(func(st *state) (func(), error) {
		if st.enabled && r.Name == RootUser {
			return nil, ErrInvalidAuthMgmt
		}
		if st.users[r.Name] == nil {
			return nil, ErrUserNotFound
		}
		delete(st.users, r.Name)
		tx.DeleteAuthUser(r.Name)
		commitRevision(tx, st)
		return func() {
			s.tokens.invalidateUser(r.Name)
			s.lg.Info("deleted a user", zap.String("user-name", r.Name))
		}, nil
	})
}

// UserChangePassword sets a user's password and drops its tokens.
func (s *Store) UserChangePassword(tx Tx, r *pb.AuthUserChangePasswordRequest) (func(), error) {
	return s.change(func(st *state) (func(), error) {
		u := st.users[r.Name]
		if u == nil {
			return nil, ErrUserNotFound
		}
		var pw []byte
		if !u.GetOptions().GetNoPassword() {
			var err error
			if pw, err = s.password(r.Password, r.HashedPassword); err != nil {
				return nil, ErrNoPasswordUser
			}
		}
		putUser(tx, st, &authpb.User{Name: u.Name, Roles: u.Roles, Password: pw, Options: u.Options})
		commitRevision(tx, st)
		return func() {
			s.tokens.invalidateUser(r.Name)
			s.lg.Info("changed a password of a user", zap.String("user-name", r.Name))
		}, nil
	})
}

// UserGrantRole grants a role (which must exist, unless it is root) to a user; granting
// one it has changes nothing.
func (s *Store) UserGrantRole(tx Tx, r *pb.AuthUserGrantRoleRequest) (func(), error) {
	return s.change(func(st *state) (func(), error) {
		u := st.users[r.User]
		if u == nil {
			return nil, ErrUserNotFound
		}
		if r.Role != RootRole && st.roles[r.Role] == nil {
			return nil, ErrRoleNotFound
		}
		if slices.Contains(u.Roles, r.Role) {
			s.lg.Warn("ignored grant role request to a user", zap.String("user-name", r.User), zap.String("role-name", r.Role))
			return nil, nil
		}
		roles := append(slices.Clone(u.Roles), r.Role)
		sort.Strings(roles)
		putUser(tx, st, &authpb.User{Name: u.Name, Roles: roles, Password: u.Password, Options: u.Options})
		commitRevision(tx, st)
		return nil, nil
	})
}

// UserRevokeRole revokes a role from a user.
func (s *Store) UserRevokeRole(tx Tx, r *pb.AuthUserRevokeRoleRequest) (func(), error) {
	return s.change(func(st *state) (func(), error) {
		if st.enabled && r.Name == RootUser && r.Role == RootRole {
			return nil, ErrInvalidAuthMgmt
		}
		u := st.users[r.Name]
		if u == nil {
			return nil, ErrUserNotFound
		}
		roles := slices.DeleteFunc(slices.Clone(u.Roles), func(x string) bool { return x == r.Role })
		if len(roles) == len(u.Roles) {
			return nil, ErrRoleNotGranted
		}
		putUser(tx, st, &authpb.User{Name: u.Name, Roles: roles, Password: u.Password, Options: u.Options})
		commitRevision(tx, st)
		return nil, nil
	})
}

// RoleAdd adds a role without permissions.
func (s *Store) RoleAdd(tx Tx, r *pb.AuthRoleAddRequest) (func(), error) {
	return s.change(func(st *state) (func(), error) {
		if r.Name == "" {
			return nil, ErrRoleEmpty
		}
		if st.roles[r.Name] != nil {
			return nil, ErrRoleAlreadyExist
		}
		putRole(tx, st, &authpb.Role{Name: []byte(r.Name)})
		commitRevision(tx, st)
		return nil, nil
	})
}

// RoleDelete deletes a role and revokes it from every user.
func (s *Store) RoleDelete(tx Tx, r *pb.AuthRoleDeleteRequest) (func(), error) {
	return s.change(func(st *state) (func(), error) {
		if st.enabled && r.Role == RootRole {
			return nil, ErrInvalidAuthMgmt
		}
		if st.roles[r.Role] == nil {
			return nil, ErrRoleNotFound
		}
		delete(st.roles, r.Role)
		tx.DeleteAuthRole(r.Role)
		for _, name := range slices.Sorted(maps.Keys(st.users)) {
			u := st.users[name]
			roles := slices.DeleteFunc(slices.Clone(u.Roles), func(x string) bool { return x == r.Role })
			if len(roles) != len(u.Roles) {
				putUser(tx, st, &authpb.User{Name: u.Name, Roles: roles, Password: u.Password, Options: u.Options})
			}
		}
		commitRevision(tx, st)
		return nil, nil
	})
}

// RoleGrantPermission adds a permission to a role, or changes the type of the one with
// the same key and range end.
func (s *Store) RoleGrantPermission(tx Tx, r *pb.AuthRoleGrantPermissionRequest) (func(), error) {
	return s.change(func(st *state) (func(), error) {
		if r.Perm == nil {
			return nil, ErrPermissionNotGiven
		}
		if !validPermissionRange(r.Perm.Key, r.Perm.RangeEnd) {
			return nil, ErrInvalidAuthMgmt
		}
		role := st.roles[r.Name]
		if role == nil {
			return nil, ErrRoleNotFound
		}
		perms := make([]*authpb.Permission, len(role.KeyPermission))
		for i, p := range role.KeyPermission {
			perms[i] = proto.Clone(p).(*authpb.Permission)
		}
		i := sort.Search(len(perms), func(i int) bool { return bytes.Compare(perms[i].Key, r.Perm.Key) >= 0 })
		if i < len(perms) && bytes.Equal(perms[i].Key, r.Perm.Key) && bytes.Equal(perms[i].RangeEnd, r.Perm.RangeEnd) {
			perms[i].PermType = r.Perm.PermType
		} else {
			perms = append(perms, &authpb.Permission{Key: bytes.Clone(r.Perm.Key), RangeEnd: bytes.Clone(r.Perm.RangeEnd), PermType: r.Perm.PermType})
			sort.SliceStable(perms, func(i, j int) bool { return bytes.Compare(perms[i].Key, perms[j].Key) < 0 })
		}
		putRole(tx, st, &authpb.Role{Name: role.Name, KeyPermission: perms})
		commitRevision(tx, st)
		return nil, nil
	})
}

// RoleRevokePermission removes the permission with exactly this key and range end.
func (s *Store) RoleRevokePermission(tx Tx, r *pb.AuthRoleRevokePermissionRequest) (func(), error) {
	return s.change(func(st *state) (func(), error) {
		role := st.roles[r.Role]
		if role == nil {
			return nil, ErrRoleNotFound
		}
		var perms []*authpb.Permission
		for _, p := range role.KeyPermission {
			if !bytes.Equal(p.Key, r.Key) || !bytes.Equal(p.RangeEnd, r.RangeEnd) {
				perms = append(perms, p)
			}
		}
		if len(perms) == len(role.KeyPermission) {
			return nil, ErrPermissionNotGranted
		}
		putRole(tx, st, &authpb.Role{Name: role.Name, KeyPermission: perms})
		commitRevision(tx, st)
		return nil, nil
	})
}

// Status is AuthStatus: enabled and the auth revision.
func (s *Store) Status() (bool, uint64) {
	st := s.st.Load()
	return st.enabled, st.revision
}

// UserGet returns a user's roles.
func (s *Store) UserGet(name string) ([]string, error) {
	u := s.st.Load().users[name]
	if u == nil {
		return nil, ErrUserNotFound
	}
	return slices.Clone(u.Roles), nil
}

// UserList returns every user's name, sorted.
func (s *Store) UserList() []string { return slices.Sorted(maps.Keys(s.st.Load().users)) }

// RoleList returns every role's name, sorted.
func (s *Store) RoleList() []string { return slices.Sorted(maps.Keys(s.st.Load().roles)) }

// rootPerm is what RoleGet shows for the root role: everything.
var rootPerm = &authpb.Permission{PermType: authpb.Permission_READWRITE, Key: []byte{}, RangeEnd: []byte{0}}

// RoleGet returns a role's permissions (the root role: READWRITE on every key).
func (s *Store) RoleGet(name string) ([]*authpb.Permission, error) {
	role := s.st.Load().roles[name]
	if role == nil {
		return nil, ErrRoleNotFound
	}
	if name == RootRole {
		return []*authpb.Permission{proto.Clone(rootPerm).(*authpb.Permission)}, nil
	}
	out := make([]*authpb.Permission, len(role.KeyPermission))
	for i, p := range role.KeyPermission {
		out[i] = proto.Clone(p).(*authpb.Permission)
	}
	return out, nil
}

// HasRole says whether the user exists and holds the role.
func (s *Store) HasRole(user, role string) bool {
	u := s.st.Load().users[user]
	return u != nil && slices.Contains(u.Roles, role)
}

// IsAdminPermitted allows what only the root role may do (auth and membership changes,
// most Maintenance RPCs). It does not check the revision, as etcd does not.
func (s *Store) IsAdminPermitted(ai *AuthInfo) error {
	st := s.st.Load()
	if !st.enabled {
		return nil
	}
	if ai == nil || ai.Username == "" {
		return ErrUserEmpty
	}
	u := st.users[ai.Username]
	if u == nil {
		return ErrUserNotFound
	}
	if !hasRootRole(u) {
		return ErrPermissionDenied
	}
	return nil
}

// IsPutPermitted allows writing key.
func (s *Store) IsPutPermitted(ai *AuthInfo, key []byte) error {
	return s.isOpPermitted(ai, key, nil, authpb.Permission_WRITE)
}

// IsRangePermitted allows reading [key, rangeEnd) (rangeEnd as in a RangeRequest).
func (s *Store) IsRangePermitted(ai *AuthInfo, key, rangeEnd []byte) error {
	return s.isOpPermitted(ai, key, rangeEnd, authpb.Permission_READ)
}

// IsDeleteRangePermitted allows deleting [key, rangeEnd).
func (s *Store) IsDeleteRangePermitted(ai *AuthInfo, key, rangeEnd []byte) error {
	return s.isOpPermitted(ai, key, rangeEnd, authpb.Permission_WRITE)
}

func (s *Store) isOpPermitted(ai *AuthInfo, key, rangeEnd []byte, typ authpb.Permission_Type) error {
	st := s.st.Load()
	if !st.enabled {
		return nil
	}
	if ai == nil || ai.Revision == 0 {
		return ErrUserEmpty
	}
	if ai.Revision < st.revision {
		s.lg.Warn("request auth revision is less than current node auth revision",
			zap.Uint64("current node auth revision", st.revision),
			zap.Uint64("request auth revision", ai.Revision))
		return ErrAuthOldRevision
	}
	u := st.users[ai.Username]
	if u == nil {
		s.lg.Error("cannot find a user for permission check", zap.String("user-name", ai.Username))
		return ErrPermissionDenied
	}
	if hasRootRole(u) {
		return nil
	}
	if p := st.perms[ai.Username]; p != nil && p.permitted(key, rangeEnd, typ) {
		return nil
	}
	return ErrPermissionDenied
}
