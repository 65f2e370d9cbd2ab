package e2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// pairSide names the members of a Pair in order: the side under test, the reference
// (both are etcd under CAIRN_TEST_AGAINST=etcd).
var pairSide = []string{"cairn", "etcd"}

// clientLogLine is etcd client's own JSON log output ("retrying of unary invoker
// failed"), which carries timestamps and addresses.
var clientLogLine = regexp.MustCompile(`(?m)^\{"level".*\n?`)

// volatile are the parts of etcdctl's output that differ between any two runs.
var volatile = regexp.MustCompile(`http://127\.0\.0\.1:\d+|took (= )?[0-9.]+[µm]?s`)

// authScript is the etcdctl session both members get; each step's output (stdout and
// stderr without the client's log lines) must be the same on Cairn and etcd.
var authScript = [][]string{
	{"user", "add", "root", "--new-user-password=rootpw"},
	{"user", "add", "root", "--new-user-password=x"},
	{"user", "grant-role", "root", "root"},
	{"role", "add", "r1"},
	{"role", "add", "r1"},
	{"role", "add", ""},
	{"role", "grant-permission", "r1", "readwrite", "foo"},
	{"role", "grant-permission", "r1", "read", "--prefix", "pre/"},
	{"role", "grant-permission", "r1", "write", "--from-key", "z"},
	{"role", "grant-permission", "r1", "read", "a", "c"},
	{"role", "grant-permission", "nope", "read", "a"},
	{"role", "grant-permission", "r1", "read", "d", "c"},
	{"user", "add", "u1", "--new-user-password=u1pw"},
	{"user", "grant-role", "u1", "r1"},
	{"user", "grant-role", "u1", "nope"},
	{"user", "add", "np", "--no-password"},
	{"user", "grant-role", "np", "r1"},
	{"user", "list"},
	{"role", "list"},
	{"role", "get", "r1"},
	{"auth", "status"},
	{"auth", "enable"},
	{"auth", "status"},
	{"get", "foo"},
	{"put", "foo", "bar"},
	{"--user", "u1:u1pw", "put", "foo", "bar"},
	{"--user", "u1:u1pw", "get", "foo"},
	{"--user", "u1:u1pw", "put", "pre/x", "1"},
	{"--user", "root:rootpw", "put", "pre/x", "1"},
	{"--user", "u1:u1pw", "get", "pre/", "--prefix"},
	{"--user", "u1:u1pw", "get", "a", "c"},
	{"--user", "u1:u1pw", "get", "a", "d"},
	{"--user", "u1:u1pw", "put", "zz", "1"},
	{"--user", "u1:u1pw", "get", "zz"},
	{"--user", "u1:u1pw", "del", "zz"},
	{"--user", "u1:u1pw", "del", "foo", "--prev-kv"},
	{"--user", "u1:u1pw", "txn"}, // stdin: see authScriptStdin
	{"--user", "u1:wrong", "get", "foo"},
	{"--user", "ghost:x", "get", "foo"},
	{"--user", "np:x", "get", "foo"},
	{"--user", "u1:u1pw", "user", "list"},
	{"--user", "u1:u1pw", "user", "get", "u1"},
	{"--user", "u1:u1pw", "user", "get", "root"},
	{"--user", "u1:u1pw", "role", "get", "r1"},
	{"--user", "u1:u1pw", "role", "get", "root"},
	{"--user", "u1:u1pw", "auth", "status"},
	{"--user", "u1:u1pw", "auth", "disable"},
	{"--user", "u1:u1pw", "alarm", "list"},
	{"--user", "u1:u1pw", "alarm", "disarm"},
	{"--user", "u1:u1pw", "compaction", "1"},
	{"--user", "u1:u1pw", "defrag"},
	{"--user", "u1:u1pw", "move-leader", "1"},
	{"--user", "u1:u1pw", "member", "add", "x", "--peer-urls=http://127.0.0.1:1"},
	{"--user", "u1:u1pw", "member", "remove", "1"},
	{"member", "update", "1", "--peer-urls=http://127.0.0.1:1"},
	{"member", "list", "-w", "json"},
	{"--user", "u1:u1pw", "endpoint", "health"},
	{"endpoint", "status"},
	{"--user", "u1:u1pw", "snapshot", "save", "snap.db"},
	{"--user", "u1:u1pw", "downgrade", "validate", "3.5"},
	{"--user", "u1:u1pw", "endpoint", "hashkv"},
	{"--user", "root:rootpw", "role", "get", "root"},
	{"--user", "root:rootpw", "user", "get", "np"},
	{"--user", "root:rootpw", "auth", "status"},
	{"--user", "root:rootpw", "user", "passwd", "u1", "--interactive=false"}, // stdin: new password
	{"--user", "u1:u1pw", "get", "foo"},
	{"--user", "u1:u1new", "get", "foo"},
	{"--user", "root:rootpw", "role", "revoke-permission", "r1", "foo"},
	{"--user", "root:rootpw", "role", "revoke-permission", "r1", "foo"},
	{"--user", "root:rootpw", "role", "revoke-permission", "r1", "pre/", "--prefix"},
	{"--user", "u1:u1new", "get", "foo"},
	{"--user", "root:rootpw", "user", "revoke-role", "u1", "r1"},
	{"--user", "root:rootpw", "user", "revoke-role", "u1", "r1"},
	{"--user", "root:rootpw", "user", "get", "u1"},
	{"--user", "root:rootpw", "user", "delete", "root"},
	{"--user", "root:rootpw", "role", "delete", "root"},
	{"--user", "root:rootpw", "user", "revoke-role", "root", "root"},
	{"--user", "root:rootpw", "role", "delete", "r1"},
	{"--user", "root:rootpw", "role", "delete", "r1"},
	{"--user", "root:rootpw", "user", "get", "np"},
	{"--user", "root:rootpw", "user", "delete", "u1"},
	{"--user", "root:rootpw", "user", "delete", "u1"},
	{"--user", "root:rootpw", "auth", "status"},
	{"--user", "root:rootpw", "auth", "disable"},
	{"auth", "status"},
	{"get", "foo"},
	{"auth", "enable"},
	{"--user", "root:rootpw", "auth", "disable"},
}

