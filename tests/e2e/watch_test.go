package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// watchWait bounds every wait for a watch response.
const watchWait = 10 * time.Second

// watchCtx is the context of a watch: it outlives the waits below, which are each
// bounded on their own, and ends with the test.
func watchCtx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// watchOn starts a watch with WithCreatedNotify and waits for its created response, so
// that writes made after it returns are seen by it.
func watchOn(t testing.TB, c context.Context, cli *clientv3.Client, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	t.Helper()
	wch := cli.Watch(c, key, append(opts, clientv3.WithCreatedNotify())...)
	wr := nextResponse(t, wch)
	if !wr.Created || wr.Err() != nil {
		t.Fatalf("watch %q: first response %+v (err %v), want created", key, wr, wr.Err())
	}
	return wch
}

// nextResponse returns the next response of wch, failing after watchWait.
func nextResponse(t testing.TB, wch clientv3.WatchChan) clientv3.WatchResponse {
	t.Helper()
	select {
	case wr, ok := <-wch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return wr
	case <-time.After(watchWait):
		t.Fatalf("no watch response within %v", watchWait)
	}
	return clientv3.WatchResponse{}
}

// evString renders an event as "PUT k=v @mod" / "DELETE k @mod".
func evString(ev *clientv3.Event) string {
	if ev.Type == mvccpb.DELETE {
		return fmt.Sprintf("DELETE %s @%d", ev.Kv.Key, ev.Kv.ModRevision)
	}
	return fmt.Sprintf("PUT %s=%s @%d", ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision)
}

// collect reads responses until it has at least n events (failing on an error
// response, a closed channel or after watchWait without a response). A response may
// carry several events (catch-up batches them), so it can return more than n; callers
// compare the whole sequence.
func collect(t testing.TB, wch clientv3.WatchChan, n int) []string {
	t.Helper()
	var out []string
	for len(out) < n {
		wr := nextResponse(t, wch)
		if err := wr.Err(); err != nil {
			t.Fatalf("watch error after %d events %q: %v", len(out), out, err)
		}
		for _, ev := range wr.Events {
			out = append(out, evString(ev))
		}
	}
	return out
}

// requireQuiet asserts no response arrives on wch within d.
func requireQuiet(t testing.TB, wch clientv3.WatchChan, d time.Duration) {
	t.Helper()
	select {
	case wr, ok := <-wch:
		if ok {
			t.Fatalf("unexpected watch response %+v", wr)
		}
	case <-time.After(d):
	}
}

func requireEvents(t testing.TB, what string, got []string, want ...string) {
	t.Helper()
	if !eqStrings(got, want) {
		t.Fatalf("%s:\n got  %q\n want %q", what, got, want)
	}
}

func TestWatchKeyPrefixFromKey(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	c := watchCtx(t)
	key := watchOn(t, c, cli, "wk")
	prefix := watchOn(t, c, cli, "wp", clientv3.WithPrefix())
	fromKey := watchOn(t, c, cli, "wp", clientv3.WithFromKey())
	rng := watchOn(t, c, cli, "wa", clientv3.WithRange("wl"))
	base := currentRev(t, cli)
	for _, k := range []string{"a", "wk", "wk2", "wp", "wp/1", "wq", "z"} {
		mustPut(t, cli, k, "v-"+k)
	}
	mustDelete(t, cli, "wk")
	r := func(i int64) int64 { return base + i }
	requireEvents(t, "key", collect(t, key, 2), fmt.Sprintf("PUT wk=v-wk @%d", r(2)), fmt.Sprintf("DELETE wk @%d", r(8)))
	requireEvents(t, "prefix", collect(t, prefix, 2), fmt.Sprintf("PUT wp=v-wp @%d", r(4)), fmt.Sprintf("PUT wp/1=v-wp/1 @%d", r(5)))
	requireEvents(t, "from key", collect(t, fromKey, 4),
		fmt.Sprintf("PUT wp=v-wp @%d", r(4)), fmt.Sprintf("PUT wp/1=v-wp/1 @%d", r(5)),
		fmt.Sprintf("PUT wq=v-wq @%d", r(6)), fmt.Sprintf("PUT z=v-z @%d", r(7)))
	requireEvents(t, "range", collect(t, rng, 3), fmt.Sprintf("PUT wk=v-wk @%d", r(2)),
		fmt.Sprintf("PUT wk2=v-wk2 @%d", r(3)), fmt.Sprintf("DELETE wk @%d", r(8)))
	for _, wch := range []clientv3.WatchChan{key, prefix, fromKey, rng} {
		requireQuiet(t, wch, 100*time.Millisecond)
	}
}

