package auth

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/proto/authpb"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// memTx is the buckets as the store keeps them.
type memTx struct {
	enabled []byte
	rev     []byte
	users   map[string][]byte
	roles   map[string][]byte
}

func newMemTx() *memTx { return &memTx{users: map[string][]byte{}, roles: map[string][]byte{}} }

func (m *memTx) PutAuthEnabled(e bool) {
	m.enabled = []byte{0}
	if e {
		m.enabled = []byte{1}
	}
}
func (m *memTx) PutAuthRevision(r uint64)       { m.rev = binary.BigEndian.AppendUint64(nil, r) }
func (m *memTx) PutAuthUser(n string, v []byte) { m.users[n] = v }
func (m *memTx) DeleteAuthUser(n string)        { delete(m.users, n) }
func (m *memTx) PutAuthRole(n string, v []byte) { m.roles[n] = v }
func (m *memTx) DeleteAuthRole(n string)        { delete(m.roles, n) }

func newTestStore(t *testing.T) *Store {
	t.Helper()
	s, err := New(Config{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// do applies a change and commits it, as the server does once the store txn ended.
func do(t *testing.T) func(commit func(), err error) {
	return func(commit func(), err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if commit != nil {
			commit()
		}
	}
}

func hashed(t *testing.T, s *Store, pw string) string {
	h, err := s.HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func setupRoot(t *testing.T, s *Store, tx Tx) {
	do(t)(s.UserAdd(tx, &pb.AuthUserAddRequest{Name: "root", HashedPassword: hashed(t, s, "rootpw")}))
	do(t)(s.UserGrantRole(tx, &pb.AuthUserGrantRoleRequest{User: "root", Role: "root"}))
}

func TestUserRoleErrorsAndRevision(t *testing.T) {
	s, tx := newTestStore(t), newMemTx()
	if s.Revision() != 1 {
		t.Fatalf("fresh revision = %d, want 1 (etcd starts at 1)", s.Revision())
	}
	for _, c := range []struct {
		name string
		f    func() (func(), error)
		want error
	}{
		{"enable without root", func() (func(), error) { return s.AuthEnable(tx) }, ErrRootUserNotExist},
		{"empty user", func() (func(), error) { return s.UserAdd(tx, &pb.AuthUserAddRequest{}) }, ErrUserEmpty},
		{"empty role", func() (func(), error) { return s.RoleAdd(tx, &pb.AuthRoleAddRequest{}) }, ErrRoleEmpty},
		{"delete unknown user", func() (func(), error) { return s.UserDelete(tx, &pb.AuthUserDeleteRequest{Name: "x"}) }, ErrUserNotFound},
		{"delete unknown role", func() (func(), error) { return s.RoleDelete(tx, &pb.AuthRoleDeleteRequest{Role: "x"}) }, ErrRoleNotFound},
		{"grant to unknown user", func() (func(), error) {
			return s.UserGrantRole(tx, &pb.AuthUserGrantRoleRequest{User: "x", Role: "root"})
		}, ErrUserNotFound},
		{"no perm", func() (func(), error) {
			return s.RoleGrantPermission(tx, &pb.AuthRoleGrantPermissionRequest{Name: "r"})
		}, ErrPermissionNotGiven},
		{"bad range", func() (func(), error) {
			return s.RoleGrantPermission(tx, &pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: &authpb.Permission{Key: []byte("b"), RangeEnd: []byte("a")}})
		}, ErrInvalidAuthMgmt},
	} {
		if _, err := c.f(); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if s.Revision() != 1 || len(tx.users)+len(tx.roles) != 0 || tx.rev != nil {
		t.Fatalf("failed requests changed state: rev %d, tx %+v", s.Revision(), tx)
	}
	do(t)(s.UserAdd(tx, &pb.AuthUserAddRequest{Name: "root", HashedPassword: hashed(t, s, "pw")}))
	if _, err := s.UserAdd(tx, &pb.AuthUserAddRequest{Name: "root"}); !errors.Is(err, ErrUserAlreadyExist) {
		t.Fatalf("second add: %v", err)
	}
	if _, err := s.AuthEnable(tx); !errors.Is(err, ErrRootRoleNotExist) {
		t.Fatalf("enable without root role: %v", err)
	}
	if _, err := s.UserGrantRole(tx, &pb.AuthUserGrantRoleRequest{User: "root", Role: "nope"}); !errors.Is(err, ErrRoleNotFound) {
		t.Fatalf("grant unknown role: %v", err)
	}
	do(t)(s.UserGrantRole(tx, &pb.AuthUserGrantRoleRequest{User: "root", Role: "root"}))
	rev := s.Revision()
	do(t)(s.UserGrantRole(tx, &pb.AuthUserGrantRoleRequest{User: "root", Role: "root"}))
	if s.Revision() != rev {
		t.Fatalf("granting a held role moved the revision %d -> %d", rev, s.Revision())
	}
	do(t)(s.AuthEnable(tx))
	if s.Revision() != rev || !s.Enabled() {
		t.Fatalf("enable: revision %d (want %d, etcd does not bump it), enabled %v", s.Revision(), rev, s.Enabled())
	}
	for _, c := range []struct {
		name string
		f    func() (func(), error)
	}{
		{"delete root", func() (func(), error) { return s.UserDelete(tx, &pb.AuthUserDeleteRequest{Name: "root"}) }},
		{"revoke root role", func() (func(), error) {
			return s.UserRevokeRole(tx, &pb.AuthUserRevokeRoleRequest{Name: "root", Role: "root"})
		}},
		{"delete root role", func() (func(), error) { return s.RoleDelete(tx, &pb.AuthRoleDeleteRequest{Role: "root"}) }},
	} {
		if _, err := c.f(); !errors.Is(err, ErrInvalidAuthMgmt) {
			t.Errorf("%s while enabled: %v, want ErrInvalidAuthMgmt", c.name, err)
		}
	}
	do(t)(s.AuthDisable(tx))
	if s.Enabled() || s.Revision() != rev+1 {
		t.Fatalf("disable: enabled %v revision %d, want false %d", s.Enabled(), s.Revision(), rev+1)
	}
	if got := binary.BigEndian.Uint64(tx.rev); got != s.Revision() || string(tx.enabled) != "\x00" {
		t.Fatalf("persisted revision %d enabled %q", got, tx.enabled)
	}
}

// A change whose commit never runs (its store txn failed) leaves the state as it was.
func TestUncommittedChangeInvisible(t *testing.T) {
	s, tx := newTestStore(t), newMemTx()
	if _, err := s.RoleAdd(tx, &pb.AuthRoleAddRequest{Name: "r"}); err != nil {
		t.Fatal(err)
	}
	if got := s.RoleList(); len(got) != 0 || s.Revision() != 1 {
		t.Fatalf("uncommitted role visible: %v rev %d", got, s.Revision())
	}
}

func TestRoleDeleteRevokesFromUsersAndRoleGet(t *testing.T) {
	s, tx := newTestStore(t), newMemTx()
	do(t)(s.RoleAdd(tx, &pb.AuthRoleAddRequest{Name: "r"}))
	do(t)(s.RoleAdd(tx, &pb.AuthRoleAddRequest{Name: "root"}))
	do(t)(s.UserAdd(tx, &pb.AuthUserAddRequest{Name: "u", Options: &authpb.UserAddOptions{NoPassword: true}}))
	do(t)(s.UserGrantRole(tx, &pb.AuthUserGrantRoleRequest{User: "u", Role: "r"}))
	do(t)(s.UserGrantRole(tx, &pb.AuthUserGrantRoleRequest{User: "u", Role: "root"}))
	do(t)(s.RoleGrantPermission(tx, &pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: &authpb.Permission{Key: []byte("b")}}))
	do(t)(s.RoleGrantPermission(tx, &pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: &authpb.Permission{Key: []byte("a"), RangeEnd: []byte{0}}}))
	do(t)(s.RoleGrantPermission(tx, &pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: &authpb.Permission{Key: []byte("b"), PermType: authpb.Permission_READWRITE}}))
	perms, err := s.RoleGet("r")
	if err != nil || len(perms) != 2 || string(perms[0].Key) != "a" || string(perms[1].Key) != "b" || perms[1].PermType != authpb.Permission_READWRITE {
		t.Fatalf("role r = %v, %v (want sorted by key, b updated in place)", perms, err)
	}
	if perms, _ := s.RoleGet("root"); len(perms) != 1 || !proto.Equal(perms[0], rootPerm) {
		t.Fatalf("root role = %v", perms)
	}
	if _, err := s.RoleRevokePermission(tx, &pb.AuthRoleRevokePermissionRequest{Role: "r", Key: []byte("a")}); !errors.Is(err, ErrPermissionNotGranted) {
		t.Fatalf("revoke with the wrong range end: %v", err)
	}
	do(t)(s.RoleRevokePermission(tx, &pb.AuthRoleRevokePermissionRequest{Role: "r", Key: []byte("a"), RangeEnd: []byte{0}}))
	do(t)(s.RoleDelete(tx, &pb.AuthRoleDeleteRequest{Role: "r"}))
	if roles, _ := s.UserGet("u"); len(roles) != 1 || roles[0] != "root" {
		t.Fatalf("user u roles after role delete = %v", roles)
	}
	var u authpb.User
	if err := proto.Unmarshal(tx.users["u"], &u); err != nil || len(u.Roles) != 1 || !u.Options.NoPassword || u.Password != nil {
		t.Fatalf("persisted user = %v, %v", &u, err)
	}
	if _, err := s.UserRevokeRole(tx, &pb.AuthUserRevokeRoleRequest{Name: "u", Role: "r"}); !errors.Is(err, ErrRoleNotGranted) {
		t.Fatalf("revoke a role not held: %v", err)
	}
}

// Restore reads back what the changes persisted, as an etcd db would hold it.
func TestRestoreFromBuckets(t *testing.T) {
	s, tx := newTestStore(t), newMemTx()
	setupRoot(t, s, tx)
	do(t)(s.RoleAdd(tx, &pb.AuthRoleAddRequest{Name: "r"}))
	do(t)(s.RoleGrantPermission(tx, &pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: &authpb.Permission{Key: []byte("k")}}))
	do(t)(s.AuthEnable(tx))
	s2 := newTestStore(t)
	if err := s2.Restore(tx.enabled[0] == 1, binary.BigEndian.Uint64(tx.rev), tx.users, tx.roles); err != nil {
		t.Fatal(err)
	}
	if !s2.Enabled() || s2.Revision() != s.Revision() || len(s2.UserList()) != 1 || len(s2.RoleList()) != 1 {
		t.Fatalf("restored: enabled %v rev %d/%d users %v roles %v", s2.Enabled(), s2.Revision(), s.Revision(), s2.UserList(), s2.RoleList())
	}
	if _, err := s2.CheckPassword("root", "rootpw"); err != nil {
		t.Fatalf("restored root password: %v", err)
	}
	if _, err := s2.CheckPassword("root", "nope"); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("wrong password: %v", err)
	}
	if err := s2.Restore(false, 0, nil, nil); err != nil || s2.Revision() != 1 {
		t.Fatalf("empty restore: %v, revision %d (want 1)", err, s2.Revision())
	}
}

