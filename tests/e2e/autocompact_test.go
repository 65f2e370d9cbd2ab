package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// autoCompactRetention is short enough for a test; etcd accepts any Go duration for
// the periodic mode (it then checks every retention/10).
const autoCompactRetention = 2 * time.Second

// TestAutoCompactionPeriodic: with --auto-compaction-retention=2s the member compacts,
// on its own, to the revision of about 2s before (etcd's periodic schedule): a revision
// written long enough ago becomes ErrCompacted within a few retentions, one written
// within the retention before stays readable, and it keeps compacting as writes go on.
// The log says so in etcd's words. Runs against etcd too.
func TestAutoCompactionPeriodic(t *testing.T) {
	m := start(t, "--auto-compaction-mode=periodic", "--auto-compaction-retention="+autoCompactRetention.String())
	cli := m.Client()
	kv := raw(m)

	// A writer records when each revision was sent.
	type write struct {
		sent time.Time
		rev  int64
	}
	var (
		mu     sync.Mutex
		writes []write
	)
	wctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 400 && wctx.Err() == nil; i++ { // bounded: 400 x 50 ms = 20 s
			sent := time.Now()
			resp, err := cli.Put(wctx, "ac", fmt.Sprint(i))
			if err != nil {
				continue
			}
			mu.Lock()
			writes = append(writes, write{sent, resp.Header.Revision})
			mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { stop(); <-done })

	compacted := func(rev int64) bool {
		_, err := cli.Get(ctx(t), "ac", clientv3.WithRev(rev))
		return err != nil
	}
	// oldestWithin is the revision of the oldest write sent within the last `within`.
	oldestWithin := func(within time.Duration) int64 {
		mu.Lock()
		defer mu.Unlock()
		for _, w := range writes {
			if time.Since(w.sent) < within {
				return w.rev
			}
		}
		return 0
	}

	waitFor(t, "some writes", func() bool { return oldestWithin(time.Minute) != 0 })
	first := oldestWithin(time.Minute)
	// The first compaction (at 2s) goes to the revision at start; the next ones to later
	// revisions: the first write's revision is compacted within a few retentions.
	waitFor(t, fmt.Sprintf("revision %d auto-compacted", first), func() bool { return compacted(first) })
	_, err := cli.Get(ctx(t), "ac", clientv3.WithRev(first))
	_, rawErr := kv.Range(ctx(t), &pb.RangeRequest{Key: []byte("ac"), Revision: first})
	errCompacted.check(t, err, rawErr)
	// A revision sent within the retention before now is newer than any revision the
	// member sampled a retention before its last compaction.
	if recent := oldestWithin(autoCompactRetention / 2); recent == 0 || compacted(recent) {
		t.Fatalf("revision %d, written within %v, already compacted (or no recent write)", recent, autoCompactRetention/2)
	}

	// It goes on: a revision written after the first compaction is compacted in turn.
	later := oldestWithin(autoCompactRetention / 4)
	waitFor(t, fmt.Sprintf("later revision %d auto-compacted", later), func() bool { return compacted(later) })

	for _, msg := range []string{"starting auto periodic compaction", "completed auto periodic compaction"} {
		if !m.LogContains(msg) {
			t.Errorf("log lacks %q:\n%s", msg, m.LogTail(20))
		}
	}
}

// TestAutoCompactionLeaderOnly: in a cluster only the leader compacts (followers sample
// but never start a compaction), every member sees the compaction, and after the leader
// stops the new leader compacts. Runs against etcd too.
func TestAutoCompactionLeaderOnly(t *testing.T) {
	c := framework.StartCluster(t, 3, framework.Options{Flags: []string{"--auto-compaction-retention=" + autoCompactRetention.String()}})
	leader := c.Leader()
	cli := c.Client()
	first := mustPut(t, cli, "lo", "0").Header.Revision
	// writeUntil writes (bounded by count and time) until cond holds.
	writeUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for i := 0; !cond(); i++ {
			if time.Now().After(deadline) || i > 1000 {
				t.Fatalf("timed out waiting for %s", what)
			}
			mustPut(t, cli, "lo", fmt.Sprint(i))
			time.Sleep(50 * time.Millisecond)
		}
	}
	compactedOn := func(m *framework.Member, rev int64) bool {
		_, err := m.Client().Get(ctx(t), "lo", clientv3.WithRev(rev), clientv3.WithSerializable())
		return err != nil
	}
	writeUntil("the first revision compacted on every member", func() bool {
		for _, m := range c.Members {
			if !compactedOn(m, first) {
				return false
			}
		}
		return true
	})
	const started = "starting auto periodic compaction"
	for _, m := range c.Members {
		if has := m.LogContains(started); has != (m == leader) {
			t.Fatalf("%s (leader %v) logged %q: %v", m.Name, m == leader, started, has)
		}
	}

	leader.Stop()
	next, err := c.WaitLeader(framework.DefaultLeaderTimeout)
	if err != nil {
		t.Fatal(err)
	}
	cli = next.Client()
	since := mustPut(t, cli, "lo", "after").Header.Revision
	writeUntil("the new leader's compaction", func() bool { return compactedOn(next, since) })
	if !next.LogContains(started) {
		t.Fatalf("new leader %s did not log %q", next.Name, started)
	}
}