func TestWatchHistoryReplay(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	first := mustPut(t, cli, "h", "1").Header.Revision
	mustPut(t, cli, "h", "2")
	mustPut(t, cli, "other", "x")
	mustDelete(t, cli, "h")
	c := watchCtx(t)
	wch := cli.Watch(c, "h", clientv3.WithRev(first))
	got := collect(t, wch, 3)
	requireEvents(t, "replay", got, fmt.Sprintf("PUT h=1 @%d", first), fmt.Sprintf("PUT h=2 @%d", first+1), fmt.Sprintf("DELETE h @%d", first+3))
	// then live
	mustPut(t, cli, "h", "3")
	requireEvents(t, "live after replay", collect(t, wch, 1), fmt.Sprintf("PUT h=3 @%d", first+4))

	// The replayed key-values are complete: versions and create revisions.
	wch2 := cli.Watch(c, "h", clientv3.WithRev(first+1))
	wr := nextResponse(t, wch2)
	if len(wr.Events) == 0 {
		t.Fatalf("replay from %d: %+v", first+1, wr)
	}
	requireKV(t, "replayed event", wr.Events[0].Kv, "h", "2", first, first+1, 2, 0)
}

func TestWatchTxnIsOneResponse(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	mustPut(t, cli, "t/d", "old")
	c := watchCtx(t)
	wch := watchOn(t, c, cli, "t/", clientv3.WithPrefix())
	resp, err := cli.Txn(ctx(t)).Then(
		clientv3.OpPut("t/c", "1"),
		clientv3.OpPut("t/a", "2"),
		clientv3.OpDelete("t/d"),
		clientv3.OpPut("t/b", "3"),
	).Commit()
	if err != nil {
		t.Fatal(err)
	}
	rev := resp.Header.Revision
	wr := nextResponse(t, wch)
	var got []string
	for _, ev := range wr.Events {
		got = append(got, evString(ev))
	}
	requireEvents(t, "txn events in one response, in txn order", got,
		fmt.Sprintf("PUT t/c=1 @%d", rev), fmt.Sprintf("PUT t/a=2 @%d", rev),
		fmt.Sprintf("DELETE t/d @%d", rev), fmt.Sprintf("PUT t/b=3 @%d", rev))
	if wr.Header.Revision != rev {
		t.Fatalf("response header revision %d, want %d", wr.Header.Revision, rev)
	}
}

func TestWatchPrevKV(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	first := mustPut(t, cli, "p", "1").Header.Revision
	c := watchCtx(t)
	withPrev := watchOn(t, c, cli, "p", clientv3.WithPrevKV())
	plain := watchOn(t, c, cli, "p")
	mustPut(t, cli, "p", "2")
	mustDelete(t, cli, "p")
	mustPut(t, cli, "p", "3")

	var evs []*clientv3.Event
	for len(evs) < 3 {
		evs = append(evs, nextResponse(t, withPrev).Events...)
	}
	if len(evs) != 3 {
		t.Fatalf("%d events", len(evs))
	}
	requireKV(t, "prev of put", evs[0].PrevKv, "p", "1", first, first, 1, 0)
	requireKV(t, "prev of delete", evs[1].PrevKv, "p", "2", first, first+1, 2, 0)
	if evs[2].PrevKv != nil {
		t.Fatalf("put of a deleted key has prev_kv %v", evs[2].PrevKv)
	}
	if !evs[2].IsCreate() || evs[1].Kv.Version != 0 || string(evs[1].Kv.Value) != "" {
		t.Fatalf("events %v", evs)
	}
	for i := 0; i < 3; {
		for _, ev := range nextResponse(t, plain).Events {
			if ev.PrevKv != nil {
				t.Fatalf("watch without prev_kv got %v", ev.PrevKv)
			}
			i++
		}
	}
}