var authScriptStdin = map[int]string{}

func init() {
	for i, step := range authScript {
		switch {
		case step[len(step)-1] == "txn":
			// compares and ops on keys u1 may read (foo) and may not (secret)
			authScriptStdin[i] = "value(\"foo\") = \"bar\"\n\nget foo\nput secret x\n\nget foo\n\n"
		case step[len(step)-1] == "--interactive=false":
			authScriptStdin[i] = "u1new\n"
		}
	}
}

// The etcdctl user/role/auth commands and --user access, on Cairn and etcd alike: every
// step's output and error text equal.
func TestAuthEtcdctl(t *testing.T) {
	p := framework.StartPair(t)
	outs := map[string][]string{}
	for i, m := range p.Members() {
		side := pairSide[i]
		for i, step := range authScript {
			stdout, stderr, _ := m.EtcdctlStdin(authScriptStdin[i], step...)
			out := stdout + clientLogLine.ReplaceAllString(stderr, "")
			outs[side] = append(outs[side], volatile.ReplaceAllString(out, "<v>"))
		}
	}
	for i, step := range authScript {
		c, e := outs["cairn"][i], outs["etcd"][i]
		if c != e {
			t.Errorf("step %d etcdctl %s:\ncairn: %q\netcd:  %q", i, strings.Join(step, " "), c, e)
		} else {
			t.Logf("step %d etcdctl %s: %q", i, strings.Join(step, " "), c)
		}
	}
}

// authSetup makes root (with the root role) and, for the matrix, users with one role
// each, then enables auth.
func authSetup(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	must := mustOK(t)
	must(cli.UserAdd(ctx(t), "root", "rootpw"))
	must(cli.UserGrantRole(ctx(t), "root", "root"))
	roles := map[string][]clientv3.PermissionType{}
	grant := func(role, key, end string, typ clientv3.PermissionType) {
		if _, ok := roles[role]; !ok {
			must(cli.RoleAdd(ctx(t), role))
			must(cli.UserAdd(ctx(t), role, role+"pw"))
			must(cli.UserGrantRole(ctx(t), role, role))
		}
		roles[role] = append(roles[role], typ)
		must(cli.RoleGrantPermission(ctx(t), role, key, end, typ))
	}
	grant("reader", "k", "\x00", clientv3.PermissionType(authpb.READ))
	grant("writer", "k", "\x00", clientv3.PermissionType(authpb.WRITE))
	grant("exact", "k1", "", clientv3.PermissionType(authpb.READWRITE))
	grant("prefix", "k", "l", clientv3.PermissionType(authpb.READWRITE))
	must(cli.RoleAdd(ctx(t), "empty"))
	must(cli.UserAdd(ctx(t), "nobody", "nobodypw"))
	must(cli.UserGrantRole(ctx(t), "nobody", "empty"))
	must(cli.AuthEnable(ctx(t)))
}

