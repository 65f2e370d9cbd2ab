package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-kv/cairn/internal/errs"
	"github.com/cairn-kv/cairn/server"
	"go.uber.org/zap/zapcore"
	"gopkg.in/yaml.v3"

	"github.com/cairn-kv/cairn/internal/tlsutil"
)

// Defaults as etcd 3.6 has them (etcd embed.NewConfig and etcdmain).
const (
	defaultName                     = "default"
	defaultListenClientURLs         = "http://localhost:2379"
	defaultAdvertiseClientURLs      = "http://localhost:2379"
	defaultListenPeerURLs           = "http://localhost:2380"
	defaultInitialAdvertisePeerURLs = "http://localhost:2380"
	defaultClusterToken             = "etcd-cluster"
	defaultSnapshotCount            = 10000
	defaultSnapshotCatchUpEntries   = 5000
	defaultHeartbeatMs              = 100
	defaultElectionMs               = 1000
	defaultMaxRequestBytes          = 1572864
	defaultMaxTxnOps                = 128
	defaultGRPCKeepAliveMinTime     = 5 * time.Second
	defaultGRPCKeepAliveInterval    = 2 * time.Hour
	defaultGRPCKeepAliveTimeout     = 20 * time.Second
	defaultLogLevel                 = "info"
	defaultLogOutput                = "default"
	maxElectionMs                   = 50000
	defaultAutoCompactionMode       = "periodic"
	defaultAutoCompactionRetention  = "0"
	defaultMaxLearners              = 1
	defaultMaxSnapshots             = 5
	defaultMaxWALs                  = 5

	envPrefix = "ETCD"
)

// Git SHA etcd prints in --version; set with -ldflags "-X main.gitSHA=..." at build.
var gitSHA = "Not provided (use ./build instead of go build)"

// config is the parsed command line / environment / config file.
type config struct {
	Name                string
	DataDir             string
	WALDir              string
	ListenClientURLs    []url.URL
	AdvertiseClientURLs []url.URL
	ListenPeerURLs      []url.URL
	AdvertisePeerURLs   []url.URL
	ListenMetricsURLs   []url.URL
	// ListenClientHTTPURLs serve the HTTP endpoints only; once given, ListenClientURLs
	// serve gRPC only (etcd's --listen-client-http-urls).
	ListenClientHTTPURLs []url.URL
	InitialCluster       string
	InitialClusterState  string
	InitialClusterToken  string
	SnapshotCount        uint64
	// SnapshotCatchUpEntries is etcd 3.6's --snapshot-catchup-entries (also spelled
	// --experimental-snapshot-catchup-entries, deprecated).
	SnapshotCatchUpEntries uint64
	HeartbeatMs            uint
	ElectionMs             uint
	QuotaBackendBytes      int64
	// InitialMmapSize is Cairn's --initial-mmap-size (etcd 3.6 has no such flag: it maps
	// 10 GiB, or the quota plus 10%); 0 sizes the map as etcd does.
	InitialMmapSize int64
	MaxRequestBytes uint
	MaxTxnOps       uint
	// MaxConcurrentStreams is etcd's --max-concurrent-streams: gRPC streams one client
	// connection may have open at a time.
	MaxConcurrentStreams  uint
	LogLevel              string
	Logger                string
	LogOutputs            []string
	GRPCKeepAliveMinTime  time.Duration
	GRPCKeepAliveInterval time.Duration
	GRPCKeepAliveTimeout  time.Duration
	EnablePprof           bool
	// EnableGRPCGateway is --enable-grpc-gateway: etcd's HTTP/JSON API under /v3/ on the
	// client URLs (default on, as etcd's).
	EnableGRPCGateway bool
	// Corruption checks: etcd 3.6's feature gates InitialCorruptCheck and CompactHashCheck
	// (--feature-gates), also spelled --experimental-initial-corrupt-check and
	// --experimental-compact-hash-check-enabled (deprecated).
	InitialCorruptCheck  bool
	CompactHashCheck     bool
	CompactHashCheckTime time.Duration
	FeatureGates         map[string]bool
	// WatchProgressNotifyInterval is etcd 3.6's --watch-progress-notify-interval (also
	// spelled --experimental-watch-progress-notify-interval, deprecated); 0 = 10 minutes.
	WatchProgressNotifyInterval time.Duration
	// Auth: etcd's --auth-token ("simple" or "jwt,..."), --auth-token-ttl (seconds, for
	// simple tokens) and --bcrypt-cost.
	AuthToken    string
	AuthTokenTTL uint
	BcryptCost   uint
	// AutoCompactionMode and AutoCompactionRetention are etcd's --auto-compaction-mode and
	// --auto-compaction-retention (as given: a bare number is hours or revisions).
	AutoCompactionMode      string
	AutoCompactionRetention string
	// MaxLearners is etcd's --max-learners.
	MaxLearners int
	// MaxSnapshots and MaxWALs are etcd's --max-snapshots and --max-wals (0: unlimited).
	MaxSnapshots uint
	MaxWALs      uint
	// ForceNewCluster is etcd's --force-new-cluster.
	ForceNewCluster bool
	// Built-in backups, Cairn only (etcd has none): --backup-dir (empty: off),
	// --backup-interval, --backup-retention (files kept).
	BackupDir       string
	BackupInterval  time.Duration
	BackupRetention int
	// DiskReserveBytes is Cairn's --disk-reserve-bytes (server.Config.DiskReserveBytes).
	DiskReserveBytes int64

	// Security (etcd's --cert-file ... --tls-max-version).
	ClientTLS              tlsOptions
	PeerTLS                tlsOptions
	SelfSignedCertValidity uint
	// PeerSkipClientSANVerify turns off etcd's peer-port check that a member's client
	// certificate names the address it connects from.
	PeerSkipClientSANVerify bool
	// PeerSkipMemberCertCheck (Cairn only) turns off the peer port's check that a
	// verified client certificate is valid for a peer URL of the member it claims to be.
	PeerSkipMemberCertCheck bool
	CipherSuites            []string
	TLSMinVersion           string
	TLSMaxVersion           string

	ConfigFile   string
	PrintVersion bool
	PrintHelp    bool
	// FaultInjection serves server.FaultHandler (tests only): set by
	// server.FaultInjectionEnv=1 in the environment, whatever the other settings.
	FaultInjection bool

	// initialClusterMap is InitialCluster parsed.
	initialClusterMap map[string][]url.URL
	// autoCompactionRetention is AutoCompactionRetention parsed.
	autoCompactionRetention time.Duration

	// Messages for the log once the logger exists: unknown flags, environment variables
	// used or ignored, defaults applied. Each is a message plus key/value pairs.
	notes []note
}