func TestWatchFilters(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	c := watchCtx(t)
	noPut := watchOn(t, c, cli, "f", clientv3.WithPrefix(), clientv3.WithFilterPut())
	noDel := watchOn(t, c, cli, "f", clientv3.WithPrefix(), clientv3.WithFilterDelete())
	base := currentRev(t, cli)
	mustPut(t, cli, "f1", "a")
	mustPut(t, cli, "f2", "b")
	mustDelete(t, cli, "f1")
	mustPut(t, cli, "f1", "c")
	mustDelete(t, cli, "f", clientv3.WithPrefix()) // one revision, two deletes
	requireEvents(t, "WithFilterPut", collect(t, noPut, 3), fmt.Sprintf("DELETE f1 @%d", base+3),
		fmt.Sprintf("DELETE f1 @%d", base+5), fmt.Sprintf("DELETE f2 @%d", base+5))
	requireEvents(t, "WithFilterDelete", collect(t, noDel, 3), fmt.Sprintf("PUT f1=a @%d", base+1),
		fmt.Sprintf("PUT f2=b @%d", base+2), fmt.Sprintf("PUT f1=c @%d", base+4))
	requireQuiet(t, noPut, 200*time.Millisecond)
	requireQuiet(t, noDel, 200*time.Millisecond)
}

func TestWatchCompactedRevision(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	first := mustPut(t, cli, "c", "1").Header.Revision
	for i := 2; i <= 5; i++ {
		mustPut(t, cli, "c", fmt.Sprint(i))
	}
	compactRev := first + 3
	if _, err := cli.Compact(ctx(t), compactRev); err != nil {
		t.Fatal(err)
	}
	c := watchCtx(t)
	wch := cli.Watch(c, "c", clientv3.WithRev(first))
	wr := nextResponse(t, wch)
	if !wr.Canceled || wr.CompactRevision != compactRev || len(wr.Events) != 0 {
		t.Fatalf("watch from compacted %d: %+v, want canceled with compact revision %d", first, wr, compactRev)
	}
	if !errors.Is(wr.Err(), rpctypes.ErrCompacted) {
		t.Fatalf("Err() = %v, want ErrCompacted", wr.Err())
	}
	select {
	case wr, ok := <-wch:
		if ok {
			t.Fatalf("response after compaction cancel: %+v", wr)
		}
	case <-time.After(watchWait):
		t.Fatal("watch channel not closed after compaction cancel")
	}
	// From the compacted revision itself: history is there.
	wch = cli.Watch(c, "c", clientv3.WithRev(compactRev))
	requireEvents(t, "from the compacted revision", collect(t, wch, 2),
		fmt.Sprintf("PUT c=4 @%d", compactRev), fmt.Sprintf("PUT c=5 @%d", compactRev+1))
}

// Several watches of one client share one gRPC stream; each gets its own events.
func TestWatchMultiplexed(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	c := watchCtx(t)
	const n = 5
	wchs := make([]clientv3.WatchChan, n)
	for i := range wchs {
		wchs[i] = watchOn(t, c, cli, fmt.Sprintf("m%d", i))
	}
	revs := make([][]int64, n)
	for round := 0; round < 3; round++ {
		for i := n - 1; i >= 0; i-- {
			revs[i] = append(revs[i], mustPut(t, cli, fmt.Sprintf("m%d", i), fmt.Sprintf("r%d", round)).Header.Revision)
		}
	}
	for i, wch := range wchs {
		var want []string
		for round, rev := range revs[i] {
			want = append(want, fmt.Sprintf("PUT m%d=r%d @%d", i, round, rev))
		}
		requireEvents(t, fmt.Sprintf("watch %d", i), collect(t, wch, 3), want...)
		requireQuiet(t, wch, 50*time.Millisecond)
	}
}

