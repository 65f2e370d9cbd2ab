package main

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func mustParse(t *testing.T, args []string, env ...string) *config {
	t.Helper()
	c, err := parseConfig(args, env)
	if err != nil {
		t.Fatalf("parseConfig(%q, %q): %v", args, env, err)
	}
	return c
}

func hasNote(c *config, warn bool, msg string, kv ...string) bool {
	for _, n := range c.notes {
		if n.warn != warn || n.msg != msg {
			continue
		}
		joined := strings.Join(n.kv, "\x00")
		ok := true
		for _, s := range kv {
			if !strings.Contains(joined, s) {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, nil)
	checks := map[string][2]any{
		"name":                  {c.Name, "default"},
		"data-dir":              {c.DataDir, "default.etcd"},
		"wal-dir":               {c.WALDir, ""},
		"listen-client-urls":    {urlsString(c.ListenClientURLs), "http://localhost:2379"},
		"advertise-client-urls": {urlsString(c.AdvertiseClientURLs), "http://localhost:2379"},
		"listen-peer-urls":      {urlsString(c.ListenPeerURLs), "http://localhost:2380"},
		"initial-advertise":     {urlsString(c.AdvertisePeerURLs), "http://localhost:2380"},
		"listen-metrics-urls":   {urlsString(c.ListenMetricsURLs), ""},
		"initial-cluster":       {c.InitialCluster, "default=http://localhost:2380"},
		"initial-cluster-state": {c.InitialClusterState, "new"},
		"initial-cluster-token": {c.InitialClusterToken, "etcd-cluster"},
		"snapshot-count":        {c.SnapshotCount, uint64(10000)},
		"snapshot-catchup":      {c.SnapshotCatchUpEntries, uint64(5000)},
		"heartbeat-interval":    {c.HeartbeatMs, uint(100)},
		"election-timeout":      {c.ElectionMs, uint(1000)},
		"quota-backend-bytes":   {c.QuotaBackendBytes, int64(0)},
		"max-request-bytes":     {c.MaxRequestBytes, uint(1572864)},
		"max-txn-ops":           {c.MaxTxnOps, uint(128)},
		"log-level":             {c.LogLevel, "info"},
		"logger":                {c.Logger, "zap"},
		"log-outputs":           {strings.Join(c.LogOutputs, ","), "default"},
		"keepalive-min":         {c.GRPCKeepAliveMinTime, 5 * time.Second},
		"keepalive-interval":    {c.GRPCKeepAliveInterval, 2 * time.Hour},
		"keepalive-timeout":     {c.GRPCKeepAliveTimeout, 20 * time.Second},
		"enable-pprof":          {c.EnablePprof, false},
		"enable-grpc-gateway":   {c.EnableGRPCGateway, true},
	}
	for name, gw := range checks {
		if gw[0] != gw[1] {
			t.Errorf("%s = %v, want %v", name, gw[0], gw[1])
		}
	}
	if u := c.initialClusterMap["default"]; len(u) != 1 || u[0].String() != "http://localhost:2380" {
		t.Errorf("initial cluster map = %v", c.initialClusterMap)
	}
	if !hasNote(c, true, "'data-dir' was empty; using default", "default.etcd") {
		t.Errorf("no data-dir warning: %v", c.notes)
	}
}

func TestFlags(t *testing.T) {
	c := mustParse(t, []string{
		"--name", "m1", "--data-dir=/var/lib/x", "--wal-dir", "/wal",
		"--listen-client-urls=http://127.0.0.1:2379,http://10.0.0.1:2379",
		"--advertise-client-urls=http://10.0.0.1:2379",
		"--listen-peer-urls=http://10.0.0.1:2380", "--initial-advertise-peer-urls=http://10.0.0.1:2380",
		"--initial-cluster=m1=http://10.0.0.1:2380,m2=http://10.0.0.2:2380,m3=http://10.0.0.3:2380",
		"--initial-cluster-state=existing", "--initial-cluster-token=tok",
		"--snapshot-count=5", "--snapshot-catchup-entries=7", "--heartbeat-interval=50", "--election-timeout=500",
		"--quota-backend-bytes=8589934592", "--max-request-bytes=10485760", "--max-txn-ops=1000",
		"--log-level=debug", "--log-outputs=stdout", "--listen-metrics-urls=http://127.0.0.1:2381",
		"--grpc-keepalive-min-time=1s", "--grpc-keepalive-interval=1m", "--grpc-keepalive-timeout=3s",
		"-enable-pprof", "--enable-grpc-gateway=false",
	})
	if c.Name != "m1" || c.DataDir != "/var/lib/x" || c.WALDir != "/wal" || c.InitialClusterState != "existing" ||
		c.InitialClusterToken != "tok" || c.SnapshotCount != 5 || c.SnapshotCatchUpEntries != 7 || c.HeartbeatMs != 50 || c.ElectionMs != 500 ||
		c.QuotaBackendBytes != 8<<30 || c.MaxRequestBytes != 10<<20 || c.MaxTxnOps != 1000 || c.LogLevel != "debug" ||
		c.LogOutputs[0] != "stdout" || c.GRPCKeepAliveMinTime != time.Second || c.GRPCKeepAliveInterval != time.Minute ||
		c.GRPCKeepAliveTimeout != 3*time.Second || !c.EnablePprof || c.EnableGRPCGateway {
		t.Fatalf("flags not applied: %+v", c)
	}
	if got := urlsString(c.ListenClientURLs); got != "http://10.0.0.1:2379,http://127.0.0.1:2379" {
		t.Errorf("listen-client-urls = %s", got)
	}
	if got := urlsString(c.ListenMetricsURLs); got != "http://127.0.0.1:2381" {
		t.Errorf("listen-metrics-urls = %s", got)
	}
	if len(c.initialClusterMap) != 3 || c.initialClusterMap["m3"][0].Host != "10.0.0.3:2380" {
		t.Errorf("initial cluster = %v", c.initialClusterMap)
	}
}

func TestInitialClusterFollowsName(t *testing.T) {
	c := mustParse(t, []string{"--name=abc"})
	if c.InitialCluster != "abc=http://localhost:2380" || c.DataDir != "abc.etcd" {
		t.Fatalf("initial-cluster=%q data-dir=%q", c.InitialCluster, c.DataDir)
	}
	c = mustParse(t, []string{"--name=abc", "--initial-advertise-peer-urls=http://127.0.0.1:12380"})
	if c.InitialCluster != "abc=http://127.0.0.1:12380" {
		t.Fatalf("initial-cluster=%q", c.InitialCluster)
	}
	c = mustParse(t, []string{"--name=abc", "--initial-cluster=x=http://127.0.0.1:1"})
	if c.InitialCluster != "x=http://127.0.0.1:1" {
		t.Fatalf("explicit initial-cluster overridden: %q", c.InitialCluster)
	}
}

func TestEnv(t *testing.T) {
	c := mustParse(t, []string{"--snapshot-count=7"},
		"ETCD_NAME=envname", "ETCD_QUOTA_BACKEND_BYTES=1024", "ETCD_ENABLE_PPROF=true",
		"ETCD_LISTEN_CLIENT_URLS=http://127.0.0.1:3379", "ETCD_ADVERTISE_CLIENT_URLS=http://127.0.0.1:3379",
		"ETCD_DISCOVERY_SRV=example.com", "ETCDCTL_API=3", "PATH=/bin")
	if c.Name != "envname" || c.QuotaBackendBytes != 1024 || !c.EnablePprof || c.SnapshotCount != 7 {
		t.Fatalf("env not applied: %+v", c)
	}
	if urlsString(c.ListenClientURLs) != "http://127.0.0.1:3379" {
		t.Fatalf("listen-client-urls = %v", c.ListenClientURLs)
	}
	if !hasNote(c, true, "unrecognized environment variable", "ETCD_DISCOVERY_SRV=example.com") {
		t.Errorf("no warning for unrecognized ETCD_ variable: %v", c.notes)
	}
	if hasNote(c, true, "unrecognized environment variable", "ETCDCTL_API") {
		t.Errorf("ETCDCTL_API warned about")
	}
	if !hasNote(c, false, "recognized and used environment variable", "ETCD_NAME") {
		t.Errorf("no note for used variable: %v", c.notes)
	}

	// a flag and its variable both set: etcd refuses to start
	if _, err := parseConfig([]string{"--name=a"}, []string{"ETCD_NAME=b"}); err == nil ||
		!strings.Contains(err.Error(), "conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding command-line flag") {
		t.Errorf("flag+env conflict: %v", err)
	}
	if _, err := parseConfig(nil, []string{"ETCD_SNAPSHOT_COUNT=abc"}); err == nil ||
		!strings.Contains(err.Error(), `invalid value "abc" for ETCD_SNAPSHOT_COUNT`) {
		t.Errorf("bad env value: %v", err)
	}
}

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "etcd.yaml")
	yaml := `
name: filenode
data-dir: /data/etcd
wal-dir: /data/wal
listen-client-urls: http://127.0.0.1:2379,http://127.0.0.2:2379
advertise-client-urls: http://127.0.0.1:2379
listen-peer-urls: http://127.0.0.1:2380
initial-advertise-peer-urls: http://127.0.0.1:2380
initial-cluster-state: existing
initial-cluster-token: ftok
snapshot-count: 20000
experimental-snapshot-catchup-entries: 300
heartbeat-interval: 200
election-timeout: 2000
quota-backend-bytes: 4294967296
max-request-bytes: 2097152
max-txn-ops: 256
log-level: warn
logger: zap
log-outputs: [stdout]
listen-metrics-urls: http://127.0.0.1:2381
enable-pprof: true
enable-grpc-gateway: false
grpc-keepalive-min-time: 1000000000
grpc-keepalive-interval: 1h
discovery-srv: example.com
`
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	// flags and environment are ignored when a config file is given
	c := mustParse(t, []string{"--config-file", p, "--name=ignored", "--snapshot-count=1"}, "ETCD_MAX_TXN_OPS=1")
	if c.Name != "filenode" || c.DataDir != "/data/etcd" || c.WALDir != "/data/wal" || c.InitialClusterState != "existing" ||
		c.InitialClusterToken != "ftok" || c.SnapshotCount != 20000 || c.SnapshotCatchUpEntries != 300 || c.HeartbeatMs != 200 || c.ElectionMs != 2000 ||
		c.QuotaBackendBytes != 4<<30 || c.MaxRequestBytes != 2<<20 || c.MaxTxnOps != 256 || c.LogLevel != "warn" ||
		c.LogOutputs[0] != "stdout" || !c.EnablePprof || c.EnableGRPCGateway || c.GRPCKeepAliveMinTime != time.Second ||
		c.GRPCKeepAliveInterval != time.Hour || c.GRPCKeepAliveTimeout != 20*time.Second {
		t.Fatalf("config file not applied: %+v", c)
	}
	if urlsString(c.ListenClientURLs) != "http://127.0.0.1:2379,http://127.0.0.2:2379" ||
		urlsString(c.ListenMetricsURLs) != "http://127.0.0.1:2381" {
		t.Fatalf("urls: %v %v", c.ListenClientURLs, c.ListenMetricsURLs)
	}
	if c.InitialCluster != "filenode=http://127.0.0.1:2380" {
		t.Fatalf("initial-cluster = %q", c.InitialCluster)
	}
	if !hasNote(c, true, "ignoring unrecognized config file key; Cairn does not implement it", "discovery-srv") {
		t.Errorf("no warning for unknown key: %v", c.notes)
	}

	// ETCD_CONFIG_FILE works too
	c = mustParse(t, nil, "ETCD_CONFIG_FILE="+p)
	if c.Name != "filenode" {
		t.Fatalf("ETCD_CONFIG_FILE ignored: %+v", c)
	}

	// a file with a bad value
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listen-client-urls: localhost:2379\n"), 0o600)
	if _, err := parseConfig([]string{"--config-file=" + bad}, nil); err == nil ||
		!strings.Contains(err.Error(), "unexpected error setting up listen-client-urls") {
		t.Errorf("bad file URL: %v", err)
	}
	if _, err := parseConfig([]string{"--config-file=" + filepath.Join(dir, "missing.yaml")}, nil); err == nil {
		t.Errorf("missing config file accepted")
	}
}

