package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

func rawLease(m *framework.Member) pb.LeaseClient {
	return pb.NewLeaseClient(m.Client().ActiveConnection())
}

func mustGrant(t testing.TB, cli *clientv3.Client, ttl int64) clientv3.LeaseID {
	t.Helper()
	g, err := cli.Grant(ctx(t), ttl)
	if err != nil {
		t.Fatalf("grant %d: %v", ttl, err)
	}
	return g.ID
}

// waitKeys polls until the keys under prefix are exactly want (sorted), or fails after
// bound.
func waitKeys(t testing.TB, cli *clientv3.Client, prefix string, bound time.Duration, want ...string) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		g, err := cli.Get(ctx(t), prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err == nil && eqStrings(keysOf(g.Kvs), want) {
			return
		}
		if time.Now().After(deadline) {
			var got []string
			if g != nil {
				got = keysOf(g.Kvs)
			}
			t.Fatalf("keys under %q after %v = %q (err %v), want %q", prefix, bound, got, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func sortedBytes(bs [][]byte) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b)
	}
	sort.Strings(out)
	return out
}

// TestLeaseGrantErrors: client-chosen ids, duplicates, TTL bounds, revoking a missing
// lease; through clientv3 and on the wire.
func TestLeaseGrantErrors(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli, lc := m.Client(), rawLease(m)

	g, err := lc.LeaseGrant(ctx(t), &pb.LeaseGrantRequest{ID: 0x1234, TTL: 60})
	if err != nil || g.ID != 0x1234 || g.TTL != 60 || g.Error != "" || g.Header.Revision == 0 || g.Header.MemberId == 0 {
		t.Fatalf("grant with client id = %#v, %v", g, err)
	}
	_, err = lc.LeaseGrant(ctx(t), &pb.LeaseGrantRequest{ID: 0x1234, TTL: 30})
	framework.RequireGRPCError(t, err, codes.FailedPrecondition, "etcdserver: lease already exists")
	if !errors.Is(rpctypes.Error(err), rpctypes.ErrLeaseExist) {
		t.Fatalf("clientv3 maps %v to %v, want ErrLeaseExist", err, rpctypes.Error(err))
	}
	if ttl, err := cli.TimeToLive(ctx(t), 0x1234); err != nil || ttl.GrantedTTL != 60 {
		t.Fatalf("duplicate grant changed the lease: %v, %v", ttl, err)
	}

	// TTL bounds: above etcd's MaxLeaseTTL is an error, the max itself is fine.
	_, cliErr := cli.Grant(ctx(t), 9_000_000_001)
	_, rawErr := lc.LeaseGrant(ctx(t), &pb.LeaseGrantRequest{TTL: 9_000_000_001})
	wantErr{rpctypes.ErrLeaseTTLTooLarge, codes.OutOfRange, "etcdserver: too large lease TTL"}.check(t, cliErr, rawErr)
	if g, err := cli.Grant(ctx(t), 9_000_000_000); err != nil || g.TTL != 9_000_000_000 {
		t.Fatalf("grant max TTL = %#v, %v", g, err)
	}

	// Below the minimum (1.5 election timeouts, rounded up to whole seconds: 2s with
	// the default 1000ms) the TTL is raised, for every small or negative value.
	for _, ttl := range []int64{1, 0, -5} {
		g, err := cli.Grant(ctx(t), ttl)
		if err != nil || g.TTL != 2 {
			t.Fatalf("grant TTL %d = %#v, %v; want TTL 2", ttl, g, err)
		}
		if tl, err := cli.TimeToLive(ctx(t), g.ID); err != nil || tl.GrantedTTL != 2 {
			t.Fatalf("time-to-live of TTL %d grant = %#v, %v", ttl, tl, err)
		}
	}

	// Revoking a missing lease.
	_, cliErr = cli.Revoke(ctx(t), 0x999)
	_, rawErr = lc.LeaseRevoke(ctx(t), &pb.LeaseRevokeRequest{ID: 0x999})
	wantErr{rpctypes.ErrLeaseNotFound, codes.NotFound, "etcdserver: requested lease not found"}.check(t, cliErr, rawErr)
}

