package framework

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/connectivity"
)

// Binary selects which server binary a member runs.
type Binary int

const (
	// BinaryDefault is $CAIRN_BIN, or $ETCD_BIN when CAIRN_TEST_AGAINST=etcd.
	BinaryDefault Binary = iota
	// BinaryCairn is always $CAIRN_BIN (Cairn-only behaviour).
	BinaryCairn
	// BinaryEtcd is always $ETCD_BIN (the reference).
	BinaryEtcd
)

// Default timeouts.
const (
	DefaultReadyTimeout = 20 * time.Second
	DefaultStopTimeout  = 15 * time.Second
	DefaultDialTimeout  = 5 * time.Second
	logTailLines        = 60
	startAttempts       = 3
)

// Options configures a member.
type Options struct {
	// Name is the member name (--name); default "m1".
	Name string
	// Binary selects the server binary.
	Binary Binary
	// Flags are extra command-line flags appended after the generated ones.
	Flags []string
	// Env holds extra environment entries ("KEY=value"). ETCD_* and
	// ETCDCTL_* variables of the test process are never inherited.
	Env []string
	// OmitFlags lists generated flags to leave out (e.g. "--name",
	// "--data-dir"), for tests that supply them through env vars or a
	// config file instead. Endpoint() still uses the allocated URLs.
	OmitFlags []string
	// ReadyTimeout bounds the readiness wait; default DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// ClientTLS makes the client URL https:// with these certificates; the
	// framework's clients (clientv3, etcdctl, HTTPGet) then use TLS too.
	ClientTLS *TLSOptions
	// PeerTLS makes the peer URL https:// with these certificates.
	PeerTLS *TLSOptions
	// Host is the IP the member's client and peer URLs listen on and advertise;
	// default 127.0.0.1 (any 127.0.0.0/8 address is on lo).
	Host string
	// ForMember, for a cluster, adjusts member i's (0-based) options before its URLs
	// are chosen, e.g. a Host and PeerTLS certificate of its own.
	ForMember func(i int, o *Options)
}

// TLSOptions are the certificates of a member's client or peer URLs.
type TLSOptions struct {
	// CA signed Server; its file is given as the trusted CA (--trusted-ca-file,
	// --peer-trusted-ca-file), and the framework's clients verify the member with it.
	CA *CA
	// Server is the member's certificate (--cert-file and --key-file, or the peer
	// ones); unused with AutoTLS.
	Server CertFiles
	// ClientCertAuth adds --client-cert-auth=true (--peer-client-cert-auth=true).
	ClientCertAuth bool
	// AutoTLS gives --auto-tls (--peer-auto-tls) instead of certificate files; the
	// framework's clients then do not verify the member.
	AutoTLS bool
	// Client is the certificate the framework's clients present; nil: none.
	Client *CertFiles
}

// flags are the member's command-line flags for these options; prefix is "" for the
// client URLs, "peer-" for the peer URLs.
func (o *TLSOptions) flags(prefix string) []string {
	if o.AutoTLS {
		return []string{"--" + prefix + "auto-tls"}
	}
	f := []string{"--" + prefix + "cert-file=" + o.Server.CertFile, "--" + prefix + "key-file=" + o.Server.KeyFile}
	if o.CA != nil {
		f = append(f, "--"+prefix+"trusted-ca-file="+o.CA.CAFile)
	}
	if o.ClientCertAuth {
		f = append(f, "--"+prefix+"client-cert-auth=true")
	}
	return f
}

// Member is one server process (Cairn or etcd) with its own data dir and
// ports, killed and cleaned up when the test ends.
type Member struct {
	t    testing.TB
	opts Options

	Bin       string // binary path
	Name      string // --name
	ClientURL string // http://127.0.0.1:port (https:// with Options.ClientTLS; Options.Host)
	PeerURL   string // http://127.0.0.1:port (https:// with Options.PeerTLS; Options.Host)
	DataDir   string // --data-dir (not created by the framework)
	LogPath   string // stdout+stderr of every run, appended
	Dir       string // per-member scratch dir (holds DataDir, LogPath)
	// IsEtcd is true when Bin is the reference etcd ($ETCD_BIN).
	IsEtcd bool
	// Cmd is the process of the current (or last) run; nil before Start.
	// Read it only from the test goroutine between Start/Stop calls.
	Cmd *exec.Cmd

	logOffset int64 // size of LogPath when the current run started

	mu      sync.Mutex
	done    chan struct{}
	waitErr error
	logFile *os.File
	starts  int
	clients []*clientv3.Client
	client  *clientv3.Client
}

