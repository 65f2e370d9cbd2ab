package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The durability tests rely on the on-disk layout Cairn shares with etcd:
// <data-dir>/member/wal/*.wal (segments named so that lexical order is log
// order) and <data-dir>/member/snap/*.snap. Every test here runs against
// both unless marked Cairn-only.

func walFiles(t *testing.T, m *framework.Member) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(m.DataDir, "member", "wal", "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

func snapFiles(t *testing.T, m *framework.Member) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(m.DataDir, "member", "snap", "*.snap"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

func durValue(key string) string { return "value-of-" + key + "-" + strings.Repeat("v", 64) }

// loadResult is what writeLoad saw acknowledged.
type loadResult struct {
	mu    sync.Mutex
	acked map[string]string
}

func newLoadResult() *loadResult { return &loadResult{acked: map[string]string{}} }

func (r *loadResult) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.acked)
}

// writeLoad writes keys prefix%05d for i in [0, n) from `workers`
// concurrent clients (each its own connection), value durValue(key), and
// fails the test on any error.
func writeLoad(t *testing.T, m *framework.Member, prefix string, n, workers int) *loadResult {
	t.Helper()
	res := newLoadResult()
	if err := writeLoadErr(res, newClients(m, workers), prefix, n, nil); err != nil {
		t.Fatalf("write load: %v", err)
	}
	return res
}

func newClients(m *framework.Member, n int) []*clientv3.Client {
	out := make([]*clientv3.Client, n)
	for i := range out {
		out[i] = m.NewClient()
	}
	return out
}