// userConn is a raw gRPC connection whose calls carry the user's token ("" = none,
// "bogus" = a token the member never issued).
type userConn struct {
	kv    pb.KVClient
	watch pb.WatchClient
	lease pb.LeaseClient
	token string
}

// md is a call context carrying the user's token.
func (u userConn) md(t *testing.T) context.Context {
	cx := ctx(t)
	if u.token != "" {
		cx = metadata.AppendToOutgoingContext(cx, "token", u.token)
	}
	return cx
}

func newUserConn(t *testing.T, m *framework.Member, user string) userConn {
	t.Helper()
	// A plain gRPC connection: clientv3's interceptors would retry "invalid auth token".
	conn, err := grpc.NewClient(m.HostPort(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	u := userConn{kv: pb.NewKVClient(conn), watch: pb.NewWatchClient(conn), lease: pb.NewLeaseClient(conn)}
	switch user {
	case "":
	case "bogus":
		u.token = "AbCdEfGhIjKlMnOp.1" // an applied index, a token never issued
	default:
		resp, err := pb.NewAuthClient(conn).Authenticate(ctx(t), &pb.AuthenticateRequest{Name: user, Password: user + "pw"})
		if err != nil {
			t.Fatalf("authenticate %s: %v", user, err)
		}
		u.token = resp.Token
	}
	return u
}

// authOutcome renders an answer for comparison: the error's code and message, or "ok".
func authOutcome(err error) string {
	if err == nil {
		return "ok"
	}
	code, msg := framework.StatusOf(err)
	return fmt.Sprintf("%v: %s", code, msg)
}

// rbacCalls are the KV, Watch and Lease RPCs of the matrix, each on keys inside and
// outside the users' permissions. Each returns its outcome.
func rbacCalls(t *testing.T, leaseK1, leaseK9 int64) []struct {
	name string
	call func(u userConn) string
} {
	put := func(k string, prev bool) func(u userConn) string {
		return func(u userConn) string {
			_, err := u.kv.Put(u.md(t), &pb.PutRequest{Key: []byte(k), Value: []byte("v"), PrevKv: prev})
			return authOutcome(err)
		}
	}
	get := func(k, end string) func(u userConn) string {
		return func(u userConn) string {
			_, err := u.kv.Range(u.md(t), &pb.RangeRequest{Key: []byte(k), RangeEnd: []byte(end)})
			return authOutcome(err)
		}
	}
	del := func(k, end string, prev bool) func(u userConn) string {
		return func(u userConn) string {
			_, err := u.kv.DeleteRange(u.md(t), &pb.DeleteRangeRequest{Key: []byte(k), RangeEnd: []byte(end), PrevKv: prev})
			return authOutcome(err)
		}
	}
	txn := func(cmpKey string, ops ...*pb.RequestOp) func(u userConn) string {
		return func(u userConn) string {
			r := &pb.TxnRequest{Success: ops}
			if cmpKey != "" {
				r.Compare = []*pb.Compare{{Key: []byte(cmpKey), Target: pb.Compare_VERSION, Result: pb.Compare_GREATER}}
			}
			_, err := u.kv.Txn(u.md(t), r)
			return authOutcome(err)
		}
	}
	opGet := func(k string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte(k)}}}
	}
	opPut := func(k string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k)}}}
	}
	watch := func(k, end string) func(u userConn) string {
		return func(u userConn) string {
			ws, err := u.watch.Watch(u.md(t))
			if err != nil {
				return authOutcome(err)
			}
			defer ws.CloseSend()
			if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte(k), RangeEnd: []byte(end)}}}); err != nil {
				return authOutcome(err)
			}
			resp, err := ws.Recv()
			if err != nil {
				return authOutcome(err)
			}
			return fmt.Sprintf("created=%v canceled=%v reason=%q", resp.Created, resp.Canceled, resp.CancelReason)
		}
	}
	return []struct {
		name string
		call func(u userConn) string
	}{
		{"put k1", put("k1", false)},
		{"put k1 prev_kv", put("k1", true)},
		{"put k2", put("k2", false)},
		{"put x", put("x", false)},
		{"get k1", get("k1", "")},
		{"get k2", get("k2", "")},
		{"get [k, l)", get("k", "l")},
		{"get k from-key", get("k", "\x00")},
		{"get x", get("x", "")},
		{"delete k1", del("k1", "", false)},
		{"delete k1 prev_kv", del("k1", "", true)},
		{"delete [k, l)", del("k", "l", false)},
		{"txn compare k1, get k1", txn("k1", opGet("k1"))},
		{"txn compare x, get k1", txn("x", opGet("k1"))},
		{"txn put k1", txn("", opPut("k1"))},
		{"txn get k1, put k2", txn("", opGet("k1"), opPut("k2"))},
		{"txn nested put x", txn("", &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: []*pb.RequestOp{opPut("x")}}}})},
		{"watch k1", watch("k1", "")},
		{"watch [k, l)", watch("k", "l")},
		{"watch x", watch("x", "")},
		{"lease grant", func(u userConn) string {
			_, err := u.lease.LeaseGrant(u.md(t), &pb.LeaseGrantRequest{TTL: 60})
			return authOutcome(err)
		}},
		{"lease ttl keys (k1)", func(u userConn) string {
			_, err := u.lease.LeaseTimeToLive(u.md(t), &pb.LeaseTimeToLiveRequest{ID: leaseK1, Keys: true})
			return authOutcome(err)
		}},
		{"lease ttl (k9)", func(u userConn) string {
			_, err := u.lease.LeaseTimeToLive(u.md(t), &pb.LeaseTimeToLiveRequest{ID: leaseK9})
			return authOutcome(err)
		}},
		{"lease ttl keys (k9)", func(u userConn) string {
			_, err := u.lease.LeaseTimeToLive(u.md(t), &pb.LeaseTimeToLiveRequest{ID: leaseK9, Keys: true})
			return authOutcome(err)
		}},
		{"lease leases", func(u userConn) string {
			_, err := u.lease.LeaseLeases(u.md(t), &pb.LeaseLeasesRequest{})
			return authOutcome(err)
		}},
		{"lease keepalive (k1)", func(u userConn) string {
			ka, err := u.lease.LeaseKeepAlive(u.md(t))
			if err != nil {
				return authOutcome(err)
			}
			defer ka.CloseSend()
			if err := ka.Send(&pb.LeaseKeepAliveRequest{ID: leaseK1}); err != nil {
				return authOutcome(err)
			}
			resp, err := ka.Recv()
			if err != nil {
				return authOutcome(err)
			}
			return fmt.Sprintf("ttl>0=%v", resp.TTL > 0)
		}},
		{"lease revoke (k1)", func(u userConn) string {
			_, err := u.lease.LeaseRevoke(u.md(t), &pb.LeaseRevokeRequest{ID: leaseK1})
			return authOutcome(err)
		}},
	}
}