// StartMember starts a single-member cluster and waits until it serves a
// serializable Get. It fails the test if the member does not become ready.
func StartMember(t testing.TB, opts Options) *Member {
	t.Helper()
	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		m := NewMember(t, opts)
		if err := m.Start(); err != nil {
			t.Fatalf("start %s: %v", m.Name, err)
		}
		err := m.WaitReady(m.readyTimeout())
		if err == nil {
			return m
		}
		lastErr = err
		m.Kill()
		if !m.LogContains("address already in use") {
			break
		}
		t.Logf("member %s: port race (%v); retrying with new ports", m.Name, err)
	}
	t.Fatalf("member did not become ready: %v", lastErr)
	return nil
}

// NewMember prepares a member (binary, ports, dirs) without starting it.
func NewMember(t testing.TB, opts Options) *Member {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "m1"
	}
	var bin string
	switch opts.Binary {
	case BinaryCairn:
		bin = CairnBin(t)
	case BinaryEtcd:
		bin = EtcdBin(t)
	default:
		bin = ServerBin(t)
	}
	dir := t.TempDir()
	etcdBin := os.Getenv(EnvEtcdBin)
	clientScheme, peerScheme := "http", "http"
	if opts.ClientTLS != nil {
		clientScheme = "https"
	}
	if opts.PeerTLS != nil {
		peerScheme = "https"
	}
	host := opts.Host
	if host == "" {
		host = "127.0.0.1"
	}
	m := &Member{
		IsEtcd:    etcdBin != "" && bin == etcdBin,
		t:         t,
		opts:      opts,
		Bin:       bin,
		Name:      opts.Name,
		ClientURL: fmt.Sprintf("%s://%s:%d", clientScheme, host, FreePort(t)),
		PeerURL:   fmt.Sprintf("%s://%s:%d", peerScheme, host, FreePort(t)),
		DataDir:   filepath.Join(dir, opts.Name+".data"),
		LogPath:   filepath.Join(dir, opts.Name+".log"),
		Dir:       dir,
	}
	// Registered after t.TempDir, so it runs before the dir is removed.
	t.Cleanup(m.cleanup)
	return m
}

func (m *Member) readyTimeout() time.Duration {
	if m.opts.ReadyTimeout > 0 {
		return m.opts.ReadyTimeout
	}
	return DefaultReadyTimeout
}

// Args returns the command-line arguments the member is started with.
func (m *Member) Args() []string {
	gen := [][2]string{
		{"--name", m.Name},
		{"--data-dir", m.DataDir},
		{"--listen-client-urls", m.ClientURL},
		{"--advertise-client-urls", m.ClientURL},
		{"--listen-peer-urls", m.PeerURL},
		{"--initial-advertise-peer-urls", m.PeerURL},
		{"--initial-cluster", m.Name + "=" + m.PeerURL},
		{"--initial-cluster-state", "new"},
		{"--initial-cluster-token", "cairn-e2e"},
		{"--logger", "zap"},
		{"--log-outputs", "stderr"},
		{"--log-level", logLevel()},
	}
	var args []string
	for _, kv := range gen {
		omit := false
		for _, o := range m.opts.OmitFlags {
			if o == kv[0] {
				omit = true
			}
		}
		if !omit {
			args = append(args, kv[0]+"="+kv[1])
		}
	}
	if m.opts.ClientTLS != nil {
		args = append(args, m.opts.ClientTLS.flags("")...)
	}
	if m.opts.PeerTLS != nil {
		args = append(args, m.opts.PeerTLS.flags("peer-")...)
	}
	return append(args, m.opts.Flags...)
}

// AddFlags appends flags to the member's command line from its next start on
// (a later flag overrides an earlier one of the same name).
func (m *Member) AddFlags(flags ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.opts.Flags = append(append([]string(nil), m.opts.Flags...), flags...)
}

