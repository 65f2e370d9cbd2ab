// Command memrestart measures a member's memory with many keys and its restart-to-ready
// time (issue 11 item 7). It starts the binary alone on a fresh data dir (etcd's default
// flags, --quota-backend-bytes 8 GiB), fills --keys keys of --value-size bytes with plain
// Puts from --clients concurrent clients over --conns connections (no txn batching),
// reads VmRSS and VmHWM of the member from /proc/PID/status, then restarts it --restarts
// times: each restart is timed from the process start to the first successful
// linearizable Get, and VmRSS/VmHWM are read once it answered. It prints one line per
// stage and, with --json, one JSON object per target for comparison scripts.
//
//	go run ./bench/memrestart --bin ../bin/cairn --keys 1000000 --value-size 256
//	go run ./bench/memrestart --bin ../bin/etcd --keys 200000 --value-size 10240
//
// The member runs with --log-level error; --log-level info (--log) shows Cairn's own
// startup timestamps. --dir D --reuse restarts an already filled member again.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// result is what one target measured; sizes are KiB, durations seconds.
type result struct {
	Target       string    `json:"target"`
	Keys         int       `json:"keys"`
	ValueSize    int       `json:"value_size"`
	FillSeconds  float64   `json:"fill_seconds,omitempty"`
	DBBytes      int64     `json:"db_bytes"`
	FillRSS      int64     `json:"fill_rss_kib,omitempty"`
	FillHWM      int64     `json:"fill_hwm_kib,omitempty"`
	ReadySeconds []float64 `json:"ready_seconds"`
	RestartRSS   []int64   `json:"restart_rss_kib"`
	RestartHWM   []int64   `json:"restart_hwm_kib"`
}

func main() {
	bin := flag.String("bin", "", "member binary (cairn or etcd)")
	dir := flag.String("dir", "", "data dir parent (default: a temp dir, removed at the end)")
	keys := flag.Int("keys", 1000000, "keys to fill")
	size := flag.Int("value-size", 256, "bytes per value")
	clients := flag.Int("clients", 200, "concurrent Put loops during the fill")
	conns := flag.Int("conns", 10, "gRPC connections the Put loops share")
	restarts := flag.Int("restarts", 3, "timed restarts after the fill")
	fillTimeout := flag.Duration("fill-timeout", 20*time.Minute, "longest the fill may take")
	reuse := flag.Bool("reuse", false, "--dir already holds a filled member: skip the fill")
	logLevel := flag.String("log", "error", "the member's --log-level (its output goes to stderr)")
	jsonOut := flag.Bool("json", false, "also print the result as one JSON line")
	extra := flag.String("flags", "", "more member flags, space-separated")
	warm := flag.Bool("warm", true, "read every file of the data dir before each restart (untimed), so every restart starts with the db in the page cache as a process restart usually does, whatever other processes evicted")
	pprofDir := flag.String("pprof", "", "with --enable-pprof, save the member's heap profile after the fill and after the first restart in this dir")
	flag.Parse()
	if *bin == "" {
		fail(fmt.Errorf("--bin is required"))
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "memrestart")
		fail(err)
		defer os.RemoveAll(d)
		*dir = d
	}
	m := &member{bin: *bin, dir: filepath.Join(*dir, "m.data"), logLevel: *logLevel, extra: strings.Fields(*extra)}
	if *pprofDir != "" {
		m.extra = append(m.extra, "--enable-pprof")
	}
	name := filepath.Base(*bin)
	res := result{Target: name, Keys: *keys, ValueSize: *size}
	if !*reuse {
		_, err := m.start()
		fail(err)
		t0 := time.Now()
		fail(fill(m.url, *keys, *size, *clients, *conns, *fillTimeout))
		res.FillSeconds = time.Since(t0).Seconds()
		st := m.status()
		res.FillRSS, res.FillHWM = st["VmRSS"], st["VmHWM"]
		fmt.Printf("%s: filled %d x %d B in %.1fs (%.0f puts/s); VmRSS %d MiB, VmHWM %d MiB (RssAnon %d MiB, RssFile %d MiB)\n",
			name, *keys, *size, res.FillSeconds, float64(*keys)/res.FillSeconds,
			st["VmRSS"]>>10, st["VmHWM"]>>10, st["RssAnon"]>>10, st["RssFile"]>>10)
		m.heapProfile(*pprofDir, name+"-heap-fill.pb.gz")
		m.stop()
	}
	res.DBBytes = dbSize(m.dir)
	for i := 0; i < *restarts; i++ {
		if *warm {
			fail(warmDir(m.dir))
		}
		ready, err := m.start()
		fail(err)
		st := m.status()
		res.ReadySeconds = append(res.ReadySeconds, ready.Seconds())
		res.RestartRSS = append(res.RestartRSS, st["VmRSS"])
		res.RestartHWM = append(res.RestartHWM, st["VmHWM"])
		fmt.Printf("%s: restart %d (db %d MiB): ready in %v; VmRSS %d MiB, VmHWM %d MiB (RssAnon %d MiB, RssFile %d MiB)\n",
			name, i+1, res.DBBytes>>20, ready.Round(time.Millisecond),
			st["VmRSS"]>>10, st["VmHWM"]>>10, st["RssAnon"]>>10, st["RssFile"]>>10)
		if i == 0 {
			m.heapProfile(*pprofDir, name+"-heap-restart.pb.gz")
		}
		m.stop()
	}
	if n := len(res.ReadySeconds); n > 0 {
		fmt.Printf("%s: median of %d restarts: ready %.3fs, VmRSS %d MiB, VmHWM %d MiB\n", name, n,
			median(res.ReadySeconds), median(res.RestartRSS)>>10, median(res.RestartHWM)>>10)
	}
	if *jsonOut {
		b, err := json.Marshal(res)
		fail(err)
		fmt.Println(string(b))
	}
}