// TestLeaseTimeToLiveKeysAndList: granted and remaining TTL (truncated to whole
// seconds, as etcd), attached keys following put/delete, TTL -1 for a missing lease,
// the lease list, and keep-alive answers for present and missing leases.
func TestLeaseTimeToLiveKeysAndList(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli, lc := m.Client(), rawLease(m)

	begin := time.Now()
	id := mustGrant(t, cli, 10)
	for _, k := range []string{"a", "b", "c"} {
		mustPut(t, cli, k, "v", clientv3.WithLease(id))
	}
	tl, err := cli.TimeToLive(ctx(t), id, clientv3.WithAttachedKeys())
	if err != nil || tl.ID != id || tl.GrantedTTL != 10 || tl.TTL < 8 || tl.TTL > 10 {
		t.Fatalf("time-to-live = %#v, %v", tl, err)
	}
	if got := sortedBytes(tl.Keys); !eqStrings(got, []string{"a", "b", "c"}) {
		t.Fatalf("attached keys = %q", got)
	}
	// Remaining time is truncated: 1.5s after the grant at most 8.5s are left → 8.
	time.Sleep(1500 * time.Millisecond)
	tl, err = cli.TimeToLive(ctx(t), id)
	elapsed := time.Since(begin)
	if low := int64((10*time.Second - elapsed) / time.Second); err != nil || tl.TTL > 8 || tl.TTL < low {
		t.Fatalf("time-to-live after 1.5s = %#v, %v; want %d..8", tl, err, low)
	}
	if len(tl.Keys) != 0 {
		t.Fatalf("keys returned without being asked: %q", tl.Keys)
	}

	// Keys move with puts and deletes: a key is attached to one lease at most.
	id2 := mustGrant(t, cli, 60)
	mustPut(t, cli, "a", "v2", clientv3.WithLease(id2))
	mustPut(t, cli, "b", "v2") // no lease: detached
	if _, err := cli.Delete(ctx(t), "c"); err != nil {
		t.Fatal(err)
	}
	mustPut(t, cli, "d", "v", clientv3.WithLease(id))
	for _, c := range []struct {
		id   clientv3.LeaseID
		keys []string
	}{{id, []string{"d"}}, {id2, []string{"a"}}} {
		tl, err := cli.TimeToLive(ctx(t), c.id, clientv3.WithAttachedKeys())
		if err != nil || !eqStrings(sortedBytes(tl.Keys), c.keys) {
			t.Fatalf("keys of %x = %#v, %v; want %q", c.id, tl, err, c.keys)
		}
	}

	// A missing lease: TTL -1, no error, a full header.
	tl, err = cli.TimeToLive(ctx(t), 0x4242, clientv3.WithAttachedKeys())
	if err != nil || tl.TTL != -1 || tl.ID != 0x4242 || tl.GrantedTTL != 0 || len(tl.Keys) != 0 {
		t.Fatalf("time-to-live of missing lease = %#v, %v", tl, err)
	}
	rtl, err := lc.LeaseTimeToLive(ctx(t), &pb.LeaseTimeToLiveRequest{ID: 0x4242, Keys: true})
	if err != nil || rtl.TTL != -1 || rtl.ID != 0x4242 || rtl.Header == nil || rtl.Header.Revision == 0 ||
		rtl.Header.MemberId == 0 || rtl.Header.ClusterId == 0 || rtl.Header.RaftTerm == 0 {
		t.Fatalf("raw time-to-live of missing lease = %v, %v", rtl, err)
	}

	// The list holds exactly the live leases.
	ls, err := cli.Leases(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range ls.Leases {
		got = append(got, fmt.Sprintf("%x", l.ID))
	}
	sort.Strings(got)
	want := []string{fmt.Sprintf("%x", id), fmt.Sprintf("%x", id2)}
	sort.Strings(want)
	if !eqStrings(got, want) {
		t.Fatalf("leases = %v, want %v", got, want)
	}

	// Keep-alive: the granted TTL for a live lease; TTL 0 on the wire for a missing one,
	// which clientv3 turns into ErrLeaseNotFound.
	ka, err := cli.KeepAliveOnce(ctx(t), id)
	if err != nil || ka.ID != id || ka.TTL != 10 {
		t.Fatalf("keep-alive = %#v, %v", ka, err)
	}
	if tl, err := cli.TimeToLive(ctx(t), id); err != nil || tl.TTL < 9 {
		t.Fatalf("time-to-live after keep-alive = %#v, %v", tl, err)
	}
	_, err = cli.KeepAliveOnce(ctx(t), 0x4242)
	framework.RequireClientError(t, err, rpctypes.ErrLeaseNotFound)
	stream, err := lc.LeaseKeepAlive(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, lid := range []int64{0x4242, int64(id)} {
		if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: lid}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		wantTTL := int64(10)
		if lid == 0x4242 {
			wantTTL = 0
		}
		if err != nil || resp.ID != lid || resp.TTL != wantTTL || resp.Header == nil || resp.Header.Revision == 0 {
			t.Fatalf("raw keep-alive %x = %v, %v; want TTL %d", lid, resp, err, wantTTL)
		}
	}
	_ = stream.CloseSend()
}

// TestLeaseExpiryRemovesKeys: a lease nobody keeps alive expires and its keys go, in
// one revision, within a bound.
func TestLeaseExpiryRemovesKeys(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	id := mustGrant(t, cli, 2)
	mustPut(t, cli, "exp/1", "v", clientv3.WithLease(id))
	rev := mustPut(t, cli, "exp/2", "v", clientv3.WithLease(id)).Header.Revision
	granted := time.Now()
	waitKeys(t, cli, "exp/", 10*time.Second)
	if el := time.Since(granted); el < time.Second {
		t.Fatalf("keys of a 2s lease gone after %v", el)
	}
	if got := currentRev(t, cli); got != rev+1 {
		t.Fatalf("revision after expiry = %d, want %d (both keys in one revision)", got, rev+1)
	}
	if tl, err := cli.TimeToLive(ctx(t), id); err != nil || tl.TTL != -1 {
		t.Fatalf("time-to-live of expired lease = %#v, %v", tl, err)
	}
	_, err := cli.KeepAliveOnce(ctx(t), id)
	framework.RequireClientError(t, err, rpctypes.ErrLeaseNotFound)
}

// TestLeaseKeepAliveKeepsKeys: keep-alives hold a 2s lease for several TTLs; once they
// stop, it expires.
func TestLeaseKeepAliveKeepsKeys(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	id := mustGrant(t, cli, 2)
	mustPut(t, cli, "ka/1", "v", clientv3.WithLease(id))
	kctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := cli.KeepAlive(kctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acks := 0
	go func() {
		for r := range ch {
			if r.TTL == 2 {
				mu.Lock()
				acks++
				mu.Unlock()
			}
		}
	}()
	time.Sleep(5 * time.Second)
	waitKeys(t, cli, "ka/", 0, "ka/1")
	if tl, err := cli.TimeToLive(ctx(t), id); err != nil || tl.TTL < 0 {
		t.Fatalf("time-to-live while kept alive = %#v, %v", tl, err)
	}
	mu.Lock()
	if acks < 2 {
		t.Errorf("only %d keep-alive responses in 5s", acks)
	}
	mu.Unlock()
	cancel()
	waitKeys(t, cli, "ka/", 10*time.Second)
}

// TestLeaseRevokeOneRevision: revoking deletes every attached key in one revision.
func TestLeaseRevokeOneRevision(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	id := mustGrant(t, cli, 60)
	var rev int64
	for _, k := range []string{"rv/1", "rv/2", "rv/3"} {
		rev = mustPut(t, cli, k, "v", clientv3.WithLease(id)).Header.Revision
	}
	mustPut(t, cli, "rv/other", "v")
	rev++
	r, err := cli.Revoke(ctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if r.Header.Revision != rev+1 {
		t.Fatalf("revoke header revision = %d, want %d", r.Header.Revision, rev+1)
	}
	g := mustGet(t, cli, "rv/", clientv3.WithPrefix())
	requireKeys(t, "after revoke", g.Kvs, "rv/other")
	if g.Header.Revision != rev+1 {
		t.Fatalf("revision after revoke = %d, want %d", g.Header.Revision, rev+1)
	}
	before := mustGet(t, cli, "rv/", clientv3.WithPrefix(), clientv3.WithRev(rev))
	requireKeys(t, "before revoke", before.Kvs, "rv/1", "rv/2", "rv/3", "rv/other")
	if tl, err := cli.TimeToLive(ctx(t), id); err != nil || tl.TTL != -1 {
		t.Fatalf("time-to-live of revoked lease = %#v, %v", tl, err)
	}
}

// TestLeaseKill9: two 5s leases, one kept alive by a client, the other not. The server
// is killed with SIGKILL and stays down longer than the TTL. After the restart the
// client resumes its keep-alives; the other lease expires within a bound and takes its
// keys, the kept one keeps its keys.
func TestLeaseKill9(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	kept, dropped := mustGrant(t, cli, 5), mustGrant(t, cli, 5)
	mustPut(t, cli, "kill/kept/1", "v", clientv3.WithLease(kept))
	mustPut(t, cli, "kill/kept/2", "v", clientv3.WithLease(kept))
	mustPut(t, cli, "kill/dropped/1", "v", clientv3.WithLease(dropped))
	mustPut(t, cli, "kill/dropped/2", "v", clientv3.WithLease(dropped))

	// The keeper renews every 500ms and simply retries while the server is down.
	kcli := m.NewClient()
	stop := make(chan struct{})
	done := make(chan struct{})
	var mu sync.Mutex
	var lastOK time.Time
	go func() {
		defer close(done)
		for {
			c, cancel := context.WithTimeout(context.Background(), time.Second)
			r, err := kcli.KeepAliveOnce(c, kept)
			cancel()
			if err == nil && r.TTL > 0 {
				mu.Lock()
				lastOK = time.Now()
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stop); <-done }()

	time.Sleep(time.Second)
	m.Kill()
	time.Sleep(7 * time.Second) // longer than the TTL
	restartAfterCrash(t, m)
	restarted := time.Now()
	cli = m.Client()

	// The dropped lease gets at most a TTL (plus an election timeout) from the new
	// leader: its keys go within 5s + slack.
	waitKeys(t, cli, "kill/dropped/", 15*time.Second)
	t.Logf("dropped lease's keys gone %v after the restart", time.Since(restarted).Round(time.Millisecond))
	if tl, err := cli.TimeToLive(ctx(t), dropped); err != nil || tl.TTL != -1 {
		t.Fatalf("time-to-live of dropped lease = %#v, %v", tl, err)
	}
	// The kept lease survives the restart and the dropped lease's expiry, and another
	// TTL after that.
	time.Sleep(6 * time.Second)
	waitKeys(t, cli, "kill/kept/", 0, "kill/kept/1", "kill/kept/2")
	tl, err := cli.TimeToLive(ctx(t), kept)
	if err != nil || tl.TTL < 2 || tl.GrantedTTL != 5 {
		t.Fatalf("time-to-live of kept lease = %#v, %v", tl, err)
	}
	mu.Lock()
	ok := lastOK.After(restarted)
	mu.Unlock()
	if !ok {
		t.Fatal("no keep-alive succeeded after the restart")
	}
}

// ----- etcdctl -----

var (
	leaseGrantedRe = regexp.MustCompile(`lease ([0-9a-f]+) granted with TTL\((\d+)s\)`)
	remainingRe    = regexp.MustCompile(`remaining\((-?\d+)s\)`)
	attachedRe     = regexp.MustCompile(`attached keys\(\[([^\]]*)\]\)`)
	jsonTTLRe      = regexp.MustCompile(`"ttl":-?\d+`)
)

// normLeaseCtl normalizes etcdctl lease output for comparison across servers: the
// lease id (hex and decimal) becomes <lease>, the remaining TTL of timetolive <ttl>
// (checked separately), attached key lists are sorted (etcd lists them in map order).
func runLeaseCtl(t *testing.T, m *framework.Member, hexID string, remaining bool, args ...string) ctlOut {
	t.Helper()
	stdout, stderr, err := m.Etcdctl(args...)
	var errs []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "Error:") {
			errs = append(errs, l)
		}
	}
	return ctlOut{Stdout: normLeaseCtl(m, stdout, hexID, remaining), Errors: strings.Join(errs, "\n"), OK: err == nil}
}

func normLeaseCtl(m *framework.Member, s, hexID string, remaining bool) string {
	if hexID != "" {
		dec, _ := strconv.ParseUint(hexID, 16, 64)
		s = strings.ReplaceAll(s, hexID, "<lease>")
		s = strings.ReplaceAll(s, strconv.FormatUint(dec, 10), `"<lease>"`)
	}
	s = attachedRe.ReplaceAllStringFunc(s, func(x string) string {
		ks := strings.Fields(attachedRe.FindStringSubmatch(x)[1])
		sort.Strings(ks)
		return "attached keys([" + strings.Join(ks, " ") + "])"
	})
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		var v map[string]any
		d := json.NewDecoder(strings.NewReader(l))
		d.UseNumber()
		if strings.HasPrefix(l, "{") && d.Decode(&v) == nil {
			if ks, ok := v["keys"].([]any); ok {
				sort.Slice(ks, func(i, j int) bool { return fmt.Sprint(ks[i]) < fmt.Sprint(ks[j]) })
			}
			b, _ := json.Marshal(v)
			l = string(b)
		}
		lines = append(lines, l)
	}
	s = strings.Join(lines, "\n")
	if remaining {
		s = remainingRe.ReplaceAllString(s, "remaining(<ttl>s)")
		s = jsonTTLRe.ReplaceAllString(s, `"ttl":"<ttl>"`)
	}
	return normCtl(m, s)
}

// TestLeaseEtcdctl runs etcdctl's lease commands against the server under test and the
// reference etcd and requires the same normalized output.
func TestLeaseEtcdctl(t *testing.T) {
	t.Parallel()
	p := framework.StartPair(t)
	ids := map[*framework.Member]string{}
	for _, m := range p.Members() {
		stdout, stderr, err := m.Etcdctl("lease", "grant", "60")
		sm := leaseGrantedRe.FindStringSubmatch(stdout)
		if err != nil || sm == nil || sm[2] != "60" || len(sm[1]) != 16 {
			t.Fatalf("%s: etcdctl lease grant 60 = %q %q %v", binName(m), stdout, stderr, err)
		}
		ids[m] = sm[1]
	}
	cmds := []struct {
		args      []string
		remaining bool // output has the (timing-dependent) remaining TTL
	}{
		{[]string{"put", "lk/1", "v", "--lease={id}"}, false},
		{[]string{"put", "lk/2", "v", "--lease={id}"}, false},
		{[]string{"put", "lk/3", "v", "--lease={id}"}, false},
		{[]string{"lease", "timetolive", "{id}"}, true},
		{[]string{"lease", "timetolive", "{id}", "--keys"}, true},
		{[]string{"lease", "timetolive", "{id}", "--keys", "-w", "json"}, true},
		{[]string{"lease", "list"}, false},
		{[]string{"lease", "list", "-w", "json"}, false},
		{[]string{"lease", "keep-alive", "--once", "{id}"}, false},
		{[]string{"lease", "keep-alive", "--once", "{id}", "-w", "json"}, false},
		{[]string{"lease", "timetolive", "abcdef"}, false},
		{[]string{"lease", "timetolive", "abcdef", "--keys", "-w", "json"}, false},
		{[]string{"lease", "keep-alive", "--once", "abcdef"}, false},
		{[]string{"lease", "revoke", "abcdef"}, false},
		{[]string{"lease", "grant", "9000000001"}, false},
		{[]string{"lease", "revoke", "{id}"}, false},
		{[]string{"get", "lk/", "--prefix"}, false},
		{[]string{"lease", "revoke", "{id}"}, false},
		{[]string{"lease", "timetolive", "{id}"}, false},
		{[]string{"lease", "list"}, false},
	}
	for i, c := range cmds {
		var outs []ctlOut
		var rawOut string
		for _, m := range p.Members() {
			args := make([]string, len(c.args))
			for j, a := range c.args {
				args[j] = strings.ReplaceAll(a, "{id}", ids[m])
			}
			out := runLeaseCtl(t, m, ids[m], c.remaining, args...)
			if m == p.Etcd {
				rawOut = out.Stdout
			}
			if c.remaining {
				// Just granted with 60s: 55..60 remain (truncated) on both.
				stdout, _, _ := m.Etcdctl(args...)
				for _, sm := range append(remainingRe.FindAllStringSubmatch(stdout, -1), regexp.MustCompile(`"ttl":(-?\d+)`).FindAllStringSubmatch(stdout, -1)...) {
					if n, _ := strconv.Atoi(sm[1]); n < 55 || n > 60 {
						t.Errorf("%s: `etcdctl %s` remaining TTL %d, want 55..60:\n%s", binName(m), strings.Join(args, " "), n, stdout)
					}
				}
			}
			outs = append(outs, out)
		}
		got, want := outs[0], outs[1]
		t.Logf("etcdctl %v -> ok=%v\n%s%s", c.args, want.OK, rawOut, want.Errors)
		if got != want {
			t.Errorf("command %d `etcdctl %s` differs:\n--- %s:\nok=%v\n%s\n%s\n--- etcd:\nok=%v\n%s\n%s", i, strings.Join(c.args, " "),
				binName(p.Cairn), got.OK, got.Stdout, got.Errors, want.OK, want.Stdout, want.Errors)
		}
	}
	// The minimum TTL is raised the same way (2s with the default election timeout).
	for _, m := range p.Members() {
		stdout, _, err := m.Etcdctl("lease", "grant", "1")
		if sm := leaseGrantedRe.FindStringSubmatch(stdout); err != nil || sm == nil || sm[2] != "2" {
			t.Errorf("%s: etcdctl lease grant 1 = %q, %v; want TTL(2s)", binName(m), stdout, err)
		}
	}
}
