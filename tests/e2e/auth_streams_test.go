package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// authStreamChanges are the auth changes made while a user's Watch and LeaseKeepAlive
// streams are open, each to a user (and role) of its own.
var authStreamChanges = []struct {
	name   string
	change func(ctx context.Context, root *clientv3.Client, user string) error
}{
	{"permission revoked", func(ctx context.Context, root *clientv3.Client, user string) error {
		_, err := root.RoleRevokePermission(ctx, user, "w/", "w0")
		return err
	}},
	{"role revoked", func(ctx context.Context, root *clientv3.Client, user string) error {
		_, err := root.UserRevokeRole(ctx, user, user)
		return err
	}},
	{"role deleted", func(ctx context.Context, root *clientv3.Client, user string) error {
		_, err := root.RoleDelete(ctx, user)
		return err
	}},
	{"user deleted", func(ctx context.Context, root *clientv3.Client, user string) error {
		_, err := root.UserDelete(ctx, user)
		return err
	}},
	{"password changed", func(ctx context.Context, root *clientv3.Client, user string) error {
		_, err := root.UserChangePassword(ctx, user, "other")
		return err
	}},
	{"auth disabled", func(ctx context.Context, root *clientv3.Client, _ string) error {
		_, err := root.AuthDisable(ctx)
		return err
	}},
}

// watchOutcome is what an open raw Watch stream did within 1.5 s: its next response
// (an event or a cancellation) or its end.
func watchOutcome(ch <-chan *pb.WatchResponse, errc <-chan error) string {
	select {
	case r := <-ch:
		switch {
		case r.Canceled:
			return "canceled: " + r.CancelReason
		case r.Created:
			return "created"
		case len(r.Events) > 0:
			return fmt.Sprintf("event %s", r.Events[0].Kv.Key)
		default:
			return fmt.Sprintf("response %v", r)
		}
	case err := <-errc:
		return "stream ended: " + authOutcome(err)
	case <-time.After(1500 * time.Millisecond):
		return "nothing"
	}
}

// clientWatchOutcome is what a clientv3 watch channel did within 1.5 s.
func clientWatchOutcome(wc clientv3.WatchChan) string {
	select {
	case r, ok := <-wc:
		switch {
		case !ok:
			return "closed"
		case r.Err() != nil:
			return "error: " + r.Err().Error()
		case len(r.Events) > 0:
			return fmt.Sprintf("event %s", r.Events[0].Kv.Key)
		default:
			return fmt.Sprintf("response %+v", r)
		}
	case <-time.After(1500 * time.Millisecond):
		return "nothing"
	}
}

// clientKeepAliveOutcome is what a clientv3 keep-alive channel (sending every second)
// did within 4 s: closed, or n more responses.
func clientKeepAliveOutcome(kc <-chan *clientv3.LeaseKeepAliveResponse, n int) string {
	timeout := time.After(4 * time.Second)
	for n > 0 {
		select {
		case _, ok := <-kc:
			if !ok {
				return "closed"
			}
			n--
		case <-timeout:
			return "nothing"
		}
	}
	return "kept alive"
}

// rawCreateWatch asks for a watch on the prefix w/.
func rawCreateWatch(ws pb.Watch_WatchClient) error {
	return ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{
		CreateRequest: &pb.WatchCreateRequest{Key: []byte("w/"), RangeEnd: []byte("w0")}}})
}

// TestAuthStreamsAfterPermissionChange: a user's Watch and LeaseKeepAlive streams,
// opened with its token (raw gRPC and clientv3 with Username/Password), then root
// revokes the user's permission, its role, deletes the role or the user, changes its
// password, or disables auth, and puts a key in the watched range. On etcd 3.6.16 (and
// Cairn alike) an open watch is never cut: it keeps getting events (etcd checks only when
// a watch is created), while a new watch on the same stream is refused (canceled with
// the permission or token error); a keep-alive is checked per request, so the stream
// ends at the next keep-alive (PermissionDenied, or Unauthenticated "invalid auth token"
// once the user's tokens are gone) and clientv3's keep-alive channel closes. Disabling
// auth cuts nothing.
func TestAuthStreamsAfterPermissionChange(t *testing.T) {
	const (
		denied       = "PermissionDenied: etcdserver: permission denied"
		badToken     = "Unauthenticated: etcdserver: invalid auth token"
		cancelDenied = "canceled: rpc error: code = PermissionDenied desc = etcdserver: permission denied"
		cancelToken  = "canceled: rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"
	)
	want := map[string]string{
		"permission revoked": "watch: event w/after; new watch: " + cancelDenied + "; keep-alive: stream ended: " + denied + "; clientv3 watch: event w/after; clientv3 keep-alive: closed",
		"role revoked":       "watch: event w/after; new watch: " + cancelDenied + "; keep-alive: stream ended: " + denied + "; clientv3 watch: event w/after; clientv3 keep-alive: closed",
		"role deleted":       "watch: event w/after; new watch: " + cancelDenied + "; keep-alive: stream ended: " + denied + "; clientv3 watch: event w/after; clientv3 keep-alive: closed",
		"user deleted":       "watch: event w/after; new watch: " + cancelToken + "; keep-alive: stream ended: " + badToken + "; clientv3 watch: event w/after; clientv3 keep-alive: closed",
		"password changed":   "watch: event w/after; new watch: " + cancelToken + "; keep-alive: stream ended: " + badToken + "; clientv3 watch: event w/after; clientv3 keep-alive: closed",
		"auth disabled":      "watch: event w/after; new watch: created; keep-alive: ttl 60; clientv3 watch: event w/after; clientv3 keep-alive: kept alive",
	}
	p := framework.StartPair(t)
	for i, m := range p.Members() {
		t.Run(pairSide[i], func(t *testing.T) {
			authStreamsAfterChanges(t, m, want)
		})
	}
}

