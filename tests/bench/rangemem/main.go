// Command rangemem measures a member's peak memory (VmHWM) serving one range over a
// large keyspace: it starts the binary on a fresh data dir, fills --keys values of
// --value-size bytes through clientv3, then, for each mode, restarts the member and
// reads VmHWM after start and after one read of the whole keyspace: "unary" (Range,
// no limit) or "stream" (KV.RangeStream, etcd 3.7's streaming range, which Cairn and
// etcd 3.7 serve). A read must return every key a count-only Range counts. It prints
// one line per mode and, with --json, one JSON object for comparison scripts;
// `make bench`'s range-1g workload runs it for Cairn and etcd.
//
//	go run ./bench/rangemem --bin ../bin/cairn --keys 100000 --value-size 10240 --modes unary,stream
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// result is what one target measured; sizes are KiB, durations seconds.
type result struct {
	Target      string                `json:"target"`
	Keys        int                   `json:"keys"`
	ValueSize   int                   `json:"value_size"`
	FillSeconds float64               `json:"fill_seconds,omitempty"`
	Modes       map[string]modeResult `json:"modes"`
}

// modeResult is one mode's read: KVs and value bytes returned, its duration, VmHWM
// after the restart and after the read, the highest RssAnon seen during it and RssFile
// after it.
type modeResult struct {
	KVs        int     `json:"kvs"`
	ValueBytes int64   `json:"value_bytes"`
	Seconds    float64 `json:"seconds"`
	StartHWM   int64   `json:"start_hwm_kib"`
	ReadHWM    int64   `json:"read_hwm_kib"`
	AnonPeak   int64   `json:"anon_peak_kib"`
	RSSFile    int64   `json:"rss_file_kib"`
}

func main() {
	bin := flag.String("bin", "", "member binary (cairn or etcd)")
	dir := flag.String("dir", "", "data dir parent (default: a temp dir, removed at the end)")
	keys := flag.Int("keys", 1000, "keys to fill")
	size := flag.Int("value-size", 1<<20, "bytes per value")
	modes := flag.String("modes", "unary", "comma-separated: unary, stream")
	reuse := flag.Bool("reuse", false, "--dir already holds a filled member: skip the fill")
	jsonOut := flag.Bool("json", false, "also print the result as one JSON line")
	flag.Parse()
	if *bin == "" {
		fail(fmt.Errorf("--bin is required"))
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "rangemem")
		fail(err)
		defer os.RemoveAll(d)
		*dir = d
	}
	m := &member{bin: *bin, dir: filepath.Join(*dir, "m.data")}
	name := filepath.Base(*bin)
	res := result{Target: name, Keys: *keys, ValueSize: *size, Modes: map[string]modeResult{}}
	if !*reuse {
		fail(m.start())
		t0 := time.Now()
		fail(fill(m.url, *keys, *size))
		res.FillSeconds = time.Since(t0).Seconds()
		fmt.Printf("%s: filled %d x %d B in %v\n", name, *keys, *size, time.Since(t0).Round(time.Second))
		m.stop()
	}
	for _, mode := range strings.Split(*modes, ",") {
		fail(m.start())
		before := m.status()
		peak := &peakAnon{pid: m.cmd.Process.Pid}
		go peak.watch()
		t0 := time.Now()
		n, bytes, err := read(m.url, mode)
		fail(err)
		elapsed := time.Since(t0)
		peak.end()
		after := m.status()
		fmt.Printf("%s %s: %d KVs, %d MiB of values in %v; VmHWM after start %d MiB, after the read %d MiB (RssAnon peak ~%d MiB, RssFile now %d MiB)\n",
			name, mode, n, bytes>>20, elapsed.Round(time.Millisecond),
			before["VmHWM"]>>10, after["VmHWM"]>>10, peak.max.Load()>>10, after["RssFile"]>>10)
		want, err := count(m.url)
		fail(err)
		if int64(n) != want {
			fail(fmt.Errorf("%s %s: read %d KVs, the range holds %d", name, mode, n, want))
		}
		res.Modes[mode] = modeResult{KVs: n, ValueBytes: bytes, Seconds: elapsed.Seconds(),
			StartHWM: before["VmHWM"], ReadHWM: after["VmHWM"], AnonPeak: peak.max.Load(), RSSFile: after["RssFile"]}
		m.stop()
	}
	if *jsonOut {
		b, err := json.Marshal(res)
		fail(err)
		fmt.Println(string(b))
	}
}

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "rangemem:", err)
		os.Exit(1)
	}
}

