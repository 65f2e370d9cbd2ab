package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestServerVersionFlag(t *testing.T) {
	t.Parallel()
	r := framework.Run(t, 20*time.Second, "", nil, framework.ServerBin(t), "--version")
	if r.Err != nil {
		t.Fatalf("--version: %v\n%s", r.Err, r.Combined())
	}
	if !strings.HasPrefix(r.Stdout, "etcd Version: 3.6.16\n") {
		t.Fatalf("--version stdout %q, want it to start with \"etcd Version: 3.6.16\"", r.Stdout)
	}
}

// TestUnknownFlag: Cairn accepts flags it does not know (e.g. etcd's many
// experimental and tuning flags that deployments pass) with a warning, so
// that existing etcd command lines keep working. The reference etcd instead
// rejects them ("flag provided but not defined", exit 2); under
// CAIRN_TEST_AGAINST=etcd that is what is checked.
func TestUnknownFlag(t *testing.T) {
	t.Parallel()
	if framework.AgainstEtcd() {
		m := framework.NewMember(t, framework.Options{Flags: []string{"--experimental-foo=1"}})
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		exitErr, exited := m.WaitExit(20 * time.Second)
		if !exited || exitErr == nil || !m.LogContains("flag provided but not defined: -experimental-foo") {
			t.Fatalf("etcd with an unknown flag: exited=%v err=%v; log:\n%s", exited, exitErr, m.LogTail(10))
		}
		return
	}
	m := start(t, "--experimental-foo=1")
	mustPut(t, m.Client(), "k", "v")
	var warned bool
	for _, l := range framework.GrepLines(m.Log(), "experimental-foo") {
		if !strings.HasPrefix(l, "=== framework:") {
			warned = true
		}
	}
	if !warned {
		t.Fatalf("no warning mentioning experimental-foo in the log:\n%s", m.LogTail(40))
	}
}

func TestBadFlagValue(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ flag, mention string }{
		{"--snapshot-count=abc", "snapshot-count"},
		{"--quota-backend-bytes=lots", "quota-backend-bytes"},
		{"--heartbeat-interval=fast", "heartbeat-interval"},
	} {
		t.Run(c.mention, func(t *testing.T) {
			m := framework.NewMember(t, framework.Options{Flags: []string{c.flag}})
			if err := m.Start(); err != nil {
				t.Fatal(err)
			}
			exitErr, exited := m.WaitExit(20 * time.Second)
			if !exited {
				t.Fatalf("%s: still running after 20s", c.flag)
			}
			if exitErr == nil {
				t.Fatalf("%s: exited 0, want non-zero", c.flag)
			}
			// The error must name the flag (ignore the framework's own
			// command-line echo).
			var named bool
			for _, l := range framework.GrepLines(m.Log(), c.mention) {
				if !strings.HasPrefix(l, "=== framework:") {
					named = true
				}
			}
			if !named {
				t.Fatalf("%s: exit %v, but no error mentioning %q:\n%s", c.flag, exitErr, c.mention, m.LogTail(20))
			}
		})
	}
}

// TestSIGTERM: SIGTERM shuts down cleanly and promptly. Cairn must exit
// with status 0; etcd re-raises SIGTERM after its shutdown handlers, so it
// reports "signal: terminated" (see framework.Member.CleanExit).
func TestSIGTERM(t *testing.T) {
	t.Parallel()
	m := start(t)
	mustPut(t, m.Client(), "k", "v")
	begin := time.Now()
	err := m.StopErr()
	if !m.CleanExit(err) {
		t.Fatalf("SIGTERM: exit %v, want status 0; log:\n%s", err, m.LogTail(20))
	}
	if !m.IsEtcd && err != nil {
		t.Fatalf("SIGTERM: exit %v, want status 0", err)
	}
	if d := time.Since(begin); d > 10*time.Second {
		t.Errorf("SIGTERM shutdown took %v", d)
	}
}