func TestUnknownFlags(t *testing.T) {
	c := mustParse(t, []string{
		"--discovery-srv", "example.com", "--name=n", "--experimental-corrupt-check-time=1m",
		"--strict-reconfig-check", "--snapshot-count", "3",
	})
	if c.Name != "n" || c.SnapshotCount != 3 {
		t.Fatalf("known flags lost: %+v", c)
	}
	for _, f := range []string{"--discovery-srv", "--experimental-corrupt-check-time", "--strict-reconfig-check"} {
		if !hasNote(c, true, "ignoring unrecognized flag; Cairn does not implement it", f) {
			t.Errorf("no warning for %s: %v", f, c.notes)
		}
	}
}

// TestTLSOptions: the security flags, their ETCD_* variables and etcd's config-file keys
// (client-transport-security, peer-transport-security) land in the config; https URLs
// with a certificate (or auto TLS) are accepted.
func TestTLSOptions(t *testing.T) {
	c := mustParse(t, []string{"--cert-file=/c.pem", "--key-file=/k.pem", "--trusted-ca-file=/ca.pem", "--client-cert-auth",
		"--client-crl-file=/crl", "--listen-client-urls=https://127.0.0.1:2379,http://127.0.0.1:22379", "--advertise-client-urls=https://127.0.0.1:2379",
		"--listen-client-http-urls=https://127.0.0.1:2382", "--peer-auto-tls", "--listen-peer-urls=https://127.0.0.1:2380",
		"--peer-cert-allowed-cn=a,b", "--cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
		"--tls-max-version=TLS1.3", "--self-signed-cert-validity=3", "--experimental-peer-skip-client-san-verification",
		"--peer-skip-member-cert-check"},
		"ETCD_PEER_CLIENT_CERT_AUTH=true", "ETCD_PEER_CRL_FILE=/pcrl")
	want := tlsOptions{CertFile: "/c.pem", KeyFile: "/k.pem", TrustedCAFile: "/ca.pem", ClientCertAuth: true, CRLFile: "/crl"}
	if !reflect.DeepEqual(c.ClientTLS, want) {
		t.Errorf("client TLS %+v, want %+v", c.ClientTLS, want)
	}
	wantPeer := tlsOptions{AutoTLS: true, ClientCertAuth: true, CRLFile: "/pcrl", AllowedCNs: []string{"a", "b"}}
	if !reflect.DeepEqual(c.PeerTLS, wantPeer) {
		t.Errorf("peer TLS %+v, want %+v", c.PeerTLS, wantPeer)
	}
	if len(c.CipherSuites) != 2 || c.CipherSuites[1] != "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" || c.TLSMinVersion != "TLS1.2" ||
		c.TLSMaxVersion != "TLS1.3" || c.SelfSignedCertValidity != 3 || len(c.ListenClientURLs) != 2 || len(c.ListenClientHTTPURLs) != 1 ||
		!c.PeerSkipClientSANVerify || !c.PeerSkipMemberCertCheck {
		t.Errorf("config %+v", c)
	}

	p := filepath.Join(t.TempDir(), "etcd.yaml")
	if err := os.WriteFile(p, []byte(`
listen-client-urls: https://127.0.0.1:2379
advertise-client-urls: https://127.0.0.1:2379
listen-peer-urls: https://127.0.0.1:2380
client-transport-security:
  cert-file: /c.pem
  key-file: /k.pem
  client-cert-auth: true
  trusted-ca-file: /ca.pem
  auto-tls: false
peer-transport-security:
  cert-file: /pc.pem
  key-file: /pk.pem
  client-cert-auth: true
  trusted-ca-file: /pca.pem
  client-cert-file: /pcc.pem
  client-key-file: /pck.pem
  allowed-cn: [member]
self-signed-cert-validity: 2
cipher-suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
tls-min-version: TLS1.2
tls-max-version: TLS1.2
peer-skip-member-cert-check: true
`), 0o600); err != nil {
		t.Fatal(err)
	}
	c = mustParse(t, []string{"--config-file=" + p})
	want = tlsOptions{CertFile: "/c.pem", KeyFile: "/k.pem", TrustedCAFile: "/ca.pem", ClientCertAuth: true}
	wantPeer = tlsOptions{CertFile: "/pc.pem", KeyFile: "/pk.pem", TrustedCAFile: "/pca.pem", ClientCertAuth: true,
		ClientCertFile: "/pcc.pem", ClientKeyFile: "/pck.pem"}
	if !reflect.DeepEqual(c.ClientTLS, want) || !reflect.DeepEqual(c.PeerTLS, wantPeer) {
		t.Errorf("file: client %+v peer %+v", c.ClientTLS, c.PeerTLS)
	}
	// etcd 3.6's file has no allowed-cn key: warned about, not applied.
	if !hasNote(c, true, "ignoring unrecognized config file key; Cairn does not implement it", "peer-transport-security.allowed-cn") {
		t.Errorf("no warning for allowed-cn: %v", c.notes)
	}
	if c.SelfSignedCertValidity != 2 || len(c.CipherSuites) != 1 || c.TLSMaxVersion != "TLS1.2" || !c.PeerSkipMemberCertCheck {
		t.Errorf("file: %+v", c)
	}
}