// The RBAC matrix: each KV, Watch and Lease RPC x each kind of caller, on Cairn and
// etcd in the same test; every cell's answer must be etcd's.
func TestAuthRBACMatrix(t *testing.T) {
	p := framework.StartPair(t)
	users := []string{"", "bogus", "nobody", "reader", "writer", "exact", "prefix", "root"}
	results := map[string]map[string]string{}
	var names []string
	for i, m := range p.Members() {
		side := pairSide[i]
		authSetup(t, m.Client())
		root := newUserConn(t, m, "root")
		// Before each cell: leases with keys, k1 on 101 and k9 on 109 (whatever the
		// previous cell deleted or revoked).
		reset := func() {
			for _, lk := range []struct {
				id  int64
				key string
			}{{101, "k1"}, {109, "k9"}} {
				_, err := root.lease.LeaseGrant(root.md(t), &pb.LeaseGrantRequest{ID: lk.id, TTL: 600})
				if err != nil && !strings.Contains(err.Error(), "lease already exists") {
					t.Fatalf("grant lease %d: %v", lk.id, err)
				}
				if _, err := root.kv.Put(root.md(t), &pb.PutRequest{Key: []byte(lk.key), Lease: lk.id}); err != nil {
					t.Fatalf("put %s: %v", lk.key, err)
				}
			}
		}
		calls := rbacCalls(t, 101, 109)
		for _, user := range users {
			u := newUserConn(t, m, user)
			if user == "" {
				u.token = ""
			}
			for _, c := range calls {
				cell := fmt.Sprintf("%-28s as %q", c.name, user)
				if results[cell] == nil {
					results[cell] = map[string]string{}
					names = append(names, cell)
				}
				reset()
				results[cell][side] = c.call(u)
			}
		}
	}
	diff := 0
	for _, cell := range names {
		c, e := results[cell]["cairn"], results[cell]["etcd"]
		if c != e {
			diff++
			t.Errorf("%s: cairn %s, etcd %s", cell, c, e)
		} else {
			t.Logf("%s: %s", cell, c)
		}
	}
	t.Logf("RBAC matrix: %d cells, %d differ", len(names), diff)
}