// tlsOptions are one port's security flags (--cert-file or --peer-cert-file, ...).
type tlsOptions struct {
	CertFile         string
	KeyFile          string
	ClientCertFile   string // peer only: the certificate a member dials others with
	ClientKeyFile    string
	TrustedCAFile    string
	ClientCertAuth   bool
	CRLFile          string
	AutoTLS          bool
	AllowedCNs       []string // peer only
	AllowedHostnames []string
}

type note struct {
	warn bool
	msg  string
	kv   []string // key, value, key, value...
}

func (c *config) info(msg string, kv ...string) { c.notes = append(c.notes, note{false, msg, kv}) }
func (c *config) warn(msg string, kv ...string) { c.notes = append(c.notes, note{true, msg, kv}) }

func newConfig() *config {
	c := &config{
		Name:                   defaultName,
		ListenClientURLs:       mustURLs(defaultListenClientURLs),
		AdvertiseClientURLs:    mustURLs(defaultAdvertiseClientURLs),
		ListenPeerURLs:         mustURLs(defaultListenPeerURLs),
		AdvertisePeerURLs:      mustURLs(defaultInitialAdvertisePeerURLs),
		InitialClusterState:    "new",
		InitialClusterToken:    defaultClusterToken,
		SnapshotCount:          defaultSnapshotCount,
		SnapshotCatchUpEntries: defaultSnapshotCatchUpEntries,
		CompactHashCheckTime:   time.Minute,
		BackupInterval:         server.DefaultBackupInterval,
		BackupRetention:        server.DefaultBackupRetention,
		HeartbeatMs:            defaultHeartbeatMs,
		ElectionMs:             defaultElectionMs,
		MaxRequestBytes:        defaultMaxRequestBytes,
		MaxTxnOps:              defaultMaxTxnOps,
		MaxConcurrentStreams:   math.MaxUint32,
		LogLevel:               defaultLogLevel,
		Logger:                 "zap",
		LogOutputs:             []string{defaultLogOutput},
		GRPCKeepAliveMinTime:   defaultGRPCKeepAliveMinTime,
		GRPCKeepAliveInterval:  defaultGRPCKeepAliveInterval,
		GRPCKeepAliveTimeout:   defaultGRPCKeepAliveTimeout,
		AuthToken:              "simple",
		AuthTokenTTL:           300,
		BcryptCost:             10,
		SelfSignedCertValidity: 1,
		TLSMinVersion:          "TLS1.2",
		EnableGRPCGateway:      true,
	}
	c.AutoCompactionMode = defaultAutoCompactionMode
	c.AutoCompactionRetention = defaultAutoCompactionRetention
	c.MaxLearners = defaultMaxLearners
	c.MaxSnapshots = defaultMaxSnapshots
	c.MaxWALs = defaultMaxWALs
	c.InitialCluster = initialClusterFromName(c.Name, c.AdvertisePeerURLs)
	return c
}

// initialClusterFromName is etcd's "<name>=<each advertised peer URL>".
func initialClusterFromName(name string, peers []url.URL) string {
	if name == "" {
		name = defaultName
	}
	parts := make([]string, 0, len(peers))
	for _, u := range peers {
		parts = append(parts, name+"="+u.String())
	}
	return strings.Join(parts, ",")
}

// urlsValue is a comma-separated URL list flag with etcd's URL rules.
type urlsValue struct {
	p *[]url.URL
}

func (v urlsValue) String() string {
	if v.p == nil {
		return ""
	}
	return urlsString(*v.p)
}

func (v urlsValue) Set(s string) error {
	us, err := parseURLs(s)
	if err != nil {
		return err
	}
	*v.p = us
	return nil
}

func urlsString(us []url.URL) string {
	ss := make([]string, len(us))
	for i := range us {
		ss[i] = us[i].String()
	}
	return strings.Join(ss, ",")
}