// Cancelling a watch's context closes its channel; nothing arrives after.
func TestWatchCancel(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	c, cancel := context.WithCancel(watchCtx(t))
	wch := watchOn(t, c, cli, "x")
	keep := watchOn(t, watchCtx(t), cli, "y")
	mustPut(t, cli, "x", "1")
	collect(t, wch, 1)
	cancel()
	deadline := time.After(watchWait)
	for closed := false; !closed; {
		select {
		case wr, ok := <-wch:
			if !ok {
				closed = true
			} else if len(wr.Events) > 0 {
				t.Fatalf("event after cancel: %+v", wr)
			}
		case <-deadline:
			t.Fatal("watch channel not closed after its context was canceled")
		}
	}
	mustPut(t, cli, "x", "2")
	mustPut(t, cli, "y", "1")
	collect(t, keep, 1)
}

// The wire protocol, through a raw stream: create errors, cancel, progress.
func TestWatchRawProtocol(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	ws, err := pb.NewWatchClient(cli.ActiveConnection()).Watch(watchCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	send := func(r *pb.WatchRequest) {
		t.Helper()
		if err := ws.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	create := func(r *pb.WatchCreateRequest) {
		t.Helper()
		send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: r}})
	}
	recvCh := make(chan *pb.WatchResponse, 100)
	go func() {
		defer close(recvCh)
		for {
			r, err := ws.Recv()
			if err != nil {
				return
			}
			recvCh <- r
		}
	}()
	recv := func() *pb.WatchResponse {
		t.Helper()
		select {
		case r, ok := <-recvCh:
			if !ok {
				t.Fatal("stream ended")
			}
			return r
		case <-time.After(watchWait):
			t.Fatal("no response")
		}
		return nil
	}
	rev := currentRev(t, cli)

	create(&pb.WatchCreateRequest{Key: []byte("x"), WatchId: 5})
	r := recv()
	if !r.Created || r.Canceled || r.WatchId != 5 || r.Header.Revision != rev || r.Header.ClusterId == 0 || r.Header.MemberId == 0 || r.Header.RaftTerm == 0 {
		t.Fatalf("create 5: %+v", r)
	}
	for _, c := range []struct {
		req    *pb.WatchCreateRequest
		reason string
	}{
		{&pb.WatchCreateRequest{Key: []byte("y"), WatchId: 5}, "mvcc: duplicate watch ID provided on the WatchStream"},
		{&pb.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("a")}, "mvcc: watcher range is empty"},
		{&pb.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("b")}, "mvcc: watcher range is empty"},
		{&pb.WatchCreateRequest{Key: []byte("b"), StartRevision: -1}, "etcdserver: mvcc: required revision has been compacted"},
	} {
		create(c.req)
		r := recv()
		if !r.Created || !r.Canceled || r.WatchId != -1 || r.CancelReason != c.reason || r.Header.Revision != rev {
			t.Fatalf("create %v: %+v, want created+canceled id -1 reason %q", c.req, r, c.reason)
		}
	}
	// Auto ids start at 0 on each stream and skip used ones.
	create(&pb.WatchCreateRequest{Key: []byte("o")})
	if r := recv(); !r.Created || r.WatchId != 0 {
		t.Fatalf("auto id: %+v", r)
	}
	put := mustPut(t, cli, "x", "1").Header.Revision
	r = recv()
	if r.WatchId != 5 || len(r.Events) != 1 || r.Events[0].Kv.ModRevision != put || r.Header.Revision != put {
		t.Fatalf("event: %+v", r)
	}
	// Cancel: answered; an unknown id is not.
	send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 5}}})
	if r := recv(); !r.Canceled || r.Created || r.WatchId != 5 {
		t.Fatalf("cancel: %+v", r)
	}
	send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 77}}})
	mustPut(t, cli, "x", "2")
	last := mustPut(t, cli, "y", "2").Header.Revision
	// Progress request: one response, id -1, at the current revision; nothing of the
	// canceled watcher before it.
	for attempt := 0; ; attempt++ {
		send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}})
		select {
		case r := <-recvCh:
			if r.WatchId != -1 || len(r.Events) != 0 || r.Header.Revision != last || r.Canceled || r.Created {
				t.Fatalf("progress: %+v (want id -1 at %d)", r, last)
			}
		case <-time.After(2 * time.Second):
			if attempt < 3 { // etcd drops a progress request while a watcher is catching up
				continue
			}
			t.Fatal("no progress response")
		}
		break
	}
	select {
	case r := <-recvCh:
		t.Fatalf("unexpected response %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestWatchProgressNotify(t *testing.T) {
	t.Parallel()
	m := start(t, "--experimental-watch-progress-notify-interval=1s")
	cli := m.Client()
	c := watchCtx(t)
	wch := watchOn(t, c, cli, "pn", clientv3.WithProgressNotify())
	mustPut(t, cli, "other", "x")
	rev := currentRev(t, cli)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case wr := <-wch:
			if wr.IsProgressNotify() {
				if wr.Header.Revision != rev {
					t.Fatalf("progress notify at revision %d, want %d", wr.Header.Revision, rev)
				}
				return
			}
			t.Fatalf("unexpected response %+v", wr)
		case <-deadline:
			t.Fatal("no progress notification within 10s at a 1s interval")
		}
	}
}