// logLevel is $CAIRN_TEST_LOG_LEVEL (e.g. debug, to study a failure), info by default.
func logLevel() string {
	if l := os.Getenv("CAIRN_TEST_LOG_LEVEL"); l != "" {
		return l
	}
	return "info"
}

// Env returns the environment the member is started with.
func (m *Member) Env() []string {
	var env []string
	for _, e := range os.Environ() {
		if strings.HasPrefix(e, "ETCD_") || strings.HasPrefix(e, "ETCDCTL_") {
			continue
		}
		env = append(env, e)
	}
	return append(env, m.opts.Env...)
}

// Start starts the process (it must not be running) without waiting for it
// to become ready.
func (m *Member) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Cmd != nil && !m.exitedLocked() {
		return errors.New("already running")
	}
	if m.logFile == nil {
		f, err := os.OpenFile(m.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		m.logFile = f
	}
	m.starts++
	if fi, err := m.logFile.Stat(); err == nil {
		m.logOffset = fi.Size()
	}
	args := m.Args()
	fmt.Fprintf(m.logFile, "=== framework: start #%d: %s %s\n", m.starts, m.Bin, strings.Join(args, " "))
	cmd := exec.Command(m.Bin, args...)
	cmd.Env = m.Env()
	cmd.Dir = m.Dir
	cmd.Stdout = m.logFile
	cmd.Stderr = m.logFile
	// Die with the test binary (e.g. on a go test timeout panic).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	m.Cmd, m.done, m.waitErr = cmd, done, nil
	go func() {
		err := cmd.Wait()
		m.mu.Lock()
		m.waitErr = err
		m.mu.Unlock()
		close(done)
	}()
	return nil
}

func (m *Member) exitedLocked() bool {
	if m.done == nil {
		return true
	}
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// Running reports whether the process is running.
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.Cmd != nil && !m.exitedLocked()
}

// Pid returns the process id of the current run (0 if never started).
func (m *Member) Pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Cmd == nil || m.Cmd.Process == nil {
		return 0
	}
	return m.Cmd.Process.Pid
}

// Done returns a channel closed when the current run exits.
func (m *Member) Done() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.done
}

// ExitErr returns the current run's exit error (nil for status 0), valid
// once Done is closed.
func (m *Member) ExitErr() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.waitErr
}

// WaitExit waits up to timeout for the process to exit and returns its exit
// error, or an error if it is still running.
func (m *Member) WaitExit(timeout time.Duration) (exitErr error, exited bool) {
	done := m.Done()
	if done == nil {
		return nil, true
	}
	select {
	case <-done:
		return m.ExitErr(), true
	case <-time.After(timeout):
		return nil, false
	}
}

// ReadyLogLine is what etcd (and Cairn) log once they serve clients.
const ReadyLogLine = "ready to serve client requests"