type member struct {
	bin, dir, url string
	cmd           *exec.Cmd
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	fail(err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (m *member) start() error {
	cu := fmt.Sprintf("http://127.0.0.1:%d", freePort())
	pu := fmt.Sprintf("http://127.0.0.1:%d", freePort())
	m.url = cu
	m.cmd = exec.Command(m.bin, "--name=m1", "--data-dir="+m.dir,
		"--listen-client-urls="+cu, "--advertise-client-urls="+cu,
		"--listen-peer-urls="+pu, "--initial-advertise-peer-urls="+pu,
		"--initial-cluster=m1="+pu, "--quota-backend-bytes=8589934592", "--log-level=error")
	m.cmd.Stdout, m.cmd.Stderr = os.Stderr, os.Stderr
	if err := m.cmd.Start(); err != nil {
		return err
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{cu}, DialTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		cx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := cli.Get(cx, "health", clientv3.WithCountOnly())
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready: %v", m.bin, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (m *member) stop() { framework.StopProcess(m.cmd, 30*time.Second) }

// status reads /proc/PID/status' memory lines, in KiB.
func (m *member) status() map[string]int64 { return framework.ProcStatus(m.cmd.Process.Pid) }

// peakAnon polls RssAnon (VmHWM has no anonymous-only counterpart).
type peakAnon struct {
	pid  int
	max  atomic.Int64
	stop chan struct{}
	wg   sync.WaitGroup
}

func (p *peakAnon) watch() {
	p.stop = make(chan struct{})
	p.wg.Add(1)
	defer p.wg.Done()
	for {
		if a := framework.ProcStatus(p.pid)["RssAnon"]; a > p.max.Load() {
			p.max.Store(a)
		}
		select {
		case <-p.stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (p *peakAnon) end() {
	for p.stop == nil {
		time.Sleep(time.Millisecond)
	}
	close(p.stop)
	p.wg.Wait()
}

func fill(url string, keys, size int) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer cli.Close()
	val := strings.Repeat("v", size)
	var next atomic.Int64
	errc := make(chan error, 4)
	for w := 0; w < 4; w++ {
		go func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(keys) {
					errc <- nil
					return
				}
				cx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := cli.Put(cx, fmt.Sprintf("/registry/pods/%08d", i), val)
				cancel()
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	for w := 0; w < 4; w++ {
		if err := <-errc; err != nil {
			return err
		}
	}
	return nil
}

// rangeAll is the whole keyspace fill writes.
func rangeAll() *pb.RangeRequest {
	return &pb.RangeRequest{Key: []byte("/registry/"), RangeEnd: []byte("/registry0")}
}

// count is the number of keys under /registry/ (a count-only Range).
func count(url string) (int64, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second})
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	r := rangeAll()
	r.CountOnly = true
	cx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := pb.NewKVClient(cli.ActiveConnection()).Range(cx, r)
	if err != nil {
		return 0, err
	}
	return resp.Count, nil
}

// read reads every key under /registry/ once and returns the KVs and value bytes seen.
func read(url, mode string) (n int, bytes int64, err error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second,
		MaxCallRecvMsgSize: math.MaxInt32})
	if err != nil {
		return 0, 0, err
	}
	defer cli.Close()
	r := rangeAll()
	cx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	switch mode {
	case "unary":
		resp, err := pb.NewKVClient(cli.ActiveConnection()).Range(cx, r, grpc.MaxCallRecvMsgSize(math.MaxInt32))
		if err != nil {
			return 0, 0, err
		}
		for _, kv := range resp.Kvs {
			bytes += int64(len(kv.Value))
		}
		return len(resp.Kvs), bytes, nil
	case "stream":
		err := framework.RangeStream(cx, cli.ActiveConnection(), r, func(c *pb.RangeResponse, _ int) error {
			n += len(c.Kvs)
			for _, kv := range c.Kvs {
				bytes += int64(len(kv.Value))
			}
			return nil
		})
		return n, bytes, err
	}
	return 0, 0, fmt.Errorf("unknown mode %q", mode)
}
