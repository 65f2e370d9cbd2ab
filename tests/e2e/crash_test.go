package e2e

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestCrashRepeatedKill9: 20 rounds of kill -9 during a stream of acknowledged writes
// from concurrent clients, then restart. After every restart each write acknowledged in
// any round is present with its value, and the revision is at least the newest one a
// client was told (revisions never go backwards). A small --snapshot-count makes
// snapshots and WAL purges happen between the crashes too.
func TestCrashRepeatedKill9(t *testing.T) {
	t.Parallel()
	m := start(t, "--snapshot-count=150")
	const rounds, workers, perRound = 20, 4, 400
	acked := map[string]string{}
	var maxRev int64
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for round := 0; round < rounds; round++ {
		clients := newClients(m, workers)
		var (
			mu   sync.Mutex
			next atomic.Int64
			wg   sync.WaitGroup
		)
		stop := make(chan struct{})
		deadline := time.Now().Add(30 * time.Second)
		for _, cli := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					i := next.Add(1) - 1
					if i >= perRound {
						return
					}
					key := fmt.Sprintf("crash/%02d/%05d", round, i)
					c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					resp, err := cli.Put(c, key, durValue(key))
					cancel()
					select {
					case <-stop:
						if err != nil {
							return
						}
					default:
						if err != nil {
							t.Errorf("round %d: put %s before the kill: %v", round, key, err)
							return
						}
					}
					mu.Lock()
					acked[key] = durValue(key)
					if resp.Header.Revision > maxRev {
						maxRev = resp.Header.Revision
					}
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Duration(50+rng.Intn(250)) * time.Millisecond)
		close(stop)
		m.Kill()
		waited := make(chan struct{})
		go func() { wg.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: writers did not stop within 30s of the kill", round)
		}
		for _, c := range clients {
			c.Close()
		}
		if t.Failed() {
			return
		}
		restartAfterCrash(t, m)
		g := mustGet(t, m.Client(), "crash/", clientv3.WithPrefix())
		if g.Header.Revision < maxRev {
			t.Fatalf("round %d: revision %d after restart is behind acknowledged revision %d", round, g.Header.Revision, maxRev)
		}
		got := make(map[string]string, len(g.Kvs))
		for _, kv := range g.Kvs {
			got[string(kv.Key)] = string(kv.Value)
		}
		for k, v := range acked {
			if got[k] != v {
				t.Fatalf("round %d: acknowledged write %s lost (present value %.20q)", round, k, got[k])
			}
		}
	}
	t.Logf("%d acknowledged writes over %d kill -9 rounds, newest acknowledged revision %d", len(acked), rounds, maxRev)
}