// WaitReady waits until the current run has logged ReadyLogLine (or answers
// GET /health with 200) and then serves a serializable Get, until the
// process exits, or until timeout passes.
func (m *Member) WaitReady(timeout time.Duration) error {
	// The client is made once the member announced itself: a connection tried before it
	// listens would wait out gRPC's reconnect backoff (1 s) first.
	var cli *clientv3.Client
	defer func() {
		if cli != nil {
			cli.Close()
		}
	}()
	hc := m.httpClient(time.Second)
	deadline := time.Now().Add(timeout)
	done := m.Done()
	var lastErr error
	announced := false
	for i := 0; time.Now().Before(deadline) && i < 10000; i++ {
		select {
		case <-done:
			return fmt.Errorf("%s exited before becoming ready (%v); log tail:\n%s", m.Name, m.ExitErr(), m.LogTail(logTailLines))
		default:
		}
		if !announced {
			announced = strings.Contains(m.CurrentRunLog(), ReadyLogLine) || m.healthOK(hc)
			if !announced {
				lastErr = fmt.Errorf("no %q in the log and /health not 200 yet", ReadyLogLine)
				time.Sleep(50 * time.Millisecond)
				continue
			}
		}
		if cli == nil {
			var err error
			if cli, err = m.newClient(DefaultDialTimeout); err != nil {
				return err
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, lastErr = cli.Get(ctx, "cairn-framework-ready", clientv3.WithSerializable())
		cancel()
		// An auth-enabled member refusing the anonymous read is serving too.
		if lastErr == nil || errors.Is(lastErr, rpctypes.ErrUserEmpty) {
			m.reconnectClients(deadline)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %v (last error: %v); log tail:\n%s", m.Name, timeout, lastErr, m.LogTail(logTailLines))
}

// reconnectWait bounds how long WaitReady waits for the member's clients to reconnect.
const reconnectWait = 3 * time.Second

// reconnectClients has the member's clients made before a (re)start, which may be
// waiting out gRPC's reconnect backoff from when it was down, connect now, and waits (up
// to deadline) until each is connected: a test goes on with them as soon as the member is
// ready, as it did when readiness took longer than the backoff. The wait is bounded by
// reconnectWait too: a client a test made to be refused never connects.
func (m *Member) reconnectClients(deadline time.Time) {
	m.mu.Lock()
	clients := append([]*clientv3.Client(nil), m.clients...)
	m.mu.Unlock()
	if d := time.Now().Add(reconnectWait); d.Before(deadline) {
		deadline = d
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	for _, c := range clients {
		conn := c.ActiveConnection()
		conn.ResetConnectBackoff()
		for st := conn.GetState(); st != connectivity.Ready && st != connectivity.Shutdown; st = conn.GetState() {
			conn.Connect()
			if !conn.WaitForStateChange(ctx, st) {
				break
			}
		}
	}
}

func (m *Member) healthOK(hc *http.Client) bool {
	resp, err := hc.Get(m.ClientURL + "/health")
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Endpoint returns the client URL.
func (m *Member) Endpoint() string { return m.ClientURL }

// HostPort returns the client address as host:port.
func (m *Member) HostPort() string {
	return strings.TrimPrefix(strings.TrimPrefix(m.ClientURL, "http://"), "https://")
}

// PeerHostPort returns the peer address as host:port.
func (m *Member) PeerHostPort() string {
	return strings.TrimPrefix(strings.TrimPrefix(m.PeerURL, "http://"), "https://")
}

// ClientTLSConfig is the TLS configuration the framework's clients use with the
// member's client URL (see Options.ClientTLS); nil for a plaintext one.
func (m *Member) ClientTLSConfig() *tls.Config {
	o := m.opts.ClientTLS
	if o == nil {
		return nil
	}
	ca := o.CA
	if o.AutoTLS {
		ca = nil
	}
	return ClientTLS(m.t, ca, o.Client)
}

// EtcdctlTLSFlags are the etcdctl flags for the member's client TLS (see
// Options.ClientTLS); none for a plaintext client URL.
func (m *Member) EtcdctlTLSFlags() []string {
	o := m.opts.ClientTLS
	if o == nil {
		return nil
	}
	var f []string
	if o.AutoTLS || o.CA == nil {
		f = append(f, "--insecure-skip-tls-verify")
	} else {
		f = append(f, "--cacert="+o.CA.CAFile)
	}
	if o.Client != nil {
		f = append(f, "--cert="+o.Client.CertFile, "--key="+o.Client.KeyFile)
	}
	return f
}

// httpClient is an HTTP client for the member's client URL (with its TLS, if any).
func (m *Member) httpClient(timeout time.Duration) *http.Client {
	tc := m.ClientTLSConfig()
	if tc == nil {
		return &http.Client{Timeout: timeout}
	}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
}

func (m *Member) newClient(dialTimeout time.Duration) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{m.ClientURL},
		DialTimeout: dialTimeout,
		TLS:         m.ClientTLSConfig(),
		Logger:      zap.NewNop(),
	})
}

// Client returns a shared clientv3 client for the member, closed when the
// test ends.
func (m *Member) Client() *clientv3.Client {
	m.t.Helper()
	m.mu.Lock()
	c := m.client
	m.mu.Unlock()
	if c != nil {
		return c
	}
	c = m.NewClient()
	m.mu.Lock()
	m.client = c
	m.mu.Unlock()
	return c
}

// NewClient returns a new clientv3 client, closed when the test ends.
func (m *Member) NewClient() *clientv3.Client {
	m.t.Helper()
	c, err := m.newClient(DefaultDialTimeout)
	if err != nil {
		m.t.Fatalf("clientv3.New(%s): %v", m.ClientURL, err)
	}
	m.mu.Lock()
	m.clients = append(m.clients, c)
	m.mu.Unlock()
	return c
}

func (m *Member) signal(sig syscall.Signal) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Cmd == nil || m.exitedLocked() {
		return nil
	}
	return m.Cmd.Process.Signal(sig)
}

// StopErr sends SIGTERM and waits up to DefaultStopTimeout, then SIGKILLs.
// It returns the exit error (nil for status 0), or an error if the process
// had to be killed. Note that etcd re-raises SIGTERM after its shutdown
// handlers ran (pkg/osutil.HandleInterrupts), so etcd reports
// "signal: terminated"; see CleanExit.
func (m *Member) StopErr() error {
	if !m.Running() {
		return nil
	}
	if err := m.signal(syscall.SIGTERM); err != nil {
		return err
	}
	if exitErr, ok := m.WaitExit(DefaultStopTimeout); ok {
		return exitErr
	}
	m.Kill()
	return fmt.Errorf("%s did not exit within %v of SIGTERM; killed", m.Name, DefaultStopTimeout)
}

// Stop sends SIGTERM, waits for the exit and fails the test unless the exit
// was clean (see CleanExit).
func (m *Member) Stop() {
	m.t.Helper()
	if err := m.StopErr(); !m.CleanExit(err) {
		m.t.Errorf("%s: unclean exit after SIGTERM: %v; log tail:\n%s", m.Name, err, m.LogTail(logTailLines))
	}
}

// CleanExit reports whether exitErr (from StopErr) is a clean SIGTERM
// shutdown: exit status 0 for Cairn; for the reference etcd, which
// re-raises SIGTERM once it has shut down, also "signal: terminated".
func (m *Member) CleanExit(exitErr error) bool {
	if exitErr == nil {
		return true
	}
	var ee *exec.ExitError
	if m.IsEtcd && errors.As(exitErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
			return true
		}
	}
	return false
}

// Kill sends SIGKILL and waits for the process to exit.
func (m *Member) Kill() {
	if !m.Running() {
		return
	}
	_ = m.signal(syscall.SIGKILL)
	if _, ok := m.WaitExit(30 * time.Second); !ok {
		m.t.Errorf("%s: still running 30s after SIGKILL", m.Name)
	}
}

// Restart stops the member if running (SIGTERM) and starts it again with the
// same data dir, ports and flags, waiting until ready.
func (m *Member) Restart() {
	m.t.Helper()
	if m.Running() {
		m.Stop()
	}
	if err := m.Start(); err != nil {
		m.t.Fatalf("restart %s: %v", m.Name, err)
	}
	if err := m.WaitReady(m.readyTimeout()); err != nil {
		m.t.Fatalf("restart %s: %v", m.Name, err)
	}
}

// Log returns everything the member has printed so far (all runs).
func (m *Member) Log() string {
	m.mu.Lock()
	if m.logFile != nil {
		_ = m.logFile.Sync()
	}
	m.mu.Unlock()
	b, _ := os.ReadFile(m.LogPath)
	return string(b)
}

// Logs is Log: everything the member has printed so far (all runs).
func (m *Member) Logs() string { return m.Log() }

// CurrentRunLog returns what the member printed since its last Start.
func (m *Member) CurrentRunLog() string {
	m.mu.Lock()
	off := m.logOffset
	m.mu.Unlock()
	l := m.Log()
	if int(off) <= len(l) {
		return l[off:]
	}
	return l
}

// LogContains reports whether the member's output contains s.
func (m *Member) LogContains(s string) bool { return strings.Contains(m.Log(), s) }

// LogTail returns the last n lines of the member's output.
func (m *Member) LogTail(n int) string { return Tail(m.Log(), n) }

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (m *Member) cleanup() {
	m.mu.Lock()
	clients := m.clients
	m.clients, m.client = nil, nil
	m.mu.Unlock()
	for _, c := range clients {
		_ = c.Close()
	}
	if m.t.Failed() && os.Getenv("CAIRN_TEST_KEEP_LOGS") != "" && m.Running() {
		// SIGQUIT makes a Go server print every goroutine's stack into its log.
		_ = m.signal(syscall.SIGQUIT)
		m.WaitExit(5 * time.Second)
	}
	m.Kill()
	if m.t.Failed() && m.starts > 0 {
		m.t.Logf("--- %s (%s) output tail (%s):\n%s", m.Name, filepath.Base(m.Bin), m.LogPath, m.LogTail(logTailLines))
		m.keepFailedLog()
	}
	m.mu.Lock()
	if m.logFile != nil {
		_ = m.logFile.Close()
		m.logFile = nil
	}
	m.mu.Unlock()
}

// keepFailedLog copies the member's whole log into $CAIRN_TEST_KEEP_LOGS (when set)
// so a failure can be studied after the test removed its directories.
func (m *Member) keepFailedLog() {
	dir := os.Getenv("CAIRN_TEST_KEEP_LOGS")
	if dir == "" {
		return
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(m.t.Name()) + "-" + m.Name + ".log"
	if err := os.MkdirAll(dir, 0o755); err == nil {
		err = os.WriteFile(filepath.Join(dir, name), []byte(m.Log()), 0o644)
		if err != nil {
			m.t.Logf("keep log of %s: %v", m.Name, err)
		}
	}
}

// Etcdctl runs $ETCDCTL_BIN --endpoints=<client URL> [TLS flags] args... (30 s timeout);
// the TLS flags are EtcdctlTLSFlags.
func (m *Member) Etcdctl(args ...string) (stdout, stderr string, err error) {
	m.t.Helper()
	return m.EtcdctlStdin("", args...)
}

// EtcdctlStdin is Etcdctl with stdin.
func (m *Member) EtcdctlStdin(stdin string, args ...string) (stdout, stderr string, err error) {
	m.t.Helper()
	full := append(append([]string{"--endpoints=" + m.ClientURL}, m.EtcdctlTLSFlags()...), args...)
	r := Run(m.t, 30*time.Second, stdin, nil, EtcdctlBin(m.t), full...)
	return r.Stdout, r.Stderr, r.Err
}

// Result is the outcome of Run.
type Result struct {
	Stdout, Stderr string
	// Err is nil on exit status 0; an *exec.ExitError otherwise, or a
	// timeout error if the process had to be killed.
	Err      error
	ExitCode int // -1 if killed by a signal or not started
	TimedOut bool
}

// Combined returns stdout followed by stderr.
func (r Result) Combined() string { return r.Stdout + r.Stderr }

// Run runs bin with args to completion (killing it after timeout), with the
// given stdin and extra env; ETCD_*/ETCDCTL_* of the test process are not
// inherited.
func Run(t testing.TB, timeout time.Duration, stdin string, env []string, bin string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = ToolEnv(env...)
	cmd.Dir = t.TempDir()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String(), Err: err, ExitCode: -1}
	if cmd.ProcessState != nil {
		r.ExitCode = cmd.ProcessState.ExitCode()
	}
	if ctx.Err() != nil {
		r.TimedOut = true
		r.Err = fmt.Errorf("%s %v: killed after %v (%v)", filepath.Base(bin), args, timeout, err)
	}
	return r
}

// ToolEnv is the test process's environment without its ETCD_* and ETCDCTL_* variables
// (etcd's tools read them as flags), plus extra: what Run starts a tool with.
func ToolEnv(extra ...string) []string {
	var env []string
	for _, e := range os.Environ() {
		if strings.HasPrefix(e, "ETCD_") || strings.HasPrefix(e, "ETCDCTL_") {
			continue
		}
		env = append(env, e)
	}
	return append(env, extra...)
}

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and has
// not been handed out before in this test process.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for i := 0; i < 100; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !portsUsed[port] {
			portsUsed[port] = true
			return port
		}
	}
	t.Fatal("free port: no unused port after 100 tries")
	return 0
}

// GrepLines returns the lines of s containing sub.
func GrepLines(s, sub string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), sub) {
			out = append(out, sc.Text())
		}
	}
	return out
}