func TestBadValues(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--snapshot-count", "abc"}, `invalid value "abc" for flag -snapshot-count`},
		{[]string{"--heartbeat-interval=-1"}, `invalid value "-1" for flag -heartbeat-interval`},
		{[]string{"--listen-peer-urls=localhost:2380"}, `URL scheme must be http, https, unix, or unixs: localhost:2380`},
		{[]string{"--listen-peer-urls=http://localhost"}, `URL address does not have the form "host:port": http://localhost`},
		{[]string{"--initial-advertise-peer-urls=http://h:1/p"}, `URL must not contain a path: http://h:1/p`},
		{[]string{"--listen-client-urls=http://example.com:2379", "--advertise-client-urls=http://example.com:2379"}, `expected IP in URL for binding (http://example.com:2379)`},
		{[]string{"--election-timeout=400"}, `--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]`},
		{[]string{"--election-timeout=60000"}, `--election-timeout[60000ms] is too long, and should be set less than 50000ms`},
		{[]string{"--heartbeat-interval=0"}, `--heartbeat-interval must be >0 (set to 0ms)`},
		{[]string{"--initial-cluster-state=old"}, `invalid value "old" for flag -initial-cluster-state`},
		{[]string{"--listen-client-urls=http://127.0.0.1:2379"}, `--advertise-client-urls is required when --listen-client-urls is set explicitly`},
		{[]string{"--log-level=loud"}, `invalid --log-level "loud"`},
		{[]string{"--logger=capnslog"}, `--logger=capnslog is removed in v3.5`},
		{[]string{"--log-outputs=default,stdout"}, `multi logoutput for "default" is not supported yet`},
		{[]string{"--enable-pprof", "false"}, `"false" is not a valid flag`},
		{[]string{"--initial-cluster=a=localhost"}, `URL scheme must be http, https, unix, or unixs`},
		{[]string{"--listen-client-urls=https://127.0.0.1:2379", "--advertise-client-urls=https://127.0.0.1:2379"}, `TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme`},
		{[]string{"--listen-client-http-urls=https://127.0.0.1:2381"}, `TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2381 with HTTPS scheme`},
		{[]string{"--listen-metrics-urls=https://127.0.0.1:2381"}, `client TLS key/cert (--cert-file, --key-file) must be provided for metrics secure url`},
		{[]string{"--listen-peer-urls=https://127.0.0.1:2380"}, `cannot listen on TLS for 127.0.0.1:2380: KeyFile and CertFile are not presented`},
		{[]string{"--tls-min-version=TLS1.1"}, `unexpected TLS version "TLS1.1" (must be one of: TLS1.2, TLS1.3)`},
		{[]string{"--tls-max-version=foo"}, `unexpected TLS version "foo" (must be one of: TLS1.2, TLS1.3)`},
		{[]string{"--tls-min-version=TLS1.3", "--tls-max-version=TLS1.2"}, `min version (TLS1.3) is greater than max version (TLS1.2)`},
		{[]string{"--tls-min-version=TLS1.3", "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}, `cipher suites cannot be configured when only TLS1.3 is enabled`},
		{[]string{"--cipher-suites=FOO"}, `unexpected TLS cipher suite "FOO"`},
		{[]string{"--listen-client-urls=unix://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379"}, `only http:// and https:// URLs are supported by Cairn`},
	}
	for _, tt := range tests {
		_, err := parseConfig(tt.args, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseConfig(%q) error = %v; want it to contain %q", tt.args, err, tt.want)
		}
	}
}

func TestVersionOutput(t *testing.T) {
	c := mustParse(t, []string{"--version"})
	if !c.PrintVersion {
		t.Fatal("--version not seen")
	}
	got := versionText()
	re := regexp.MustCompile(`^etcd Version: 3\.6\.16\nGit SHA: [^\n]+\nGo Version: ` + regexp.QuoteMeta(runtime.Version()) +
		`\nGo OS/Arch: ` + runtime.GOOS + `/` + runtime.GOARCH + `\nCairn Version: ` + regexp.QuoteMeta(cairnVersion) + `\n$`)
	if !re.MatchString(got) {
		t.Fatalf("version output:\n%s", got)
	}
}

func TestWatchProgressNotifyIntervalSpellings(t *testing.T) {
	for _, flag := range []string{"--watch-progress-notify-interval=2s", "--experimental-watch-progress-notify-interval=2s"} {
		if c := mustParse(t, []string{flag}); c.WatchProgressNotifyInterval != 2*time.Second {
			t.Fatalf("%s: interval %v, want 2s", flag, c.WatchProgressNotifyInterval)
		}
	}
}

func TestCorruptCheckFlags(t *testing.T) {
	c := mustParse(t, []string{"--feature-gates=InitialCorruptCheck=true, CompactHashCheck=true,LeaseCheckpoint=false", "--compact-hash-check-time=2s"})
	sc := c.serverConfig(zap.NewNop(), &tlsConfigs{})
	if !sc.InitialCorruptCheck || !sc.CompactHashCheck || sc.CompactHashCheckTime != 2*time.Second {
		t.Fatalf("feature gates not applied: %+v", sc)
	}
	c = mustParse(t, []string{"--experimental-initial-corrupt-check", "--experimental-compact-hash-check-enabled", "--experimental-compact-hash-check-time=3s"})
	sc = c.serverConfig(zap.NewNop(), &tlsConfigs{})
	if !sc.InitialCorruptCheck || !sc.CompactHashCheck || sc.CompactHashCheckTime != 3*time.Second {
		t.Fatalf("experimental flags not applied: %+v", sc)
	}
	sc = mustParse(t, nil).serverConfig(zap.NewNop(), &tlsConfigs{})
	if sc.InitialCorruptCheck || sc.CompactHashCheck || sc.CompactHashCheckTime != time.Minute {
		t.Fatalf("defaults: %+v", sc)
	}
	for args, want := range map[string]string{
		"--feature-gates=NoSuchGate=true":          "unrecognized feature gate: NoSuchGate",
		"--feature-gates=InitialCorruptCheck=yes!": "invalid value of InitialCorruptCheck=yes!",
	} {
		if _, err := parseConfig([]string{args}, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
}

// The test-only fault endpoint is off unless CAIRN_FAULT_INJECTION=1, and a warning says
// when it is on.
func TestFaultInjectionEnv(t *testing.T) {
	for _, env := range [][]string{nil, {"CAIRN_FAULT_INJECTION=0"}, {"CAIRN_FAULT_INJECTION=true"}} {
		if c := mustParse(t, nil, env...); c.FaultInjection {
			t.Errorf("env %q: fault injection on", env)
		}
	}
	c := mustParse(t, nil, "CAIRN_FAULT_INJECTION=1")
	if !c.FaultInjection || !hasNote(c, true, "fault injection enabled: for tests only") {
		t.Fatalf("CAIRN_FAULT_INJECTION=1: on=%v, notes %v", c.FaultInjection, c.notes)
	}
}

func TestInitialMmapSizeOption(t *testing.T) {
	if c := mustParse(t, nil); c.InitialMmapSize != 0 || c.serverConfig(zap.NewNop(), &tlsConfigs{}).InitialMmapSize != 0 {
		t.Fatalf("default initial-mmap-size = %d, want 0 (etcd's sizing)", c.InitialMmapSize)
	}
	c := mustParse(t, []string{"--initial-mmap-size=1073741824"})
	if c.InitialMmapSize != 1<<30 || c.serverConfig(zap.NewNop(), &tlsConfigs{}).InitialMmapSize != 1<<30 {
		t.Fatalf("flag: %d", c.InitialMmapSize)
	}
	if c := mustParse(t, nil, "ETCD_INITIAL_MMAP_SIZE=2048"); c.InitialMmapSize != 2048 {
		t.Fatalf("env: %d", c.InitialMmapSize)
	}
	p := filepath.Join(t.TempDir(), "etcd.yaml")
	if err := os.WriteFile(p, []byte("initial-mmap-size: 4096\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c = mustParse(t, []string{"--config-file", p})
	if c.InitialMmapSize != 4096 || hasNote(c, true, "ignoring unrecognized config file key; Cairn does not implement it", "initial-mmap-size") {
		t.Fatalf("config file: %d, notes %v", c.InitialMmapSize, c.notes)
	}
	if _, err := parseConfig([]string{"--initial-mmap-size=-1"}, nil); err == nil ||
		!strings.Contains(err.Error(), "--initial-mmap-size must be >= 0 (set to -1)") {
		t.Fatalf("negative: %v", err)
	}
}

// --disk-reserve-bytes (Cairn only): 0 by default (the server's sizing), from a flag,
// ETCD_* and the config file; negative turns the check off.
func TestDiskReserveBytesOption(t *testing.T) {
	if c := mustParse(t, nil); c.serverConfig(zap.NewNop(), &tlsConfigs{}).DiskReserveBytes != 0 {
		t.Fatalf("default disk-reserve-bytes = %d, want 0", c.DiskReserveBytes)
	}
	if c := mustParse(t, []string{"--disk-reserve-bytes=-1"}); c.serverConfig(zap.NewNop(), &tlsConfigs{}).DiskReserveBytes != -1 {
		t.Fatalf("flag: %d", c.DiskReserveBytes)
	}
	if c := mustParse(t, nil, "ETCD_DISK_RESERVE_BYTES=2048"); c.DiskReserveBytes != 2048 {
		t.Fatalf("env: %d", c.DiskReserveBytes)
	}
	p := filepath.Join(t.TempDir(), "etcd.yaml")
	if err := os.WriteFile(p, []byte("disk-reserve-bytes: 4096\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c := mustParse(t, []string{"--config-file", p}); c.DiskReserveBytes != 4096 {
		t.Fatalf("config file: %d, notes %v", c.DiskReserveBytes, c.notes)
	}
}

// Cairn's backup options: off by default, from a flag, ETCD_* and the config file, and
// refused when they make no sense.
func TestBackupOptions(t *testing.T) {
	c := mustParse(t, nil)
	if c.BackupDir != "" || c.BackupInterval != time.Hour || c.BackupRetention != 24 {
		t.Fatalf("defaults: %q %v %d", c.BackupDir, c.BackupInterval, c.BackupRetention)
	}
	c = mustParse(t, []string{"--backup-dir=/b", "--backup-interval=5m", "--backup-retention=3"})
	sc := c.serverConfig(zap.NewNop(), &tlsConfigs{})
	if sc.BackupDir != "/b" || sc.BackupInterval != 5*time.Minute || sc.BackupRetention != 3 {
		t.Fatalf("flags: %q %v %d", sc.BackupDir, sc.BackupInterval, sc.BackupRetention)
	}
	if c := mustParse(t, nil, "ETCD_BACKUP_DIR=/e", "ETCD_BACKUP_RETENTION=7"); c.BackupDir != "/e" || c.BackupRetention != 7 {
		t.Fatalf("env: %q %d", c.BackupDir, c.BackupRetention)
	}
	p := filepath.Join(t.TempDir(), "etcd.yaml")
	if err := os.WriteFile(p, []byte("backup-dir: /y\nbackup-interval: 10s\nbackup-retention: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c := mustParse(t, []string{"--config-file", p}); c.BackupDir != "/y" || c.BackupInterval != 10*time.Second || c.BackupRetention != 2 {
		t.Fatalf("config file: %q %v %d", c.BackupDir, c.BackupInterval, c.BackupRetention)
	}
	for _, tc := range []struct{ flag, msg string }{
		{"--backup-interval=0s", "--backup-interval must be > 0"},
		{"--backup-retention=0", "--backup-retention must be >= 1"},
	} {
		if _, err := parseConfig([]string{tc.flag}, nil); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %q", tc.flag, err, tc.msg)
		}
	}
}

// --max-concurrent-streams: etcd's name and default, from a flag, ETCD_* and the file.
func TestMaxConcurrentStreamsOption(t *testing.T) {
	if c := mustParse(t, nil); c.MaxConcurrentStreams != math.MaxUint32 {
		t.Fatalf("default %d", c.MaxConcurrentStreams)
	}
	if c := mustParse(t, []string{"--max-concurrent-streams=10"}); c.MaxConcurrentStreams != 10 {
		t.Fatalf("flag %d", c.MaxConcurrentStreams)
	}
	if c := mustParse(t, nil, "ETCD_MAX_CONCURRENT_STREAMS=20"); c.MaxConcurrentStreams != 20 {
		t.Fatalf("env %d", c.MaxConcurrentStreams)
	}
	p := filepath.Join(t.TempDir(), "etcd.yaml")
	if err := os.WriteFile(p, []byte("max-concurrent-streams: 30\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c := mustParse(t, []string{"--config-file", p}); c.MaxConcurrentStreams != 30 {
		t.Fatalf("config file %d", c.MaxConcurrentStreams)
	}
}