func TestWatchRequestProgress(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	c := watchCtx(t)
	wch := watchOn(t, c, cli, "rp")
	mustPut(t, cli, "rp", "1")
	collect(t, wch, 1)
	mustPut(t, cli, "unwatched", "1")
	rev := mustPut(t, cli, "unwatched", "2").Header.Revision
	for attempt := 0; ; attempt++ {
		if err := cli.RequestProgress(c); err != nil {
			t.Fatal(err)
		}
		select {
		case wr := <-wch:
			if !wr.IsProgressNotify() || wr.Header.Revision != rev {
				t.Fatalf("after RequestProgress: %+v (progress %v), want progress at %d", wr, wr.IsProgressNotify(), rev)
			}
			return
		case <-time.After(2 * time.Second):
			if attempt >= 3 {
				t.Fatal("no progress response")
			}
		}
	}
}

// etcdctl watch prints etcd's simple format: type, key, value, one per line.
func TestWatchEtcdctl(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	rev := currentRev(t, cli)
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(c, framework.EtcdctlBin(t), "--endpoints="+m.ClientURL,
		"watch", "k", "--prefix", fmt.Sprintf("--rev=%d", rev+1))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "ETCDCTL_API=3"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	mustPut(t, cli, "k", "v1")
	mustPut(t, cli, "k2", "hello world")
	mustDelete(t, cli, "k")
	want := []string{"PUT", "k", "v1", "PUT", "k2", "hello world", "DELETE", "k", ""}
	var got []string
	for len(got) < len(want) {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("etcdctl watch exited after %q; stderr: %s", got, stderr.String())
			}
			got = append(got, l)
		case <-time.After(watchWait):
			t.Fatalf("etcdctl watch printed %q, want %q; stderr: %s", got, want, stderr.String())
		}
	}
	requireEvents(t, "etcdctl watch output", got, want...)
}

// Revoking a lease deletes its keys in one revision: DELETE events, sorted by key.
func TestWatchLeaseRevoke(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	lease, err := cli.Grant(ctx(t), 60)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, cli, "l/b", "1", clientv3.WithLease(lease.ID))
	mustPut(t, cli, "l/a", "2", clientv3.WithLease(lease.ID))
	mustPut(t, cli, "l/c", "3")
	c := watchCtx(t)
	wch := watchOn(t, c, cli, "l/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	rr, err := cli.Revoke(ctx(t), lease.ID)
	if err != nil {
		t.Fatal(err)
	}
	rev := rr.Header.Revision
	wr := nextResponse(t, wch)
	var got []string
	for _, ev := range wr.Events {
		got = append(got, evString(ev))
		if ev.PrevKv == nil || ev.PrevKv.Lease != int64(lease.ID) {
			t.Fatalf("deleted by revoke: prev_kv %v, want the key with lease %x", ev.PrevKv, lease.ID)
		}
	}
	requireEvents(t, "lease revoke", got, fmt.Sprintf("DELETE l/a @%d", rev), fmt.Sprintf("DELETE l/b @%d", rev))
	requireQuiet(t, wch, 100*time.Millisecond)
}