func TestPermissionChecks(t *testing.T) {
	s, tx := newTestStore(t), newMemTx()
	setupRoot(t, s, tx)
	grant := func(role string, typ authpb.Permission_Type, key, end string) {
		var e []byte
		if end != "" {
			e = []byte(end)
		}
		do(t)(s.RoleGrantPermission(tx, &pb.AuthRoleGrantPermissionRequest{Name: role, Perm: &authpb.Permission{PermType: typ, Key: []byte(key), RangeEnd: e}}))
	}
	do(t)(s.RoleAdd(tx, &pb.AuthRoleAddRequest{Name: "r1"}))
	do(t)(s.RoleAdd(tx, &pb.AuthRoleAddRequest{Name: "r2"}))
	grant("r1", authpb.Permission_READ, "a", "c")      // [a, c)
	grant("r2", authpb.Permission_READWRITE, "c", "e") // [c, e): contiguous with r1's
	grant("r1", authpb.Permission_WRITE, "k", "")      // the key k
	grant("r2", authpb.Permission_READ, "x", "\x00")   // x and every key after
	grant("r1", authpb.Permission_READ, "g", "h")      // [g, h), a gap after e
	do(t)(s.UserAdd(tx, &pb.AuthUserAddRequest{Name: "u", HashedPassword: hashed(t, s, "p")}))
	do(t)(s.UserGrantRole(tx, &pb.AuthUserGrantRoleRequest{User: "u", Role: "r1"}))
	do(t)(s.UserGrantRole(tx, &pb.AuthUserGrantRoleRequest{User: "u", Role: "r2"}))

	ai := &AuthInfo{Username: "u", Revision: s.Revision()}
	// Disabled: everything passes.
	if err := s.IsPutPermitted(&AuthInfo{}, []byte("z")); err != nil {
		t.Fatalf("disabled: %v", err)
	}
	do(t)(s.AuthEnable(tx))
	ai.Revision = s.Revision()
	for _, c := range []struct {
		write    bool
		key, end string
		want     error
	}{
		{false, "a", "", nil},
		{false, "bzzz", "", nil},
		{false, "c", "", nil},
		{true, "c", "", nil},
		{true, "b", "", ErrPermissionDenied},
		{false, "a", "e", nil},                 // covered by two roles' intervals
		{false, "a", "f", ErrPermissionDenied}, // past e
		{false, "a", "h", ErrPermissionDenied}, // gap [e, g)
		{false, "g", "h", nil},
		{true, "k", "", nil},
		{true, "k", "k\x00", nil}, // the range of just k
		{true, "k", "l", ErrPermissionDenied},
		{false, "x", "\x00", nil}, // from x on
		{false, "y", "", nil},
		{false, "w", "\x00", ErrPermissionDenied},
		{true, "y", "", ErrPermissionDenied},
		{false, "\x00", "\x00", ErrPermissionDenied},
	} {
		var err error
		var end []byte
		if c.end != "" {
			end = []byte(c.end)
		}
		if c.write {
			err = s.IsDeleteRangePermitted(ai, []byte(c.key), end)
		} else {
			err = s.IsRangePermitted(ai, []byte(c.key), end)
		}
		if !errors.Is(err, c.want) || (c.want == nil && err != nil) {
			t.Errorf("write=%v [%q, %q): %v, want %v", c.write, c.key, c.end, err, c.want)
		}
	}
	if err := s.IsRangePermitted(&AuthInfo{}, []byte("a"), nil); !errors.Is(err, ErrUserEmpty) {
		t.Errorf("no user: %v", err)
	}
	if err := s.IsRangePermitted(&AuthInfo{Username: "ghost", Revision: ai.Revision}, []byte("a"), nil); !errors.Is(err, ErrPermissionDenied) {
		t.Errorf("unknown user: %v", err)
	}
	if err := s.IsPutPermitted(&AuthInfo{Username: "root", Revision: ai.Revision}, []byte("anything")); err != nil {
		t.Errorf("root: %v", err)
	}
	if err := s.IsAdminPermitted(ai); !errors.Is(err, ErrPermissionDenied) {
		t.Errorf("admin for u: %v", err)
	}
	if err := s.IsAdminPermitted(&AuthInfo{Username: "ghost"}); !errors.Is(err, ErrUserNotFound) {
		t.Errorf("admin for unknown: %v", err)
	}
	do(t)(s.RoleAdd(tx, &pb.AuthRoleAddRequest{Name: "r3"}))
	if err := s.IsRangePermitted(ai, []byte("a"), nil); !errors.Is(err, ErrAuthOldRevision) {
		t.Errorf("after an auth change, the old revision: %v", err)
	}
}