// writeLoadErr is writeLoad without the testing.T (safe to run in a
// goroutine). It stops early when stop is closed (failures after that are
// expected and ignored) and gives up after 90 s. It returns the first error
// seen while stop was open.
func writeLoadErr(res *loadResult, clients []*clientv3.Client, prefix string, n int, stop <-chan struct{}) error {
	var next atomic.Int64
	deadline := time.Now().Add(90 * time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	for _, cli := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				key := fmt.Sprintf("%s%05d", prefix, i)
				c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				_, err := cli.Put(c, key, durValue(key))
				cancel()
				if err != nil {
					select {
					case <-stop:
						return // the server was killed under us
					default:
						errs <- fmt.Errorf("put %s: %w", key, err)
						return
					}
				}
				res.mu.Lock()
				res.acked[key] = durValue(key)
				res.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// verifyAcked requires every acknowledged key to be present with its value,
// and every other key under prefix to carry the value it was written with.
func verifyAcked(t *testing.T, m *framework.Member, prefix string, acked map[string]string) {
	t.Helper()
	cli := m.NewClient()
	g := mustGet(t, cli, prefix, clientv3.WithPrefix())
	got := map[string]string{}
	for _, kv := range g.Kvs {
		got[string(kv.Key)] = string(kv.Value)
	}
	missing := 0
	for k, v := range acked {
		if gv, ok := got[k]; !ok || gv != v {
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged write %s lost or wrong: present=%v value=%.30q", k, ok, gv)
			}
		}
	}
	for k, v := range got {
		if v != durValue(k) {
			t.Errorf("key %s has value %.30q, never written", k, v)
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged writes lost (%d keys present)", missing, len(acked), len(got))
	}
	if g.Header.Revision < int64(len(acked))+1 {
		t.Fatalf("revision %d < 1 + %d acknowledged writes", g.Header.Revision, len(acked))
	}
}

func restartAfterCrash(t *testing.T, m *framework.Member) {
	t.Helper()
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.WaitReady(60 * time.Second); err != nil {
		t.Fatalf("restart after crash: %v", err)
	}
}

// TestDurabilityKillMidLoad: every write acknowledged before a kill -9
// survives it.
func TestDurabilityKillMidLoad(t *testing.T) {
	t.Parallel()
	m := start(t)
	const n, workers = 300, 8
	stop := make(chan struct{})
	res := newLoadResult()
	var loadErr error
	done := make(chan struct{})
	clients := newClients(m, workers)
	go func() {
		defer close(done)
		loadErr = writeLoadErr(res, clients, "load/", n, stop)
	}()
	// Kill once a third of the writes are acknowledged (or the load ended).
	killAt := time.Now().Add(60 * time.Second)
wait:
	for i := 0; i < 20000 && time.Now().Before(killAt) && res.count() < n/3; i++ {
		select {
		case <-done:
			break wait
		case <-time.After(2 * time.Millisecond):
		}
	}
	close(stop)
	m.Kill()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("writers did not stop within 60s of the kill")
	}
	if loadErr != nil {
		t.Fatalf("write load before the kill: %v", loadErr)
	}
	acked := res.count()
	t.Logf("%d of %d writes acknowledged before SIGKILL", acked, n)
	if acked < n/3 {
		t.Fatalf("only %d writes acknowledged before the kill", acked)
	}
	restartAfterCrash(t, m)
	verifyAcked(t, m, "load/", res.acked)
}

// TestDurabilitySnapshotRestart: with --snapshot-count=100 and >1000 writes,
// snapshots are taken (member/snap/*.snap), and both a clean restart and a
// crash restart recover every write.
func TestDurabilitySnapshotRestart(t *testing.T) {
	t.Parallel()
	m := start(t, "--snapshot-count=100")
	const n = 1100
	res := writeLoad(t, m, "snap/", n, 8)
	if res.count() != n {
		t.Fatalf("%d of %d writes acknowledged", res.count(), n)
	}
	// Snapshots are written asynchronously after the apply that crosses
	// the threshold: give them a moment.
	var snaps []string
	for i := 0; i < 100; i++ {
		if snaps = snapFiles(t, m); len(snaps) > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(snaps) == 0 {
		t.Fatalf("no member/snap/*.snap after %d writes with --snapshot-count=100; data dir:\n%s", n, listDir(m.DataDir))
	}
	if len(walFiles(t, m)) == 0 {
		t.Fatalf("no member/wal/*.wal; data dir:\n%s", listDir(m.DataDir))
	}
	t.Logf("snap files: %d (%s ... %s), wal files: %d", len(snaps), filepath.Base(snaps[0]), filepath.Base(snaps[len(snaps)-1]), len(walFiles(t, m)))

	m.Restart()
	verifyAcked(t, m, "snap/", res.acked)
	if c := mustGet(t, m.NewClient(), "snap/", clientv3.WithPrefix(), clientv3.WithCountOnly()).Count; c != n {
		t.Fatalf("after restart: %d keys, want %d", c, n)
	}

	// More writes, then crash: recovery from the latest snapshot + WAL.
	res2 := writeLoad(t, m, "snap2/", 250, 4)
	m.Kill()
	restartAfterCrash(t, m)
	verifyAcked(t, m, "snap/", res.acked)
	verifyAcked(t, m, "snap2/", res2.acked)
	if rev := currentRev(t, m.NewClient()); rev != 1+n+250 {
		t.Fatalf("revision %d after restart, want %d", rev, 1+n+250)
	}
}

// TestDurabilityWALTornTail: garbage appended to the last WAL segment after
// a crash (a torn or partially written tail) does not prevent a restart,
// and no acknowledged write is lost; the log stays writable.
func TestDurabilityWALTornTail(t *testing.T) {
	t.Parallel()
	m := start(t)
	res := writeLoad(t, m, "tail/", 100, 4)
	m.Kill()
	wals := walFiles(t, m)
	if len(wals) == 0 {
		t.Fatalf("no WAL files; data dir:\n%s", listDir(m.DataDir))
	}
	last := wals[len(wals)-1]
	garbage := make([]byte, 4096)
	rand.New(rand.NewSource(42)).Read(garbage)
	f, err := os.OpenFile(last, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(garbage); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("appended %d garbage bytes to %s", len(garbage), filepath.Base(last))

	restartAfterCrash(t, m)
	verifyAcked(t, m, "tail/", res.acked)
	// Still writable and durable after the repair.
	res2 := writeLoad(t, m, "tail2/", 50, 2)
	m.Kill()
	restartAfterCrash(t, m)
	verifyAcked(t, m, "tail/", res.acked)
	verifyAcked(t, m, "tail2/", res2.acked)
}

// TestDurabilityWALMidLogCorruption: a flipped byte inside an early record
// of the first WAL segment (followed by valid records) is corruption, not a
// torn tail: the server must refuse to start (non-zero exit) rather than
// silently drop acknowledged writes, and its error must name the damaged
// WAL file.
//
// This was planned as a Cairn-only check, but etcd 3.6.16 behaves the same
// way (exit status 1, "walpb: crc mismatch: expected: ... computed: ...: in
// file '0000000000000000-0000000000000000.wal' at position: N"), so it runs
// against both. The flipped byte is inside a value, never in an all-zero
// 512-byte sector, so etcd's torn-write heuristic (which would silently
// truncate) does not apply.
func TestDurabilityWALMidLogCorruption(t *testing.T) {
	t.Parallel()
	m := start(t)
	cli := m.Client()
	marker := func(i int) string { return fmt.Sprintf("CORRUPTION-MARKER-%03d-%s", i, strings.Repeat("m", 40)) }
	for i := 0; i < 50; i++ {
		mustPut(t, cli, fmt.Sprintf("c%03d", i), marker(i))
	}
	m.Kill()
	wals := walFiles(t, m)
	if len(wals) == 0 {
		t.Fatalf("no WAL files; data dir:\n%s", listDir(m.DataDir))
	}
	first := wals[0]
	data, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	needle := []byte(marker(5))
	off := bytes.Index(data, needle)
	if off < 0 {
		t.Fatalf("value of the 6th put (%q) not found verbatim in %s: the test needs values stored uncompressed in WAL records", needle[:25], first)
	}
	if bytes.Contains(data[off+len(needle):], []byte(marker(49))) == false {
		t.Fatalf("the last put is not in the first segment after the damaged record; the corruption would be at the tail")
	}
	pos := off + len("CORRUPTION-MARKER-")
	data[pos] ^= 0x01 // '0' -> '1': same length, different bytes
	if err := os.WriteFile(first, data, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("flipped byte %d of %s", pos, filepath.Base(first))

	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.WaitReady(30 * time.Second); err == nil {
		m.Kill()
		t.Fatalf("server with a corrupted WAL record came up and serves; it must refuse to start; log tail:\n%s", m.LogTail(20))
	}
	exitErr, exited := m.WaitExit(15 * time.Second)
	if !exited {
		m.Kill()
		t.Fatalf("server with a corrupted WAL record neither became ready nor exited within 45s; log tail:\n%s", m.LogTail(20))
	}
	if exitErr == nil {
		t.Fatalf("server with a corrupted WAL record exited 0; want non-zero; log tail:\n%s", m.LogTail(20))
	}
	t.Logf("exit: %v; log tail:\n%s", exitErr, m.LogTail(5))
	if !strings.Contains(m.CurrentRunLog(), filepath.Base(first)) {
		t.Fatalf("error does not name the damaged WAL file %s; log tail:\n%s", filepath.Base(first), m.LogTail(20))
	}
}

func listDir(root string) string {
	var b strings.Builder
	_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			rel, _ := filepath.Rel(root, p)
			fmt.Fprintf(&b, "  %s %d\n", rel, fi.Size())
		}
		return nil
	})
	return b.String()
}