func TestRestartKeepsDataAndRevision(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	const n = 50
	for i := 0; i < n; i++ {
		mustPut(t, cli, fmt.Sprintf("key%03d", i), fmt.Sprintf("value-%d", i))
	}
	mustDelete(t, cli, "key01", clientv3.WithPrefix()) // key010..key019
	lg, err := cli.Grant(ctx(t), 3600)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, cli, "leased", "x", clientv3.WithLease(lg.ID))
	if _, err := cli.Compact(ctx(t), 10); err != nil {
		t.Fatal(err)
	}
	before := mustGet(t, cli, "", clientv3.WithPrefix())
	ml, err := cli.MemberList(ctx(t))
	if err != nil {
		t.Fatal(err)
	}

	m.Stop()
	m.Restart()
	cli = m.NewClient()

	after := mustGet(t, cli, "", clientv3.WithPrefix())
	if after.Header.Revision != before.Header.Revision || after.Count != before.Count || len(after.Kvs) != len(before.Kvs) {
		t.Fatalf("after restart: rev %d count %d, before: rev %d count %d", after.Header.Revision, after.Count, before.Header.Revision, before.Count)
	}
	for i := range before.Kvs {
		if !framework.WireEqual(before.Kvs[i], after.Kvs[i]) {
			t.Fatalf("kv %d differs after restart:\n before %v\n after  %v", i, before.Kvs[i], after.Kvs[i])
		}
	}
	if after.Header.ClusterId != before.Header.ClusterId || after.Header.MemberId != before.Header.MemberId {
		t.Fatalf("identity changed across restart: %v -> %v", before.Header, after.Header)
	}
	ml2, err := cli.MemberList(ctx(t))
	if err != nil || len(ml2.Members) != 1 || ml2.Members[0].ID != ml.Members[0].ID || ml2.Members[0].Name != "m1" {
		t.Fatalf("member list after restart: %v %v", ml2, err)
	}
	// Compaction and the lease survived.
	_, err = cli.Get(ctx(t), "key000", clientv3.WithRev(5))
	framework.RequireClientError(t, err, errCompacted.client)
	ttl, err := cli.TimeToLive(ctx(t), lg.ID, clientv3.WithAttachedKeys())
	if err != nil || ttl.TTL <= 0 || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "leased" {
		t.Fatalf("lease after restart: %+v %v", ttl, err)
	}
	// Writes continue at the next revision.
	if p := mustPut(t, cli, "next", "x"); p.Header.Revision != before.Header.Revision+1 {
		t.Fatalf("first write after restart at revision %d, want %d", p.Header.Revision, before.Header.Revision+1)
	}
}

// TestLoneMemberLeadsWithoutElectionTimeout: a single-member cluster answers its first
// linearizable read long before an election timeout, fresh and restarted: with
// --election-timeout=10000 (10 s) it must lead within 5 s of the process starting. A
// lone voter has nobody to wait for: Cairn campaigns as soon as its configuration is
// applied. Kubernetes' storage tests start a fresh server per test. etcd 3.6.16 does not
// promise this (a fresh etcd took 7.9 s here, part of its randomized election timeout),
// so under CAIRN_TEST_AGAINST=etcd the times are only logged: a Cairn-only check.
func TestLoneMemberLeadsWithoutElectionTimeout(t *testing.T) {
	t.Parallel()
	m := framework.NewMember(t, framework.Options{Flags: []string{"--heartbeat-interval=100", "--election-timeout=10000"}})
	readyIn := func(what string) time.Duration {
		t.Helper()
		begin := time.Now()
		if err := m.Start(); err != nil {
			t.Fatalf("%s: start: %v", what, err)
		}
		if err := m.WaitReady(20 * time.Second); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		cli := m.NewClient()
		defer cli.Close()
		if _, err := cli.Get(ctx(t), "first-linearizable-read"); err != nil {
			t.Fatalf("%s: linearizable get: %v", what, err)
		}
		return time.Since(begin)
	}
	for _, what := range []string{"fresh", "restarted"} {
		if d := readyIn(what); d > 5*time.Second && !m.IsEtcd {
			t.Errorf("%s member answered its first linearizable read %v after starting; the election timeout is 10 s", what, d)
		} else {
			t.Logf("%s member: first linearizable read %v after starting", what, d)
		}
		m.Stop()
	}
}