// clientv3 with Username/Password: it authenticates, sends its token, and when the
// member answers "invalid auth token" (the user's password changed) it authenticates
// again, with the password it has, as against etcd.
func TestAuthClientV3(t *testing.T) {
	p := framework.StartPair(t)
	for i, m := range p.Members() {
		t.Run(pairSide[i], func(t *testing.T) {
			authSetup(t, m.Client())
			newCli := func(user, pw string) (*clientv3.Client, error) {
				return clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, Username: user, Password: pw,
					DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
			}
			if _, err := newCli("prefix", "wrong"); !errors.Is(err, rpctypes.ErrAuthFailed) {
				t.Fatalf("wrong password: %v, want %v", err, rpctypes.ErrAuthFailed)
			}
			cli, err := newCli("prefix", "prefixpw")
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			if _, err := cli.Put(ctx(t), "k5", "v"); err != nil {
				t.Fatalf("permitted put: %v", err)
			}
			if _, err := cli.Put(ctx(t), "x", "v"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
				t.Fatalf("denied put: %v", err)
			}
			if _, err := m.Client().Get(ctx(t), "k5"); !errors.Is(err, rpctypes.ErrUserEmpty) {
				t.Fatalf("get without a user: %v", err)
			}
			root, err := newCli("root", "rootpw")
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			// A permission granted now holds at once (the simple token carries no revision).
			if _, err := root.RoleGrantPermission(ctx(t), "prefix", "x", "", clientv3.PermissionType(authpb.WRITE)); err != nil {
				t.Fatal(err)
			}
			if _, err := cli.Put(ctx(t), "x", "v"); err != nil {
				t.Fatalf("put after the grant: %v", err)
			}
			// The password changes: the old token dies; the client's re-authentication
			// with the old password fails.
			if _, err := root.UserChangePassword(ctx(t), "prefix", "newpw"); err != nil {
				t.Fatal(err)
			}
			if _, err := cli.Get(ctx(t), "k5"); !errors.Is(err, rpctypes.ErrAuthFailed) {
				t.Fatalf("get after the password change: %v, want %v", err, rpctypes.ErrAuthFailed)
			}
			cli2, err := newCli("prefix", "newpw")
			if err != nil {
				t.Fatal(err)
			}
			defer cli2.Close()
			if r, err := cli2.Get(ctx(t), "k5"); err != nil || len(r.Kvs) != 1 {
				t.Fatalf("get with the new password: %v %v", r, err)
			}
			// The Lock service runs through the KV checks: a lock under the permitted
			// prefix is taken, one outside it refused.
			lease, err := cli2.Grant(ctx(t), 60)
			if err != nil {
				t.Fatal(err)
			}
			lock := v3lockpb.NewLockClient(cli2.ActiveConnection())
			if _, err := lock.Lock(ctx(t), &v3lockpb.LockRequest{Name: []byte("k/lk"), Lease: int64(lease.ID)}); err != nil {
				t.Fatalf("lock k/lk: %v", err)
			}
			lctx, lcancel := context.WithTimeout(cli2.Ctx(), opTimeout)
			defer lcancel()
			_, err = lock.Lock(lctx, &v3lockpb.LockRequest{Name: []byte("x/lk"), Lease: int64(lease.ID)})
			// etcd's lock service returns the KV error unconverted: codes.Unknown.
			framework.RequireGRPCError(t, err, codes.Unknown, "etcdserver: permission denied")
			st, err := cli2.Status(ctx(t), m.ClientURL)
			if err != nil || st.Header.MemberId == 0 {
				t.Fatalf("status as a plain user: %v %v", st, err)
			}
			if _, err := cli2.HashKV(ctx(t), m.ClientURL, 0); !errors.Is(err, rpctypes.ErrPermissionDenied) {
				t.Fatalf("hashkv as a plain user: %v", err)
			}
			if _, err := root.HashKV(ctx(t), m.ClientURL, 0); err != nil {
				t.Fatalf("hashkv as root: %v", err)
			}
			as, err := root.AuthStatus(ctx(t))
			if err != nil || !as.Enabled {
				t.Fatalf("auth status: %v %v", as, err)
			}
			t.Logf("auth revision %d", as.AuthRevision)
			// The member's own health read runs as root (etcd's WithRoot).
			if code, body, err := m.HTTPGet("/health"); err != nil || code != 200 || !strings.Contains(body, `"health":"true"`) {
				t.Fatalf("/health with auth enabled: %d %q %v", code, body, err)
			}
			// Disabled again: the member ignores the token and serves everyone.
			if _, err := root.AuthDisable(ctx(t)); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Client().Get(ctx(t), "k5"); err != nil {
				t.Fatalf("get after auth disable: %v", err)
			}
		})
	}
}