// parseURLs parses a comma-separated list as etcd's types.NewURLs does (same errors),
// dropping duplicates and sorting as etcd's flags do.
func parseURLs(s string) ([]url.URL, error) {
	strs := strings.Split(s, ",")
	seen := make(map[string]bool)
	var out []url.URL
	for _, in := range strs {
		in = strings.TrimSpace(in)
		u, err := url.Parse(in)
		if err != nil {
			return nil, err
		}
		switch u.Scheme {
		case "http", "https":
			if _, _, err := net.SplitHostPort(u.Host); err != nil {
				return nil, fmt.Errorf(`URL address does not have the form "host:port": %s`, in)
			}
			if u.Path != "" {
				return nil, fmt.Errorf("URL must not contain a path: %s", in)
			}
		case "unix", "unixs":
		default:
			return nil, fmt.Errorf("URL scheme must be http, https, unix, or unixs: %s", in)
		}
		if !seen[u.String()] {
			seen[u.String()] = true
			out = append(out, *u)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}

func mustURLs(s string) []url.URL {
	us, err := parseURLs(s)
	if err != nil {
		panic(err)
	}
	return us
}

// optionalURLsValue is urlsValue where an empty string means "none"
// (--listen-metrics-urls).
type optionalURLsValue struct{ urlsValue }

func (v optionalURLsValue) Set(s string) error {
	if s == "" {
		*v.p = nil
		return nil
	}
	return v.urlsValue.Set(s)
}

// listValue is a comma-separated list kept in order, empty items dropped (--cipher-suites,
// --peer-cert-allowed-cn).
type listValue struct{ p *[]string }

func (v listValue) String() string {
	if v.p == nil {
		return ""
	}
	return strings.Join(*v.p, ",")
}

func (v listValue) Set(s string) error {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	*v.p = out
	return nil
}

// stringsValue is a comma-separated list (--log-outputs).
type stringsValue struct{ p *[]string }

func (v stringsValue) String() string {
	if v.p == nil {
		return ""
	}
	return strings.Join(*v.p, ",")
}

func (v stringsValue) Set(s string) error {
	var out []string
	seen := make(map[string]bool)
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" && !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	sort.Strings(out)
	*v.p = out
	return nil
}

// selectiveValue accepts one of a fixed set (--initial-cluster-state).
type selectiveValue struct {
	p      *string
	valids []string
}

func (v selectiveValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

func (v selectiveValue) Set(s string) error {
	for _, x := range v.valids {
		if s == x {
			*v.p = s
			return nil
		}
	}
	return errors.New("invalid value")
}

func (c *config) flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("cairn", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.Name, "name", c.Name, "Human-readable name for this member.")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "Path to the data directory.")
	fs.StringVar(&c.WALDir, "wal-dir", c.WALDir, "Path to the dedicated wal directory.")
	fs.Var(urlsValue{&c.ListenClientURLs}, "listen-client-urls", "List of URLs to listen on for client traffic.")
	fs.Var(urlsValue{&c.AdvertiseClientURLs}, "advertise-client-urls", "List of this member's client URLs to advertise to the public.")
	fs.Var(urlsValue{&c.ListenPeerURLs}, "listen-peer-urls", "List of URLs to listen on for peer traffic.")
	fs.Var(urlsValue{&c.AdvertisePeerURLs}, "initial-advertise-peer-urls", "List of this member's peer URLs to advertise to the rest of the cluster.")
	fs.Var(optionalURLsValue{urlsValue{&c.ListenMetricsURLs}}, "listen-metrics-urls", "List of URLs to listen on for the /metrics and /health endpoints.")
	fs.Var(optionalURLsValue{urlsValue{&c.ListenClientHTTPURLs}}, "listen-client-http-urls", "List of URLs to listen on for http only client traffic. Enabling this flag removes http services from --listen-client-urls.")
	fs.StringVar(&c.InitialCluster, "initial-cluster", c.InitialCluster, "Initial cluster configuration for bootstrapping.")
	fs.Var(selectiveValue{&c.InitialClusterState, []string{"new", "existing"}}, "initial-cluster-state", "Initial cluster state ('new' or 'existing').")
	fs.StringVar(&c.InitialClusterToken, "initial-cluster-token", c.InitialClusterToken, "Initial cluster token for the etcd cluster during bootstrap.")
	fs.Uint64Var(&c.SnapshotCount, "snapshot-count", c.SnapshotCount, "Number of committed transactions to trigger a snapshot to disk.")
	fs.Uint64Var(&c.SnapshotCatchUpEntries, "snapshot-catchup-entries", c.SnapshotCatchUpEntries, "Number of entries for a slow follower to catch up after compacting the raft storage entries.")
	fs.Uint64Var(&c.SnapshotCatchUpEntries, "experimental-snapshot-catchup-entries", c.SnapshotCatchUpEntries, "Number of entries for a slow follower to catch up after compacting the raft storage entries. Deprecated in v3.6: use --snapshot-catchup-entries.")
	fs.UintVar(&c.HeartbeatMs, "heartbeat-interval", c.HeartbeatMs, "Time (in milliseconds) of a heartbeat interval.")
	fs.UintVar(&c.ElectionMs, "election-timeout", c.ElectionMs, "Time (in milliseconds) for an election to timeout.")
	fs.Int64Var(&c.QuotaBackendBytes, "quota-backend-bytes", c.QuotaBackendBytes, "Raise alarms when backend size exceeds the given quota. 0 means use the default quota.")
	fs.StringVar(&c.BackupDir, "backup-dir", c.BackupDir, "Cairn only: directory where this member saves a backup of its db (as etcdctl snapshot save writes it) every --backup-interval; empty means no backups.")
	fs.DurationVar(&c.BackupInterval, "backup-interval", c.BackupInterval, "Cairn only: time between backups into --backup-dir.")
	fs.IntVar(&c.BackupRetention, "backup-retention", c.BackupRetention, "Cairn only: how many of this member's newest backups --backup-dir keeps.")
	fs.Int64Var(&c.DiskReserveBytes, "disk-reserve-bytes", c.DiskReserveBytes, "Cairn only: free space in bytes the file systems of the data dir and the WAL dir must each keep; below it this member refuses puts, writing txns and lease grants (reads, deletes and compaction go on) until space returns. 0 means 80 MiB (a WAL segment and a backend commit); negative turns the check off.")
	fs.Int64Var(&c.InitialMmapSize, "initial-mmap-size", c.InitialMmapSize, "Cairn only: initial size in bytes of the backend's memory map (a commit that outgrows it waits for open reads to remap). 0 sizes it as etcd does: --quota-backend-bytes plus 10% for a quota other than the default, else 10 GiB.")
	fs.UintVar(&c.MaxRequestBytes, "max-request-bytes", c.MaxRequestBytes, "Maximum client request size in bytes the server will accept.")
	fs.UintVar(&c.MaxTxnOps, "max-txn-ops", c.MaxTxnOps, "Maximum number of operations permitted in a transaction.")
	fs.StringVar(&c.AuthToken, "auth-token", c.AuthToken, "Specify auth token specific options.")
	fs.UintVar(&c.AuthTokenTTL, "auth-token-ttl", c.AuthTokenTTL, "The lifetime in seconds of the auth token.")
	fs.UintVar(&c.BcryptCost, "bcrypt-cost", c.BcryptCost, "Specify bcrypt algorithm cost factor for auth password hashing.")
	fs.UintVar(&c.MaxConcurrentStreams, "max-concurrent-streams", c.MaxConcurrentStreams, "Maximum concurrent streams that each client can open at a time.")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "Configures log level. Only supports debug, info, warn, error, panic, or fatal.")
	fs.StringVar(&c.Logger, "logger", c.Logger, "Currently only supports 'zap' for structured logging.")
	fs.Var(stringsValue{&c.LogOutputs}, "log-outputs", "'stdout', 'stderr', 'default' (stderr), or file paths, comma separated.")
	fs.DurationVar(&c.GRPCKeepAliveMinTime, "grpc-keepalive-min-time", c.GRPCKeepAliveMinTime, "Minimum interval duration that a client should wait before pinging server.")
	fs.DurationVar(&c.GRPCKeepAliveInterval, "grpc-keepalive-interval", c.GRPCKeepAliveInterval, "Frequency duration of server-to-client ping to check if a connection is alive (0 to disable).")
	fs.DurationVar(&c.GRPCKeepAliveTimeout, "grpc-keepalive-timeout", c.GRPCKeepAliveTimeout, "Additional duration of wait before closing a non-responsive connection (0 to disable).")
	fs.DurationVar(&c.WatchProgressNotifyInterval, "watch-progress-notify-interval", c.WatchProgressNotifyInterval, "Duration of periodic watch progress notifications.")
	fs.DurationVar(&c.WatchProgressNotifyInterval, "experimental-watch-progress-notify-interval", c.WatchProgressNotifyInterval, "Duration of periodic watch progress notifications. Deprecated in v3.6: use --watch-progress-notify-interval.")
	fs.Var(featureGatesValue{&c.FeatureGates}, "feature-gates", "A set of key=value pairs that describe server level feature gates for alpha/experimental features (Cairn acts on InitialCorruptCheck and CompactHashCheck).")
	fs.BoolVar(&c.InitialCorruptCheck, "experimental-initial-corrupt-check", c.InitialCorruptCheck, "Enable to check data corruption before serving any client/peer traffic. Deprecated in v3.6: use --feature-gates=InitialCorruptCheck=true.")
	fs.BoolVar(&c.CompactHashCheck, "experimental-compact-hash-check-enabled", c.CompactHashCheck, "Enable leader to periodically check followers compaction hashes. Deprecated in v3.6: use --feature-gates=CompactHashCheck=true.")
	fs.DurationVar(&c.CompactHashCheckTime, "compact-hash-check-time", c.CompactHashCheckTime, "Duration of time between leader checks followers compaction hashes.")
	fs.DurationVar(&c.CompactHashCheckTime, "experimental-compact-hash-check-time", c.CompactHashCheckTime, "Duration of time between leader checks followers compaction hashes. Deprecated in v3.6: use --compact-hash-check-time.")
	fs.StringVar(&c.AutoCompactionRetention, "auto-compaction-retention", c.AutoCompactionRetention, "Auto compaction retention length. 0 means disable auto compaction.")
	fs.StringVar(&c.AutoCompactionMode, "auto-compaction-mode", c.AutoCompactionMode, "Interpret 'auto-compaction-retention' one of: periodic|revision. 'periodic' for duration based retention, defaulting to hours if no time unit is provided (e.g. '5m'). 'revision' for revision number based retention.")
	fs.UintVar(&c.MaxSnapshots, "max-snapshots", c.MaxSnapshots, "Maximum number of snapshot files to retain (0 is unlimited). Deprecated in v3.6 and will be decommissioned in v3.8.")
	fs.UintVar(&c.MaxWALs, "max-wals", c.MaxWALs, "Maximum number of wal files to retain (0 is unlimited).")
	fs.BoolVar(&c.ForceNewCluster, "force-new-cluster", c.ForceNewCluster, "Force to create a new one-member cluster.")
	fs.IntVar(&c.MaxLearners, "max-learners", c.MaxLearners, "Set the max number of learner members allowed in the cluster membership.")
	fs.BoolVar(&c.EnablePprof, "enable-pprof", c.EnablePprof, "Enable runtime profiling data via HTTP server. Address is at client URL + \"/debug/pprof/\"")
	fs.BoolVar(&c.EnableGRPCGateway, "enable-grpc-gateway", c.EnableGRPCGateway, "Enable GRPC gateway.")
	// Security.
	fs.StringVar(&c.ClientTLS.CertFile, "cert-file", "", "Path to the client server TLS cert file.")
	fs.StringVar(&c.ClientTLS.KeyFile, "key-file", "", "Path to the client server TLS key file.")
	fs.BoolVar(&c.ClientTLS.ClientCertAuth, "client-cert-auth", false, "Enable client cert authentication.")
	fs.StringVar(&c.ClientTLS.CRLFile, "client-crl-file", "", "Path to the client certificate revocation list file.")
	fs.Var(listValue{&c.ClientTLS.AllowedHostnames}, "client-cert-allowed-hostname", "Comma-separated list of SAN hostnames for client cert authentication.")
	fs.StringVar(&c.ClientTLS.TrustedCAFile, "trusted-ca-file", "", "Path to the client server TLS trusted CA cert file.")
	fs.BoolVar(&c.ClientTLS.AutoTLS, "auto-tls", false, "Client TLS using generated certificates.")
	fs.StringVar(&c.PeerTLS.CertFile, "peer-cert-file", "", "Path to the peer server TLS cert file.")
	fs.StringVar(&c.PeerTLS.KeyFile, "peer-key-file", "", "Path to the peer server TLS key file.")
	fs.BoolVar(&c.PeerTLS.ClientCertAuth, "peer-client-cert-auth", false, "Enable peer client cert authentication.")
	fs.StringVar(&c.PeerTLS.ClientCertFile, "peer-client-cert-file", "", "Path to an explicit peer client TLS cert file otherwise peer cert file will be used when client auth is required.")
	fs.StringVar(&c.PeerTLS.ClientKeyFile, "peer-client-key-file", "", "Path to an explicit peer client TLS key file otherwise peer key file will be used when client auth is required.")
	fs.StringVar(&c.PeerTLS.TrustedCAFile, "peer-trusted-ca-file", "", "Path to the peer server TLS trusted CA file.")
	fs.Var(listValue{&c.PeerTLS.AllowedCNs}, "peer-cert-allowed-cn", "Comma-separated list of allowed CNs for inter-peer TLS authentication.")
	fs.Var(listValue{&c.PeerTLS.AllowedHostnames}, "peer-cert-allowed-hostname", "Comma-separated list of allowed SAN hostnames for inter-peer TLS authentication.")
	fs.BoolVar(&c.PeerTLS.AutoTLS, "peer-auto-tls", false, "Peer TLS using self-generated certificates if --peer-key-file and --peer-cert-file are not provided.")
	fs.UintVar(&c.SelfSignedCertValidity, "self-signed-cert-validity", c.SelfSignedCertValidity, "The validity period of the client and peer certificates that are automatically generated by etcd when you specify ClientAutoTLS and PeerAutoTLS, the unit is year, and the default is 1.")
	fs.StringVar(&c.PeerTLS.CRLFile, "peer-crl-file", "", "Path to the peer certificate revocation list file.")
	fs.BoolVar(&c.PeerSkipClientSANVerify, "peer-skip-client-san-verification", false, "Skip verification of SAN field in client certificate for peer connections.")
	fs.BoolVar(&c.PeerSkipClientSANVerify, "experimental-peer-skip-client-san-verification", false, "Skip verification of SAN field in client certificate for peer connections. Deprecated in v3.6 and will be decommissioned in v3.7. Use '--peer-skip-client-san-verification' instead.")
	fs.BoolVar(&c.PeerSkipMemberCertCheck, "peer-skip-member-cert-check", false, "Cairn only: accept a raft stream or peer request claiming to come from a member on a connection whose verified client certificate is not valid for any of that member's peer URL hosts (certificates without SANs are never checked).")
	fs.Var(listValue{&c.CipherSuites}, "cipher-suites", "Comma-separated list of supported TLS cipher suites between client/server and peers (empty will be auto-populated by Go).")
	fs.StringVar(&c.TLSMinVersion, "tls-min-version", c.TLSMinVersion, "Minimum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3.")
	fs.StringVar(&c.TLSMaxVersion, "tls-max-version", c.TLSMaxVersion, "Maximum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3 (empty will be auto-populated by Go).")
	fs.StringVar(&c.ConfigFile, "config-file", c.ConfigFile, "Path to the server configuration file. Note that if a configuration file is provided, other command line flags and environment variables will be ignored.")
	fs.BoolVar(&c.PrintVersion, "version", c.PrintVersion, "Print the version and exit.")
	return fs
}