func authStreamsAfterChanges(t *testing.T, m *framework.Member, want map[string]string) {
	cli := m.Client()
	must := mustOK(t)
	must(cli.UserAdd(ctx(t), "root", "rootpw"))
	must(cli.UserGrantRole(ctx(t), "root", "root"))
	for j := range authStreamChanges {
		u := fmt.Sprintf("u%d", j)
		must(cli.RoleAdd(ctx(t), u))
		must(cli.RoleGrantPermission(ctx(t), u, "w/", "w0", clientv3.PermissionType(authpb.READWRITE)))
		must(cli.UserAdd(ctx(t), u, u+"pw"))
		must(cli.UserGrantRole(ctx(t), u, u))
	}
	must(cli.AuthEnable(ctx(t)))
	newCli := func(user string) *clientv3.Client {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, Username: user, Password: user + "pw",
			DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatalf("%s: client for %s: %v", m.Name, user, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	root := newCli("root")
	for j, ch := range authStreamChanges {
		began := time.Now()
		u := fmt.Sprintf("u%d", j)
		// Raw streams carrying the user's token.
		uc := newUserConn(t, m, u)
		sctx, cancel := context.WithCancel(uc.md(t))
		defer cancel()
		ws, err := uc.watch.Watch(sctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := rawCreateWatch(ws); err != nil {
			t.Fatal(err)
		}
		if r, err := ws.Recv(); err != nil || !r.Created || r.Canceled {
			t.Fatalf("create watch as %s: %v %v", u, r, err)
		}
		wch, werr := make(chan *pb.WatchResponse, 16), make(chan error, 1)
		go func() {
			for {
				r, err := ws.Recv()
				if err != nil {
					werr <- err
					return
				}
				wch <- r
			}
		}()
		g, err := uc.lease.LeaseGrant(uc.md(t), &pb.LeaseGrantRequest{TTL: 60})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := uc.kv.Put(uc.md(t), &pb.PutRequest{Key: []byte("w/" + u), Lease: g.ID}); err != nil {
			t.Fatal(err)
		}
		if r := watchOutcome(wch, werr); r != "event w/"+u {
			t.Fatalf("the watch of %s after its own put: %s", u, r)
		}
		ka, err := uc.lease.LeaseKeepAlive(sctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := ka.Send(&pb.LeaseKeepAliveRequest{ID: g.ID}); err != nil {
			t.Fatal(err)
		}
		if r, err := ka.Recv(); err != nil || r.TTL != 60 {
			t.Fatalf("keep-alive as %s: %v %v", u, r, err)
		}
		// clientv3 streams of the same user: a watch and a keep-alive every second.
		ucli := newCli(u)
		cw := ucli.Watch(clientv3.WithRequireLeader(sctx), "w/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
		if r := <-cw; !r.Created {
			t.Fatalf("clientv3 watch as %s: %+v %v", u, r, r.Err())
		}
		cg, err := ucli.Grant(ctx(t), 3)
		if err != nil {
			t.Fatal(err)
		}
		must(ucli.Put(ctx(t), "w/c"+u, "v", clientv3.WithLease(cg.ID)))
		if r := clientWatchOutcome(cw); r != "event w/c"+u {
			t.Fatalf("the clientv3 watch of %s after its own put: %s", u, r)
		}
		if r := watchOutcome(wch, werr); r != "event w/c"+u {
			t.Fatalf("the watch of %s after its clientv3 put: %s", u, r)
		}
		kc, err := ucli.KeepAlive(sctx, cg.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r := clientKeepAliveOutcome(kc, 1); r != "kept alive" {
			t.Fatalf("clientv3 keep-alive as %s: %s", u, r)
		}

		if err := ch.change(ctx(t), root, u); err != nil {
			t.Fatalf("%s: %v", ch.name, err)
		}
		must(root.Put(ctx(t), "w/after", "v"))
		var got []string
		got = append(got, "watch: "+watchOutcome(wch, werr))
		if err := rawCreateWatch(ws); err != nil {
			t.Fatal(err)
		}
		got = append(got, "new watch: "+watchOutcome(wch, werr))
		kaOut := ""
		if err := ka.Send(&pb.LeaseKeepAliveRequest{ID: g.ID}); err != nil {
			kaOut = "send failed; "
		}
		if r, err := ka.Recv(); err != nil {
			kaOut += "stream ended: " + authOutcome(err)
		} else {
			kaOut += fmt.Sprintf("ttl %d", r.TTL)
		}
		got = append(got, "keep-alive: "+kaOut)
		got = append(got, "clientv3 watch: "+clientWatchOutcome(cw))
		got = append(got, "clientv3 keep-alive: "+clientKeepAliveOutcome(kc, 2))
		// The client's re-authentications with a deleted user or an old password stop here
		// (Cairn limits failed authentications per client address).
		ucli.Close()
		cancel()
		out := strings.Join(got, "; ")
		t.Logf("%s (%v): %s", ch.name, time.Since(began).Round(time.Millisecond), out)
		if out != want[ch.name] {
			t.Errorf("after %s:\n got  %s\n want %s", ch.name, out, want[ch.name])
		}
	}
}