// With --client-cert-auth, a client that sends no token is the user its certificate's
// common name names (a token, when sent, wins); on Cairn and etcd alike.
func TestAuthClientCertCN(t *testing.T) {
	ca := framework.NewCA(t, "ca")
	srv := ca.ServerCert(t, "server", "server")
	rootCert := ca.Issue(t, "root", framework.CertOptions{CN: "root"})
	alice := ca.Issue(t, "alice", framework.CertOptions{CN: "alice"})
	ghost := ca.Issue(t, "ghost", framework.CertOptions{CN: "ghost"})
	p := framework.StartPair(t, framework.Options{
		ClientTLS: &framework.TLSOptions{CA: ca, Server: srv, ClientCertAuth: true, Client: &rootCert},
	})
	as := func(c framework.CertFiles) []string { return []string{"--cert=" + c.CertFile, "--key=" + c.KeyFile} }
	script := [][]string{
		{"user", "add", "root", "--new-user-password=rootpw"},
		{"user", "grant-role", "root", "root"},
		{"role", "add", "r"},
		{"role", "grant-permission", "r", "read", "k"},
		{"user", "add", "alice", "--new-user-password=alicepw"},
		{"user", "grant-role", "alice", "r"},
		{"auth", "enable"},
		{"put", "k", "v"}, // as CN root
		{"user", "list"},  // admin, as CN root
		append(as(alice), "get", "k"),
		append(as(alice), "put", "k", "v2"),
		append(as(alice), "user", "list"),
		append(as(ghost), "get", "k"),
		append(as(ghost), "user", "list"),
		{"--user", "alice:alicepw", "put", "k", "v3"}, // the token's user, not the CN's
		{"--user", "alice:alicepw", "get", "k"},
		{"auth", "disable"},
	}
	outs := map[string][]string{}
	for i, m := range p.Members() {
		side := pairSide[i]
		for _, step := range script {
			stdout, stderr, _ := m.Etcdctl(step...)
			out := volatile.ReplaceAllString(stdout+clientLogLine.ReplaceAllString(stderr, ""), "<v>")
			outs[side] = append(outs[side], out)
		}
	}
	for i, step := range script {
		if c, e := outs["cairn"][i], outs["etcd"][i]; c != e {
			t.Errorf("step %d etcdctl %s:\ncairn: %q\netcd:  %q", i, strings.Join(step, " "), c, e)
		} else {
			t.Logf("step %d etcdctl %s: %q", i, strings.Join(step, " "), c)
		}
	}
}