// parseConfig parses args (without the program name) and the environment (KEY=VALUE
// strings) as etcd does: command-line flags, else ETCD_* variables, else defaults;
// or, with --config-file (or ETCD_CONFIG_FILE), only the file. Flags Cairn does not
// know are accepted and noted as warnings. The returned config is validated.
func parseConfig(args []string, environ []string) (*config, error) {
	c := newConfig()
	defaultInitialCluster := c.InitialCluster
	fs := c.flagSet()

	known, err := c.dropUnknownFlags(fs, args)
	if err != nil {
		return nil, err
	}
	if err := fs.Parse(known); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.PrintHelp = true
			return c, nil
		}
		return nil, err
	}
	if fs.NArg() != 0 {
		return nil, fmt.Errorf("%q is not a valid flag", fs.Arg(0))
	}
	if c.PrintVersion {
		return c, nil
	}
	env := envMap(environ)
	faults := env[server.FaultInjectionEnv] == "1"
	if c.ConfigFile == "" {
		c.ConfigFile = env[flagToEnv("config-file")]
	}

	if c.ConfigFile != "" {
		fc := newConfig()
		fc.notes = c.notes
		if err := fc.loadFile(c.ConfigFile); err != nil {
			return nil, err
		}
		fc.ConfigFile = c.ConfigFile
		fc.info("loaded server configuration, other configuration command line flags and environment variables will be ignored if provided",
			"path", c.ConfigFile)
		c = fc
	} else {
		set := make(map[string]bool)
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if err := c.applyEnv(fs, set, env); err != nil {
			return nil, err
		}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		// etcd: an explicit --listen-client-urls drops the default advertise URL, so
		// it must then be given too.
		if set["listen-client-urls"] && !set["advertise-client-urls"] {
			c.AdvertiseClientURLs = nil
		}
	}

	c.FaultInjection = faults
	if faults {
		c.warn("fault injection enabled: for tests only", "environment-variable", server.FaultInjectionEnv+"=1", "path", server.FaultPath)
	}

	// etcd --name=abc alone: the default initial cluster follows the name.
	if c.Name != defaultName && c.InitialCluster == defaultInitialCluster {
		c.InitialCluster = initialClusterFromName(c.Name, c.AdvertisePeerURLs)
	}
	if c.DataDir == "" {
		c.DataDir = c.Name + ".etcd"
		c.warn("'data-dir' was empty; using default", "data-dir", c.DataDir)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// dropUnknownFlags removes flags the flag set does not define (with their value, if
// given as the next argument) and notes a warning for each.
func (c *config) dropUnknownFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") || a == "-" {
			out = append(out, args[i:]...)
			break
		}
		name := strings.TrimLeft(a, "-")
		hasValue := false
		if j := strings.Index(name, "="); j >= 0 {
			name, hasValue = name[:j], true
		}
		if name == "h" || name == "help" || fs.Lookup(name) != nil {
			out = append(out, a)
			// a known non-bool flag's separate value must not be taken for a flag
			if f := fs.Lookup(name); f != nil && !hasValue && !isBoolFlag(f) && i+1 < len(args) {
				out = append(out, args[i+1])
				i++
			}
			continue
		}
		value := ""
		if !hasValue && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			value = args[i+1]
			i++
		} else if hasValue {
			value = a[strings.Index(a, "=")+1:]
		}
		c.warn("ignoring unrecognized flag; Cairn does not implement it", "flag", "--"+name, "value", value)
	}
	return out, nil
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func flagToEnv(name string) string {
	return envPrefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func envMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

// applyEnv sets each flag not given on the command line from ETCD_<FLAG>, as etcd's
// flags.SetFlagsFromEnv does, and warns about ETCD_* variables that match no flag.
func (c *config) applyEnv(fs *flag.FlagSet, set map[string]bool, env map[string]string) error {
	if v := env["ETCD_VERSION"]; v != "" {
		c.warn("cannot set special environment variable", "key", "ETCD_VERSION", "value", v)
	}
	used := map[string]bool{"ETCD_VERSION": true}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		key := flagToEnv(f.Name)
		val := env[key]
		if val == "" || f.Name == "version" || f.Name == "config-file" {
			return
		}
		used[key] = true
		if set[f.Name] {
			if err == nil {
				err = fmt.Errorf("conflicting environment variable %q is shadowed by corresponding command-line flag (either unset environment variable or disable flag)", key)
			}
			return
		}
		if serr := fs.Set(f.Name, val); serr != nil && err == nil {
			err = fmt.Errorf("invalid value %q for %s: %w", val, key, serr)
			return
		}
		c.info("recognized and used environment variable", "variable-name", key, "variable-value", val)
	})
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if strings.HasPrefix(k, envPrefix+"_") && !used[k] && k != flagToEnv("config-file") {
			c.warn("unrecognized environment variable", "environment-variable", k+"="+env[k])
		}
	}
	return nil
}