// A client that resumes with WithRev(last+1) after losing its watch (its client
// closed, then the server restarted) sees every event once, in order.
func TestWatchReconnectResume(t *testing.T) {
	t.Parallel()
	m := start(t)
	writer := m.Client()
	var want []string // every event, in order
	putN := func(from, to int) {
		for i := from; i < to; i++ {
			k := fmt.Sprintf("r/%03d", i)
			rev := mustPut(t, writer, k, fmt.Sprint(i)).Header.Revision
			want = append(want, fmt.Sprintf("PUT %s=%d @%d", k, i, rev))
		}
	}
	var got []string
	last := func() int64 {
		var rev int64
		fmt.Sscanf(got[len(got)-1][strings.LastIndex(got[len(got)-1], "@")+1:], "%d", &rev)
		return rev
	}

	// First client: reads 30 of 50 events, then goes away.
	a := m.NewClient()
	wch := watchOn(t, watchCtx(t), a, "r/", clientv3.WithPrefix())
	putN(0, 50)
	got = append(got, collect(t, wch, 30)...)
	a.Close()
	putN(50, 60)

	// Second client resumes from the last event it had.
	b := m.NewClient()
	wch = b.Watch(watchCtx(t), "r/", clientv3.WithPrefix(), clientv3.WithRev(last()+1))
	got = append(got, collect(t, wch, len(want)-len(got))...)
	putN(60, 70)
	got = append(got, collect(t, wch, len(want)-len(got))...)

	// The server restarts; the watch breaks; writes go on; a fresh client resumes.
	m.Restart()
	writer = m.NewClient()
	putN(70, 80)
	c := m.NewClient()
	wch = c.Watch(watchCtx(t), "r/", clientv3.WithPrefix(), clientv3.WithRev(last()+1))
	got = append(got, collect(t, wch, len(want)-len(got))...)
	requireEvents(t, "resumed watch", got, want...)
}

// rssKB returns the VmRSS of a process in KiB (0 if unknown).
func rssKB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			var n int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:")), "%d", &n)
			return n
		}
	}
	return 0
}

// rawStream is one raw gRPC Watch stream of the stress test, with what it received
// per watch id.
type rawStream struct {
	cc   *grpc.ClientConn
	ws   pb.Watch_WatchClient
	mu   sync.Mutex
	evs  map[int64][]string // watch id -> "key@rev"
	n    int                // events received
	err  error
	done chan struct{} // closed when the receive loop ends
}

func newRawStream(t testing.TB, c context.Context, m *framework.Member, opts ...grpc.DialOption) *rawStream {
	t.Helper()
	cc, err := grpc.NewClient(m.HostPort(), append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ws, err := pb.NewWatchClient(cc).Watch(c)
	if err != nil {
		t.Fatal(err)
	}
	return &rawStream{cc: cc, ws: ws, evs: make(map[int64][]string), done: make(chan struct{})}
}

// createAll creates one watcher per prefix with ids 1..len(prefixes) and waits for
// every created response.
func (s *rawStream) createAll(prefixes []string) error {
	for i, p := range prefixes {
		end := []byte(p)
		end[len(end)-1]++
		if err := s.ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
			Key: []byte(p), RangeEnd: end, WatchId: int64(i + 1)}}}); err != nil {
			return err
		}
	}
	for range prefixes {
		r, err := s.ws.Recv()
		if err != nil {
			return err
		}
		if !r.Created || r.Canceled {
			return fmt.Errorf("create: %v", r)
		}
	}
	return nil
}