// A simple token assigned through raft is known on every member; a restarted member
// forgets the tokens (they live in memory) but keeps users, roles and the auth state.
func TestAuthClusterTokens(t *testing.T) {
	c := framework.StartCluster(t, 3, framework.Options{})
	authSetup(t, c.Client())
	m1, m3 := c.Members[0], c.Members[2]
	u := newUserConn(t, m1, "prefix")
	for _, m := range c.Members {
		mu := newUserConn(t, m, "")
		mu.token = u.token
		// A member that has not applied the Authenticate entry yet waits for it.
		if _, err := mu.kv.Put(mu.md(t), &pb.PutRequest{Key: []byte("k1"), Value: []byte(m.Name)}); err != nil {
			t.Fatalf("put with m1's token on %s: %v", m.Name, err)
		}
		_, err := mu.kv.Put(mu.md(t), &pb.PutRequest{Key: []byte("x"), Value: []byte("v")})
		framework.RequireGRPCError(t, err, codes.PermissionDenied, "etcdserver: permission denied")
	}
	m3.Restart()
	u3 := newUserConn(t, m3, "")
	u3.token = u.token
	_, err := u3.kv.Range(u3.md(t), &pb.RangeRequest{Key: []byte("k1")})
	framework.RequireGRPCError(t, err, codes.Unauthenticated, "etcdserver: invalid auth token")
	if _, err := u.kv.Range(u.md(t), &pb.RangeRequest{Key: []byte("k1")}); err != nil {
		t.Fatalf("the token on m1 after m3's restart: %v", err)
	}
	r3 := newUserConn(t, m3, "root")
	st, err := pb.NewAuthClient(m3.Client().ActiveConnection()).AuthStatus(metadata.AppendToOutgoingContext(ctx(t), "token", r3.token), &pb.AuthStatusRequest{})
	if err != nil || !st.Enabled {
		t.Fatalf("auth status on the restarted member: %v %v", st, err)
	}
	_, err = pb.NewKVClient(m3.Client().ActiveConnection()).Range(ctx(t), &pb.RangeRequest{Key: []byte("k1")})
	framework.RequireGRPCError(t, err, codes.InvalidArgument, "etcdserver: user name is empty")
}

// etcd's auth buckets restore into Cairn and Cairn's back into etcd: an etcd snapshot of
// an auth-enabled member, restored with cairnctl, is served by Cairn with the same users,
// roles, permissions and auth revision; a snapshot of that Cairn, restored with etcdutl,
// is served by etcd the same way.
func TestAuthSnapshotRoundTrip(t *testing.T) {
	framework.CairnOnly(t, "restores an etcd snapshot into Cairn with cairnctl")
	src := framework.StartMember(t, framework.Options{Binary: framework.BinaryEtcd})
	authSetup(t, src.Client())
	show := func(m *framework.Member) string {
		t.Helper()
		var out strings.Builder
		for _, step := range [][]string{
			{"--user", "root:rootpw", "auth", "status"},
			{"--user", "root:rootpw", "user", "list"},
			{"--user", "root:rootpw", "role", "list"},
			{"--user", "root:rootpw", "role", "get", "reader"},
			{"--user", "root:rootpw", "role", "get", "prefix"},
			{"--user", "prefix:prefixpw", "put", "k1", "v"},
			{"--user", "prefix:prefixpw", "put", "x", "v"},
			{"--user", "reader:readerpw", "get", "k1"},
			{"get", "k1"},
		} {
			stdout, stderr, _ := m.Etcdctl(step...)
			out.WriteString(stdout + clientLogLine.ReplaceAllString(stderr, ""))
		}
		return out.String()
	}
	want := show(src)
	save := func(m *framework.Member) string {
		t.Helper()
		db := filepath.Join(t.TempDir(), "snap.db")
		if _, stderr, err := m.Etcdctl("--user", "root:rootpw", "snapshot", "save", db); err != nil {
			t.Fatalf("snapshot save from %s: %v %s", m.Name, err, stderr)
		}
		return db
	}
	restoreWith := func(bin string, db string, m *framework.Member) {
		t.Helper()
		r := framework.Run(t, time.Minute, "", nil, bin, "snapshot", "restore", db, "--name", m.Name, "--data-dir", m.DataDir,
			"--initial-cluster", m.Name+"="+m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL, "--initial-cluster-token", "cairn-e2e")
		if r.Err != nil {
			t.Fatalf("%s snapshot restore: %v\n%s", filepath.Base(bin), r.Err, r.Combined())
		}
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		if err := m.WaitReady(framework.DefaultReadyTimeout); err != nil {
			t.Fatalf("%s from the restored dir: %v\n%s", m.Name, err, m.Log())
		}
	}
	cairn := framework.NewMember(t, framework.Options{Name: "cairn", Binary: framework.BinaryCairn})
	restoreWith(framework.CairnctlBin(t), save(src), cairn)
	if got := show(cairn); got != want {
		t.Fatalf("Cairn from etcd's snapshot:\n%s\nwant (etcd):\n%s", got, want)
	}
	back := framework.NewMember(t, framework.Options{Name: "back", Binary: framework.BinaryEtcd})
	restoreWith(framework.EtcdutlBin(t), save(cairn), back)
	if got := show(back); got != want {
		t.Fatalf("etcd from Cairn's snapshot:\n%s\nwant:\n%s", got, want)
	}
}