// loadFile reads etcd's YAML configuration file (keys are the flag names).
func (c *config) loadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("error parsing config file %s: %w", path, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := c.setFileKey(k, m[k]); err != nil {
			return fmt.Errorf("config file %s: %s: %w", path, k, err)
		}
	}
	return nil
}

func (c *config) setFileKey(k string, v any) error {
	if v == nil {
		return nil // "key:" with no value keeps the default, as etcd's JSON decoding does
	}
	switch k {
	case "name":
		return asString(v, &c.Name)
	case "data-dir":
		return asString(v, &c.DataDir)
	case "wal-dir":
		return asString(v, &c.WALDir)
	case "backup-dir":
		return asString(v, &c.BackupDir)
	case "backup-interval":
		d, err := asDuration(v)
		if err != nil {
			return err
		}
		c.BackupInterval = d
	case "backup-retention":
		n, err := asInt(v)
		if err != nil {
			return fmt.Errorf("invalid value %v", v)
		}
		c.BackupRetention = int(n)
	case "initial-cluster":
		return asString(v, &c.InitialCluster)
	case "initial-cluster-state":
		var s string
		if err := asString(v, &s); err != nil {
			return err
		}
		if s == "" {
			s = "new"
		}
		c.InitialClusterState = s // checked in validate, as etcd does
		return nil
	case "initial-cluster-token":
		return asString(v, &c.InitialClusterToken)
	case "log-level":
		return asString(v, &c.LogLevel)
	case "logger":
		return asString(v, &c.Logger)
	case "client-transport-security", "peer-transport-security":
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("expected a mapping, got %v", v)
		}
		o := &c.ClientTLS
		if k == "peer-transport-security" {
			o = &c.PeerTLS
		}
		return c.setTransportSecurity(k, o, m)
	case "self-signed-cert-validity":
		n, err := asInt(v)
		if err != nil || n < 0 {
			return fmt.Errorf("invalid value %v", v)
		}
		c.SelfSignedCertValidity = uint(n)
	case "cipher-suites":
		ss, err := asStrings(v)
		if err != nil {
			return err
		}
		c.CipherSuites = ss
	case "tls-min-version":
		return asString(v, &c.TLSMinVersion)
	case "tls-max-version":
		return asString(v, &c.TLSMaxVersion)
	case "listen-client-urls", "advertise-client-urls", "listen-peer-urls", "initial-advertise-peer-urls", "listen-metrics-urls", "listen-client-http-urls":
		var s string
		if err := asString(v, &s); err != nil {
			return err
		}
		if s == "" {
			return nil
		}
		us, err := parseURLs(s)
		if err != nil {
			return fmt.Errorf("unexpected error setting up %s: %w", k, err)
		}
		switch k {
		case "listen-client-urls":
			c.ListenClientURLs = us
		case "advertise-client-urls":
			c.AdvertiseClientURLs = us
		case "listen-peer-urls":
			c.ListenPeerURLs = us
		case "initial-advertise-peer-urls":
			c.AdvertisePeerURLs = us
		case "listen-metrics-urls":
			c.ListenMetricsURLs = us
		case "listen-client-http-urls":
			c.ListenClientHTTPURLs = us
		}
		return nil
	case "log-outputs":
		switch x := v.(type) {
		case string:
			return stringsValue{&c.LogOutputs}.Set(x)
		case []any:
			var out []string
			for _, e := range x {
				s, ok := e.(string)
				if !ok {
					return fmt.Errorf("expected a list of strings, got %v", v)
				}
				out = append(out, s)
			}
			c.LogOutputs = out
			return nil
		default:
			return fmt.Errorf("expected a list of strings, got %v", v)
		}
	case "snapshot-count":
		n, err := asInt(v)
		if err != nil || n < 0 {
			return fmt.Errorf("invalid value %v", v)
		}
		c.SnapshotCount = uint64(n)
	case "snapshot-catchup-entries", "experimental-snapshot-catchup-entries":
		n, err := asInt(v)
		if err != nil || n < 0 {
			return fmt.Errorf("invalid value %v", v)
		}
		c.SnapshotCatchUpEntries = uint64(n)
	case "heartbeat-interval", "election-timeout", "max-request-bytes", "max-txn-ops", "max-concurrent-streams":
		n, err := asInt(v)
		if err != nil || n < 0 {
			return fmt.Errorf("invalid value %v", v)
		}
		switch k {
		case "heartbeat-interval":
			c.HeartbeatMs = uint(n)
		case "election-timeout":
			c.ElectionMs = uint(n)
		case "max-request-bytes":
			c.MaxRequestBytes = uint(n)
		case "max-txn-ops":
			c.MaxTxnOps = uint(n)
		case "max-concurrent-streams":
			c.MaxConcurrentStreams = uint(n)
		}
	case "auth-token":
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("expected a string, got %v", v)
		}
		c.AuthToken = s
	case "auth-token-ttl", "bcrypt-cost":
		n, err := asInt(v)
		if err != nil || n < 0 {
			return fmt.Errorf("invalid value %v", v)
		}
		if k == "auth-token-ttl" {
			c.AuthTokenTTL = uint(n)
		} else {
			c.BcryptCost = uint(n)
		}
	case "quota-backend-bytes", "initial-mmap-size", "disk-reserve-bytes":
		n, err := asInt(v)
		if err != nil {
			return fmt.Errorf("invalid value %v", v)
		}
		switch k {
		case "initial-mmap-size":
			c.InitialMmapSize = n
		case "disk-reserve-bytes":
			c.DiskReserveBytes = n
		default:
			c.QuotaBackendBytes = n
		}
	case "grpc-keepalive-min-time", "grpc-keepalive-interval", "grpc-keepalive-timeout",
		"watch-progress-notify-interval", "experimental-watch-progress-notify-interval":
		d, err := asDuration(v)
		if err != nil {
			return err
		}
		switch k {
		case "watch-progress-notify-interval", "experimental-watch-progress-notify-interval":
			c.WatchProgressNotifyInterval = d
		case "grpc-keepalive-min-time":
			c.GRPCKeepAliveMinTime = d
		case "grpc-keepalive-interval":
			c.GRPCKeepAliveInterval = d
		case "grpc-keepalive-timeout":
			c.GRPCKeepAliveTimeout = d
		}
	case "peer-skip-client-san-verification", "experimental-peer-skip-client-san-verification":
		b, ok := v.(bool)
		if !ok {
			return fmt.Errorf("expected a boolean, got %v", v)
		}
		c.PeerSkipClientSANVerify = b
	case "peer-skip-member-cert-check":
		b, ok := v.(bool)
		if !ok {
			return fmt.Errorf("expected a boolean, got %v", v)
		}
		c.PeerSkipMemberCertCheck = b
	case "enable-pprof", "enable-grpc-gateway", "experimental-initial-corrupt-check", "experimental-compact-hash-check-enabled":
		b, ok := v.(bool)
		if !ok {
			return fmt.Errorf("expected a boolean, got %v", v)
		}
		switch k {
		case "enable-pprof":
			c.EnablePprof = b
		case "enable-grpc-gateway":
			c.EnableGRPCGateway = b
		case "experimental-initial-corrupt-check":
			c.InitialCorruptCheck = b
		default:
			c.CompactHashCheck = b
		}
	case "compact-hash-check-time", "experimental-compact-hash-check-time":
		d, err := asDuration(v)
		if err != nil {
			return err
		}
		c.CompactHashCheckTime = d
	case "force-new-cluster":
		b, ok := v.(bool)
		if !ok {
			return fmt.Errorf("expected a boolean, got %v", v)
		}
		c.ForceNewCluster = b
	case "max-snapshots", "max-wals":
		n, err := asInt(v)
		if err != nil || n < 0 {
			return fmt.Errorf("invalid value %v", v)
		}
		if k == "max-snapshots" {
			c.MaxSnapshots = uint(n)
		} else {
			c.MaxWALs = uint(n)
		}
	case "max-learners":
		n, err := asInt(v)
		if err != nil {
			return fmt.Errorf("invalid value %v", v)
		}
		c.MaxLearners = int(n)
	case "auto-compaction-mode":
		return asString(v, &c.AutoCompactionMode)
	case "auto-compaction-retention":
		return asString(v, &c.AutoCompactionRetention)
	case "feature-gates":
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("expected a string, got %v", v)
		}
		return featureGatesValue{&c.FeatureGates}.Set(str)
	default:
		c.warn("ignoring unrecognized config file key; Cairn does not implement it", "key", k)
	}
	return nil
}