func median[T int64 | float64](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "memrestart:", err)
		os.Exit(1)
	}
}

// warmDir reads every regular file under dir, so its pages are in the page cache.
func warmDir(dir string) error {
	buf := make([]byte, 1<<20)
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
		return err
	})
}

// dbSize is the size of the member's bbolt file (both servers keep it at member/snap/db).
func dbSize(dir string) int64 {
	fi, err := os.Stat(filepath.Join(dir, "member", "snap", "db"))
	if err != nil {
		return 0
	}
	return fi.Size()
}

type member struct {
	bin, dir, url, logLevel string
	extra                   []string
	cmd                     *exec.Cmd
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	fail(err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start starts the member and returns the time from the process start to its first
// successful linearizable Get.
func (m *member) start() (time.Duration, error) {
	cu := fmt.Sprintf("http://127.0.0.1:%d", freePort())
	pu := fmt.Sprintf("http://127.0.0.1:%d", freePort())
	m.url = cu
	args := []string{"--name=m1", "--data-dir=" + m.dir,
		"--listen-client-urls=" + cu, "--advertise-client-urls=" + cu,
		"--listen-peer-urls=" + pu, "--initial-advertise-peer-urls=" + pu,
		"--initial-cluster=m1=" + pu, "--quota-backend-bytes=8589934592", "--log-level=" + m.logLevel}
	m.cmd = exec.Command(m.bin, append(args, m.extra...)...)
	m.cmd.Stdout, m.cmd.Stderr = os.Stderr, os.Stderr
	t0 := time.Now()
	if err := m.cmd.Start(); err != nil {
		return 0, err
	}
	deadline := t0.Add(5 * time.Minute)
	// gRPC waits a second before redialing a refused address, so the client is made
	// once the client port accepts connections (a server may accept before it serves:
	// the Get then waits for it).
	host := strings.TrimPrefix(cu, "http://")
	for {
		c, err := net.DialTimeout("tcp", host, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s not listening: %w", m.bin, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{cu}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	for {
		cx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := cli.Get(cx, "ready-probe", clientv3.WithCountOnly()) // linearizable
		cancel()
		if err == nil {
			return time.Since(t0), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s not ready: %w", m.bin, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (m *member) stop() { framework.StopProcess(m.cmd, 60*time.Second) }

// heapProfile saves the member's /debug/pprof/heap as dir/file (nothing if dir is "").
func (m *member) heapProfile(dir, file string) {
	if dir == "" {
		return
	}
	resp, err := http.Get(m.url + "/debug/pprof/heap")
	fail(err)
	defer resp.Body.Close()
	f, err := os.Create(filepath.Join(dir, file))
	fail(err)
	_, err = io.Copy(f, resp.Body)
	fail(errors.Join(err, f.Close()))
}

// status reads /proc/PID/status' memory lines, in KiB.
func (m *member) status() map[string]int64 { return framework.ProcStatus(m.cmd.Process.Pid) }

// fill puts keys /pods/%010d (16 B) with values of size bytes from clients
// loops over conns connections, each Put its own request.
func fill(url string, keys, size, clients, conns int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	clis := make([]*clientv3.Client, conns)
	for i := range clis {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return err
		}
		defer cli.Close()
		clis[i] = cli
	}
	val := strings.Repeat("v", size)
	var next atomic.Int64
	errc := make(chan error, clients)
	for w := 0; w < clients; w++ {
		cli := clis[w%conns]
		go func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(keys) {
					errc <- nil
					return
				}
				cx, cancel := context.WithTimeout(ctx, 30*time.Second)
				_, err := cli.Put(cx, fmt.Sprintf("/pods/%010d", i), val)
				cancel()
				if err != nil {
					errc <- fmt.Errorf("put %d: %w", i, err)
					return
				}
			}
		}()
	}
	var first error
	for w := 0; w < clients; w++ {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}