// --auth-token jwt: tokens are signed, carry the auth revision, and any auth change
// makes them old (etcd's "revision of auth store is old"); clientv3 then fetches a new
// token and its call goes through. On Cairn and etcd alike.
func TestAuthJWT(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	pubDER, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	priv, pub := filepath.Join(dir, "jwt.key"), filepath.Join(dir, "jwt.pub")
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	p := framework.StartPair(t, framework.Options{Flags: []string{
		"--auth-token=jwt,pub-key=" + pub + ",priv-key=" + priv + ",sign-method=RS256,ttl=10m"}})
	for i, m := range p.Members() {
		t.Run(pairSide[i], func(t *testing.T) {
			authSetup(t, m.Client())
			u := newUserConn(t, m, "prefix")
			if strings.Count(u.token, ".") != 2 {
				t.Fatalf("token %q is not a JWT", u.token)
			}
			if _, err := u.kv.Put(u.md(t), &pb.PutRequest{Key: []byte("k1"), Value: []byte("v")}); err != nil {
				t.Fatalf("put with a fresh jwt: %v", err)
			}
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, Username: "prefix", Password: "prefixpw",
				DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			if _, err := cli.Put(ctx(t), "k2", "v"); err != nil {
				t.Fatal(err)
			}
			root := newUserConn(t, m, "root")
			if _, err := pb.NewAuthClient(m.Client().ActiveConnection()).RoleAdd(root.md(t), &pb.AuthRoleAddRequest{Name: "another"}); err != nil {
				t.Fatal(err)
			}
			_, err = u.kv.Put(u.md(t), &pb.PutRequest{Key: []byte("k1"), Value: []byte("v")})
			framework.RequireGRPCError(t, err, codes.InvalidArgument, "etcdserver: revision of auth store is old")
			_, err = u.kv.Range(u.md(t), &pb.RangeRequest{Key: []byte("k1")})
			framework.RequireGRPCError(t, err, codes.InvalidArgument, "etcdserver: revision of auth store is old")
			if _, err := cli.Put(ctx(t), "k3", "v"); err != nil {
				t.Fatalf("clientv3 after the auth change (it should refresh its token): %v", err)
			}
		})
	}
}

// Cairn's brute-force limit: after 10 failed authentications in a row a source may try
// once a second; the refusal ("too many requests") is logged. etcd has no such limit.
func TestAuthFailureLimit(t *testing.T) {
	framework.CairnOnly(t, "etcd does not limit failed authentications")
	m := start(t)
	authSetup(t, m.Client())
	conn, err := grpc.NewClient(m.HostPort(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ac := pb.NewAuthClient(conn)
	for i := 0; i < 10; i++ {
		_, err := ac.Authenticate(ctx(t), &pb.AuthenticateRequest{Name: "root", Password: "guess"})
		framework.RequireGRPCError(t, err, codes.InvalidArgument, "etcdserver: authentication failed, invalid user ID or password")
	}
	_, err = ac.Authenticate(ctx(t), &pb.AuthenticateRequest{Name: "root", Password: "rootpw"})
	framework.RequireGRPCError(t, err, codes.Unknown, "etcdserver: too many requests")
	if !m.LogContains("refused authentication: too many failed attempts from this source") {
		t.Fatal("the refusal is not logged")
	}
	waitFor(t, "a refilled attempt", func() bool {
		_, err := ac.Authenticate(ctx(t), &pb.AuthenticateRequest{Name: "root", Password: "rootpw"})
		return err == nil
	})
}