// setTransportSecurity reads etcd's client-transport-security / peer-transport-security
// mapping: etcd 3.6's keys (cert-file, key-file, client-cert-file, client-key-file,
// client-cert-auth, trusted-ca-file, auto-tls); the CRL files and allowed CNs/hostnames
// have no file key in etcd either.
func (c *config) setTransportSecurity(section string, o *tlsOptions, m map[string]any) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := m[k]
		if v == nil {
			continue
		}
		var err error
		switch k {
		case "cert-file":
			err = asString(v, &o.CertFile)
		case "key-file":
			err = asString(v, &o.KeyFile)
		case "client-cert-file":
			err = asString(v, &o.ClientCertFile)
		case "client-key-file":
			err = asString(v, &o.ClientKeyFile)
		case "trusted-ca-file":
			err = asString(v, &o.TrustedCAFile)
		case "client-cert-auth", "auto-tls":
			b, ok := v.(bool)
			if !ok {
				return fmt.Errorf("%s: expected a boolean, got %v", k, v)
			}
			if k == "auto-tls" {
				o.AutoTLS = b
			} else {
				o.ClientCertAuth = b
			}
		default:
			c.warn("ignoring unrecognized config file key; Cairn does not implement it", "key", section+"."+k)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	return nil
}

// asStrings reads a YAML list of strings, or one comma-separated string.
func asStrings(v any) ([]string, error) {
	switch x := v.(type) {
	case string:
		var out []string
		err := listValue{&out}.Set(x)
		return out, err
	case []any:
		var out []string
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("expected a list of strings, got %v", v)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("expected a list of strings, got %v", v)
}

func asString(v any, p *string) error {
	switch x := v.(type) {
	case string:
		*p = x
	case int, int64, float64, bool:
		*p = fmt.Sprint(x)
	default:
		return fmt.Errorf("expected a string, got %v", v)
	}
	return nil
}

func asInt(v any) (int64, error) {
	switch x := v.(type) {
	case int:
		return int64(x), nil
	case int64:
		return x, nil
	case uint64:
		return int64(x), nil
	case float64:
		if x != float64(int64(x)) {
			return 0, fmt.Errorf("not an integer: %v", x)
		}
		return int64(x), nil
	case string:
		return strconv.ParseInt(x, 10, 64)
	}
	return 0, fmt.Errorf("not an integer: %v", v)
}

// asDuration reads a duration as etcd's file does (an integer of nanoseconds, since
// its config is decoded as JSON into time.Duration), or as a Go duration string.
func asDuration(v any) (time.Duration, error) {
	if s, ok := v.(string); ok {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return d, nil
	}
	n, err := asInt(v)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %v", v)
	}
	return time.Duration(n), nil
}

