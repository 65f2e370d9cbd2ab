package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
)

// benchResult is the part of `cairnctl bench --json` output these checks read.
type benchResult struct {
	Op       string  `json:"op"`
	Total    int     `json:"total"`
	OK       int     `json:"ok"`
	Errors   int     `json:"errors"`
	TimedOut bool    `json:"timed_out"`
	QPS      float64 `json:"qps"`
	P99Ms    float64 `json:"p99_ms"`
}

// TestCairnctlBenchAgainstBoth runs every `cairnctl bench` workload, small, against
// Cairn and the reference etcd: the tool the benchmark numbers come from must work on
// both and count every request and event (no errors, nothing abandoned). It also checks
// the lease bench revoked what it granted.
func TestCairnctlBenchAgainstBoth(t *testing.T) {
	t.Parallel()
	ctl := framework.CairnctlBin(t)
	p := framework.StartPair(t)
	for _, m := range []*framework.Member{p.Cairn, p.Etcd} {
		ep := m.HostPort()
		for _, args := range [][]string{
			{"put", "--clients", "4", "--conns", "2", "--total", "300", "--key-space-size", "50", "--sequential-keys"},
			{"range", "--clients", "4", "--conns", "2", "--total", "300", "--consistency", "l"},
			{"range", "--clients", "4", "--conns", "2", "--total", "300", "--consistency", "s"},
			{"txn-put", "--clients", "4", "--conns", "2", "--total", "300", "--key-space-size", "50"},
			{"watch", "--watchers", "100", "--streams", "5", "--conns", "2", "--key-space-size", "3", "--put-clients", "2", "--total", "60"},
			{"lease-keepalive", "--leases", "10", "--clients", "4", "--conns", "2", "--total", "500"},
		} {
			cmdArgs := append([]string{"bench"}, args...)
			cmdArgs = append(cmdArgs, "--endpoints", ep, "--json", "--timeout", "1m")
			c, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			var out, errb bytes.Buffer
			cmd := exec.CommandContext(c, ctl, cmdArgs...)
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			cancel()
			if err != nil {
				t.Fatalf("%s: cairnctl %v: %v\nstderr: %s", m.Name, cmdArgs, err, errb.String())
			}
			var r benchResult
			if err := json.Unmarshal(out.Bytes(), &r); err != nil {
				t.Fatalf("%s: cairnctl %v: bad JSON %q: %v", m.Name, cmdArgs, out.String(), err)
			}
			if r.Errors != 0 || r.TimedOut || r.OK == 0 || r.QPS <= 0 {
				t.Fatalf("%s: cairnctl %v: %+v", m.Name, cmdArgs, r)
			}
		}
		leases, err := m.Client().Leases(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(leases.Leases) != 0 {
			t.Fatalf("%s: %d leases left after the lease bench, want 0", m.Name, len(leases.Leases))
		}
	}
}

// cairnctl talks TLS with etcdctl's flags: a bench and a snapshot save against members
// whose client port requires client certificates, Cairn and etcd alike.
func TestCairnctlOverTLS(t *testing.T) {
	ca := framework.NewCA(t, "ca")
	client := ca.Issue(t, "client", framework.CertOptions{CN: "client"})
	p := framework.StartPair(t, framework.Options{
		ClientTLS: &framework.TLSOptions{CA: ca, Server: ca.ServerCert(t, "server", "server"), ClientCertAuth: true, Client: &client},
	})
	ctl := framework.CairnctlBin(t)
	tlsFlags := []string{"--cacert", ca.CAFile, "--cert", client.CertFile, "--key", client.KeyFile}
	for _, m := range p.Members() {
		args := append([]string{"bench", "put", "--endpoints", m.ClientURL, "--total", "50", "--clients", "2", "--json"}, tlsFlags...)
		if r := framework.Run(t, time.Minute, "", nil, ctl, args...); r.Err != nil || !strings.Contains(r.Stdout, `"errors":0`) {
			t.Fatalf("%s: cairnctl %v: %v\n%s", m.Name, args, r.Err, r.Combined())
		}
		db := filepath.Join(t.TempDir(), "s.db")
		args = append([]string{"snapshot", "save", db, "--endpoints", m.ClientURL}, tlsFlags...)
		if r := framework.Run(t, time.Minute, "", nil, ctl, args...); r.Err != nil || !strings.Contains(r.Stdout, "Snapshot saved at") {
			t.Fatalf("%s: cairnctl %v: %v\n%s", m.Name, args, r.Err, r.Combined())
		}
		// Without a client certificate the member refuses the connection.
		args = []string{"bench", "put", "--endpoints", m.ClientURL, "--total", "1", "--cacert", ca.CAFile, "--timeout", "3s"}
		if r := framework.Run(t, time.Minute, "", nil, ctl, args...); r.Err == nil {
			t.Fatalf("%s: cairnctl without a client certificate succeeded: %s", m.Name, r.Combined())
		}
	}
}