func TestSimpleTokens(t *testing.T) {
	now := time.Unix(1000, 0)
	applied := uint64(10)
	s, err := New(Config{BcryptCost: 4, TokenTTL: 5 * time.Second, Now: func() time.Time { return now },
		IndexWaiter: func(i uint64) <-chan struct{} {
			c := make(chan struct{})
			if i <= applied {
				close(c)
			}
			return c
		}})
	if err != nil {
		t.Fatal(err)
	}
	tx := newMemTx()
	setupRoot(t, s, tx)
	if _, _, err := s.Authenticate("root", "p", 1); !errors.Is(err, ErrAuthNotEnabled) {
		t.Fatalf("authenticate while disabled: %v", err)
	}
	do(t)(s.AuthEnable(tx))
	ctx := context.Background()
	prefix, _ := s.GenTokenPrefix()
	if len(prefix) != 16 {
		t.Fatalf("prefix %q", prefix)
	}
	tok, commit, err := s.Authenticate("root", prefix, 7)
	if err != nil || tok != prefix+".7" {
		t.Fatalf("token %q, %v", tok, err)
	}
	if _, err := s.AuthInfoFromToken(ctx, tok); !errors.Is(err, ErrInvalidAuthToken) {
		t.Fatalf("token before its commit: %v", err)
	}
	commit()
	ai, err := s.AuthInfoFromToken(ctx, tok)
	if err != nil || ai.Username != "root" || ai.Revision != s.Revision() {
		t.Fatalf("info = %+v, %v", ai, err)
	}
	now = now.Add(4 * time.Second) // used: the TTL starts again
	if _, err := s.AuthInfoFromToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	now = now.Add(6 * time.Second)
	if _, err := s.AuthInfoFromToken(ctx, tok); !errors.Is(err, ErrInvalidAuthToken) {
		t.Fatalf("expired token: %v", err)
	}
	// A token of an index not applied yet waits (here: until the caller gives up).
	_, c2, _ := s.Authenticate("root", "AAAAAAAAAAAAAAAA", 11)
	c2()
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := s.AuthInfoFromToken(cctx, "AAAAAAAAAAAAAAAA.11"); !errors.Is(err, ErrInvalidAuthToken) {
		t.Fatalf("token of an unapplied index: %v", err)
	}
	applied = 11
	if _, err := s.AuthInfoFromToken(ctx, "AAAAAAAAAAAAAAAA.11"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "x", "a.b", "a.1.2", ".3"} {
		if _, err := s.AuthInfoFromToken(ctx, bad); !errors.Is(err, ErrInvalidAuthToken) {
			t.Errorf("token %q: %v", bad, err)
		}
	}
	// A password change kills the user's tokens.
	do(t)(s.UserChangePassword(tx, &pb.AuthUserChangePasswordRequest{Name: "root", HashedPassword: hashed(t, s, "new")}))
	if _, err := s.AuthInfoFromToken(ctx, "AAAAAAAAAAAAAAAA.11"); !errors.Is(err, ErrInvalidAuthToken) {
		t.Fatalf("token after password change: %v", err)
	}
	_, c3, _ := s.Authenticate("root", "BBBBBBBBBBBBBBBB", 3)
	c3()
	do(t)(s.AuthDisable(tx))
	do(t)(s.AuthEnable(tx))
	if _, err := s.AuthInfoFromToken(ctx, "BBBBBBBBBBBBBBBB.3"); !errors.Is(err, ErrInvalidAuthToken) {
		t.Fatalf("token after disable: %v", err)
	}
	do(t)(s.UserAdd(tx, &pb.AuthUserAddRequest{Name: "np", Options: &authpb.UserAddOptions{NoPassword: true}}))
	if _, err := s.CheckPassword("np", ""); !errors.Is(err, ErrNoPasswordUser) {
		t.Fatalf("no-password user: %v", err)
	}
	if _, _, err := s.Authenticate("np", "C", 4); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("authenticate no-password user: %v", err)
	}
}