// validate checks the configuration as etcd's embed.Config.Validate does, in its order
// and with its messages, plus what Cairn does not serve yet (unix sockets).
func (c *config) validate() error {
	switch c.Logger {
	case "zap":
	case "capnslog":
		return fmt.Errorf("--logger=capnslog is removed in v3.5")
	default:
		return fmt.Errorf("unknown logger option %q", c.Logger)
	}
	if len(c.LogOutputs) == 0 {
		c.LogOutputs = []string{defaultLogOutput}
	}
	if len(c.LogOutputs) > 1 {
		for _, v := range c.LogOutputs {
			if v == defaultLogOutput {
				return fmt.Errorf("multi logoutput for %q is not supported yet", defaultLogOutput)
			}
		}
	}
	var lvl zapcore.Level
	if err := lvl.Set(c.LogLevel); err != nil {
		return fmt.Errorf("invalid --log-level %q: only debug, info, warn, error, dpanic, panic or fatal", c.LogLevel)
	}
	for _, us := range [][]url.URL{c.ListenPeerURLs, c.ListenClientURLs, c.ListenClientHTTPURLs, c.ListenMetricsURLs} {
		if err := checkBindURLs(us); err != nil {
			return err
		}
	}
	if err := checkHostURLs(c.AdvertisePeerURLs); err != nil {
		return fmt.Errorf(`--initial-advertise-peer-urls %q must be "host:port" (%w)`, urlsString(c.AdvertisePeerURLs), err)
	}
	if err := checkHostURLs(c.AdvertiseClientURLs); err != nil {
		return fmt.Errorf(`--advertise-client-urls %q must be "host:port" (%w)`, urlsString(c.AdvertiseClientURLs), err)
	}
	if c.InitialClusterState != "new" && c.InitialClusterState != "existing" {
		return fmt.Errorf("unexpected clusterState %q", c.InitialClusterState)
	}
	if c.HeartbeatMs == 0 {
		return fmt.Errorf("--heartbeat-interval must be >0 (set to %dms)", c.HeartbeatMs)
	}
	if c.ElectionMs == 0 {
		return fmt.Errorf("--election-timeout must be >0 (set to %dms)", c.ElectionMs)
	}
	if 5*c.HeartbeatMs > c.ElectionMs {
		return fmt.Errorf("--election-timeout[%vms] should be at least as 5 times as --heartbeat-interval[%vms]", c.ElectionMs, c.HeartbeatMs)
	}
	if c.ElectionMs > maxElectionMs {
		return fmt.Errorf("--election-timeout[%vms] is too long, and should be set less than %vms", c.ElectionMs, maxElectionMs)
	}
	if c.BackupInterval <= 0 {
		return fmt.Errorf("--backup-interval must be > 0 (set to %v)", c.BackupInterval)
	}
	if c.BackupRetention < 1 {
		return fmt.Errorf("--backup-retention must be >= 1 (set to %d)", c.BackupRetention)
	}
	if c.InitialMmapSize < 0 {
		return fmt.Errorf("--initial-mmap-size must be >= 0 (set to %d)", c.InitialMmapSize)
	}
	if c.ListenClientURLs != nil && c.AdvertiseClientURLs == nil {
		return errors.New("--advertise-client-urls is required when --listen-client-urls is set explicitly")
	}
	if c.InitialCluster == "" {
		return errors.New("--initial-cluster must be set (discovery is not supported)")
	}
	m, err := parseInitialCluster(c.InitialCluster)
	if err != nil {
		return fmt.Errorf("invalid --initial-cluster %q: %w", c.InitialCluster, err)
	}
	c.initialClusterMap = m
	if err := c.validateOps(); err != nil {
		return err
	}

	if err := c.validateTLS(); err != nil {
		return err
	}

	// What Cairn does not serve yet.
	for _, l := range []struct {
		flag string
		us   []url.URL
	}{
		{"--listen-client-urls", c.ListenClientURLs},
		{"--listen-client-http-urls", c.ListenClientHTTPURLs},
		{"--listen-peer-urls", c.ListenPeerURLs},
		{"--listen-metrics-urls", c.ListenMetricsURLs},
	} {
		for _, u := range l.us {
			if u.Scheme != "http" && u.Scheme != "https" {
				return fmt.Errorf("%s %q: only http:// and https:// URLs are supported by Cairn (unix sockets are not)", l.flag, u.String())
			}
		}
	}
	return nil
}