// recvLoop records events until the stream ends.
func (s *rawStream) recvLoop() {
	defer close(s.done)
	for {
		r, err := s.ws.Recv()
		if err != nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return
		}
		if r.Canceled || r.Created || r.CompactRevision != 0 {
			s.mu.Lock()
			s.err = fmt.Errorf("unexpected response %v", r)
			s.mu.Unlock()
			return
		}
		s.mu.Lock()
		for _, ev := range r.Events {
			s.evs[r.WatchId] = append(s.evs[r.WatchId], fmt.Sprintf("%s@%d", ev.Kv.Key, ev.Kv.ModRevision))
		}
		s.n += len(r.Events)
		s.mu.Unlock()
	}
}

func (s *rawStream) count() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n, s.err
}

// TestWatchStressStalledStream: 100 streams (each its own connection) with 100
// watchers each, one per prefix, plus a stream that stops reading. 2,000 puts over the
// prefixes: every healthy watcher sees each event of its prefix once, in order; then the
// stalled stream reads and gets all of its events in order too.
func TestWatchStressStalledStream(t *testing.T) {
	m := start(t)
	const (
		streams  = 100
		prefixes = 100
		puts     = 2000
		writers  = 8
	)
	pid := m.Pid()
	c := watchCtx(t)
	var pfx []string
	for j := 0; j < prefixes; j++ {
		pfx = append(pfx, fmt.Sprintf("s/%02d/", j))
	}
	rssStart := rssKB(pid)

	// The stalled stream: one watcher on everything, small fixed flow-control windows
	// (no BDP growth), a connection of its own; it reads its created response only.
	stalled := newRawStream(t, c, m, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err := stalled.createAll([]string{"s/"}); err != nil {
		t.Fatal(err)
	}

	ss := make([]*rawStream, streams)
	var wg sync.WaitGroup
	errc := make(chan error, streams)
	for i := range ss {
		ss[i] = newRawStream(t, c, m)
		wg.Add(1)
		go func(s *rawStream) {
			defer wg.Done()
			if err := s.createAll(pfx); err != nil {
				errc <- err
			}
		}(ss[i])
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	for _, s := range ss {
		go s.recvLoop()
	}
	rssWatching := rssKB(pid)

	// 2,000 puts from several writers; record each put's revision.
	value := strings.Repeat("v", 100)
	revOf := make([]int64, puts)
	keyOf := func(i int) string { return fmt.Sprintf("%s%04d", pfx[i%prefixes], i) }
	start := time.Now()
	var werr error
	var wmu sync.Mutex
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			cli := m.NewClient()
			for i := w; i < puts; i += writers {
				pc, cancel := context.WithTimeout(c, opTimeout)
				r, err := cli.Put(pc, keyOf(i), value)
				cancel()
				if err != nil {
					wmu.Lock()
					werr = err
					wmu.Unlock()
					return
				}
				revOf[i] = r.Header.Revision
			}
		}(w)
	}
	wg.Wait()
	if werr != nil {
		t.Fatal(werr)
	}
	putTime := time.Since(start)

	// Expected events per prefix and in total, in revision order.
	type kr struct {
		key string
		rev int64
	}
	perPrefix := make([][]kr, prefixes)
	all := make([]kr, puts)
	for i := 0; i < puts; i++ {
		perPrefix[i%prefixes] = append(perPrefix[i%prefixes], kr{keyOf(i), revOf[i]})
		all[i] = kr{keyOf(i), revOf[i]}
	}
	sortKR := func(s []kr) []string {
		for i := 1; i < len(s); i++ {
			for j := i; j > 0 && s[j].rev < s[j-1].rev; j-- {
				s[j], s[j-1] = s[j-1], s[j]
			}
		}
		out := make([]string, len(s))
		for i, e := range s {
			out[i] = fmt.Sprintf("%s@%d", e.key, e.rev)
		}
		return out
	}
	want := make([][]string, prefixes)
	for j := range perPrefix {
		want[j] = sortKR(perPrefix[j])
	}

	deadline := time.Now().Add(30 * time.Second)
	for i, s := range ss {
		for {
			n, err := s.count()
			if err != nil {
				t.Fatalf("stream %d: %v after %d events", i, err, n)
			}
			if n >= puts {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("stream %d: %d of %d events", i, n, puts)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	healthyTime := time.Since(start)
	time.Sleep(100 * time.Millisecond) // nothing more may come
	for i, s := range ss {
		s.mu.Lock()
		for j := 0; j < prefixes; j++ {
			if got := s.evs[int64(j+1)]; !eqStrings(got, want[j]) {
				s.mu.Unlock()
				t.Fatalf("stream %d watcher %d (%s): %d events, want %d; first difference in %q vs %q",
					i, j+1, pfx[j], len(got), len(want[j]), got, want[j])
			}
		}
		if s.n != puts {
			s.mu.Unlock()
			t.Fatalf("stream %d: %d events, want %d", i, s.n, puts)
		}
		s.mu.Unlock()
	}
	rssAfterPuts := rssKB(pid)

	// The stalled stream reads now: every event, in order, once.
	go stalled.recvLoop()
	wantAll := sortKR(all)
	for {
		n, err := stalled.count()
		if err != nil {
			t.Fatalf("stalled stream: %v after %d events", err, n)
		}
		if n >= puts {
			break
		}
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("stalled stream: %d of %d events after resuming", n, puts)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	stalled.mu.Lock()
	got := stalled.evs[1]
	stalled.mu.Unlock()
	if !eqStrings(got, wantAll) {
		t.Fatalf("stalled stream: %d events, want %d, not the same sequence", len(got), len(wantAll))
	}
	t.Logf("%s: %d streams x %d watchers + 1 stalled; %d puts in %v; all healthy watchers done after %v; stalled caught up after %v",
		binName(m), streams, prefixes, puts, putTime.Round(time.Millisecond), healthyTime.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	t.Logf("server VmRSS: %d KiB at start, %d KiB with %d watchers, %d KiB after the puts (stalled stream pending), %d KiB at the end",
		rssStart, rssWatching, streams*prefixes+1, rssAfterPuts, rssKB(pid))
}

// A watch from "now" (no start revision) gets only events after the revision its
// created response carries, also while writes race with its creation: the revision is
// taken once, in the step that registers the watcher.
func TestWatchFromNowStartsAfterCreatedRevision(t *testing.T) {
	m := framework.StartMember(t, framework.Options{})
	cli := m.Client()
	c := watchCtx(t)

	wctx, stopWriters := context.WithCancel(c)
	var writers sync.WaitGroup
	for w := 0; w < 8; w++ {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := 0; i < 20000 && wctx.Err() == nil; i++ {
				_, _ = cli.Put(wctx, "k", fmt.Sprint(i))
			}
		}()
	}
	defer func() {
		stopWriters()
		writers.Wait()
	}()

	deadline := time.Now().Add(20 * time.Second)
	checked := 0
	for ; checked < 300 && time.Now().Before(deadline); checked++ {
		ctx, cancel := context.WithCancel(c)
		wch := cli.Watch(ctx, "k", clientv3.WithCreatedNotify())
		created := nextResponse(t, wch)
		if !created.Created || created.Err() != nil {
			cancel()
			t.Fatalf("first response %+v (err %v), want created", created, created.Err())
		}
		wr := nextResponse(t, wch)
		cancel()
		if err := wr.Err(); err != nil || len(wr.Events) == 0 {
			t.Fatalf("watch %d: response %+v (err %v), want events", checked, wr, err)
		}
		if first := wr.Events[0].Kv.ModRevision; first <= created.Header.Revision {
			t.Fatalf("watch %d created at revision %d got an event at %d", checked, created.Header.Revision, first)
		}
	}
	if checked < 50 {
		t.Fatalf("only %d watches checked in time", checked)
	}
}