// validateTLS checks the TLS versions and cipher suites as etcd's flag verification
// does (same messages), and that every https:// URL has a certificate.
func (c *config) validateTLS() error {
	minV, err := tlsutil.ParseVersion(c.TLSMinVersion)
	if err != nil {
		return err
	}
	maxV, err := tlsutil.ParseVersion(c.TLSMaxVersion)
	if err != nil {
		return err
	}
	if maxV != 0 && minV > maxV {
		return fmt.Errorf("min version (%s) is greater than max version (%s)", c.TLSMinVersion, c.TLSMaxVersion)
	}
	if minV == tls.VersionTLS13 && len(c.CipherSuites) > 0 {
		return errors.New("cipher suites cannot be configured when only TLS1.3 is enabled")
	}
	if _, err := tlsutil.ParseCipherSuites(c.CipherSuites); err != nil {
		return err
	}
	clientCert := !c.ClientTLS.empty() || c.ClientTLS.AutoTLS
	for _, us := range [][]url.URL{c.ListenClientURLs, c.ListenClientHTTPURLs} {
		for _, u := range us {
			if u.Scheme == "https" && !clientCert {
				return fmt.Errorf("TLS key/cert (--cert-file, --key-file) must be provided for client url %s with HTTPS scheme", u.String())
			}
		}
	}
	for _, u := range c.ListenMetricsURLs {
		if u.Scheme == "https" && !clientCert {
			return errors.New("client TLS key/cert (--cert-file, --key-file) must be provided for metrics secure url")
		}
	}
	for _, u := range c.ListenPeerURLs {
		if u.Scheme == "https" && c.PeerTLS.empty() && !c.PeerTLS.AutoTLS {
			return fmt.Errorf("cannot listen on TLS for %s: KeyFile and CertFile are not presented", u.Host)
		}
	}
	return nil
}

func (o *tlsOptions) empty() bool { return o.CertFile == "" && o.KeyFile == "" }

// parseInitialCluster parses "name=url,name=url2,..." as etcd's types.NewURLsMap does.
func parseInitialCluster(s string) (map[string][]url.URL, error) {
	raw := make(map[string][]string)
	var order []string
	for _, kv := range strings.Split(s, ",") {
		if kv == "" {
			continue
		}
		name, u, _ := strings.Cut(kv, "=")
		if _, ok := raw[name]; !ok {
			order = append(order, name)
		}
		raw[name] = append(raw[name], u)
	}
	out := make(map[string][]url.URL, len(raw))
	for _, name := range order {
		us, err := parseURLs(strings.Join(raw[name], ","))
		if err != nil {
			return nil, err
		}
		out[name] = us
	}
	return out, nil
}

// checkBindURLs is etcd's: a listen URL's host must be an IP or "localhost".
func checkBindURLs(urls []url.URL) error {
	for _, u := range urls {
		if u.Scheme == "unix" || u.Scheme == "unixs" {
			continue
		}
		host, _, err := net.SplitHostPort(u.Host)
		if err != nil {
			return err
		}
		if host == "localhost" {
			continue
		}
		if net.ParseIP(host) == nil {
			return fmt.Errorf("expected IP in URL for binding (%s)", u.String())
		}
	}
	return nil
}

func checkHostURLs(urls []url.URL) error {
	for _, u := range urls {
		host, _, err := net.SplitHostPort(u.Host)
		if err != nil {
			return err
		}
		if host == "" {
			return fmt.Errorf("unexpected empty host (%s)", u.String())
		}
	}
	return nil
}

// versionText is etcd's --version output plus Cairn's own version.
func versionText() string {
	return fmt.Sprintf("etcd Version: %s\nGit SHA: %s\nGo Version: %s\nGo OS/Arch: %s/%s\nCairn Version: %s\n",
		etcdVersion, gitSHA, runtime.Version(), runtime.GOOS, runtime.GOARCH, cairnVersion)
}

func usageText(fs *flag.FlagSet) string {
	var b strings.Builder
	b.WriteString("Usage:\n\n  cairn [flags]\n    Start a Cairn (etcd-compatible) server.\n\n  cairn --version\n    Show the version.\n\n  cairn -h | --help\n    Show the help information.\n\nFlags:\n")
	fs.VisitAll(func(f *flag.Flag) {
		fmt.Fprintf(&b, "  --%s", f.Name)
		if f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(&b, " (default %q)", f.DefValue)
		}
		fmt.Fprintf(&b, "\n      %s\n", f.Usage)
	})
	return b.String()
}

// featureGates are etcd 3.6's server feature gates; Cairn acts on InitialCorruptCheck and
// CompactHashCheck and accepts the others (its behaviour does not depend on them).
var featureGates = []string{"AllAlpha", "AllBeta", "CompactHashCheck", "InitialCorruptCheck", "LeaseCheckpoint",
	"LeaseCheckpointPersist", "SetMemberLocalAddr", "StopGRPCServiceOnDefrag", "TxnModeWriteWithSharedBuffer"}

// featureGatesValue parses --feature-gates "Name=true,Other=false" as etcd does.
type featureGatesValue struct{ m *map[string]bool }

func (f featureGatesValue) String() string {
	if f.m == nil {
		return ""
	}
	var parts []string
	for k, v := range *f.m {
		parts = append(parts, fmt.Sprintf("%s=%v", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (f featureGatesValue) Set(s string) error {
	if *f.m == nil {
		*f.m = map[string]bool{}
	}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("missing bool value for %s", k)
		}
		k = strings.TrimSpace(k)
		if !slices.Contains(featureGates, k) {
			return fmt.Errorf("unrecognized feature gate: %s", k)
		}
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("invalid value of %s=%s, err: %v", k, v, err)
		}
		(*f.m)[k] = b
	}
	return nil
}

// validateOps checks the operations options (auto-compaction, file retention, learners)
// with etcd's messages: the mode as embed.Config.Validate does, the retention as
// etcd's server start does.
func (c *config) validateOps() error {
	switch c.AutoCompactionMode {
	case "periodic", "revision":
	case "":
		return errors.New("undefined auto-compaction-mode")
	default:
		return fmt.Errorf("unknown auto-compaction-mode %q", c.AutoCompactionMode)
	}
	d, err := server.ParseCompactionRetention(c.AutoCompactionMode, c.AutoCompactionRetention)
	if err != nil {
		return err
	}
	c.autoCompactionRetention = d
	// etcd starts, then fails its bootstrap with this (0 learners is already too many).
	if c.MaxLearners < 0 {
		return errs.ErrTooManyLearners
	}
	return nil
}

// serverMaxLearners maps --max-learners to server.Config's (where 0 means the default and
// a negative value none).
func serverMaxLearners(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// serverFileLimit maps --max-snapshots / --max-wals (0: unlimited) to server.Config's
// (0: the default, negative: unlimited).
func serverFileLimit(n uint) int {
	if n == 0 {
		return -1
	}
	return int(min(n, uint(math.MaxInt32)))
}
