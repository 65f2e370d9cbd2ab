package server

import (
	"crypto/tls"
	"net/url"
	"time"

	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/fsutil"
)

// Config is everything a member needs to start. cmd/cairn fills it from etcd-compatible
// flags, ETCD_* environment variables and an etcd YAML config file.
type Config struct {
	Name    string
	DataDir string
	WALDir  string // empty: <DataDir>/member/wal

	ListenClientURLs    []url.URL
	AdvertiseClientURLs []url.URL
	ListenPeerURLs      []url.URL
	AdvertisePeerURLs   []url.URL
	ListenMetricsURLs   []url.URL

	InitialCluster      map[string][]url.URL // member name -> peer URLs
	InitialClusterState string               // "new" or "existing"
	InitialClusterToken string

	SnapshotCount uint64
	// SnapshotCatchUpEntries is how many requests' entries the log keeps behind each
	// snapshot, for followers that lag a little (etcd's --snapshot-catchup-entries; the
	// requests of a batched entry each count, as SnapshotCount's do); 0 means 5000.
	SnapshotCatchUpEntries uint64
	HeartbeatInterval      time.Duration
	ElectionTimeout        time.Duration

	QuotaBackendBytes int64
	MaxRequestBytes   uint
	MaxTxnOps         uint
	// InitialMmapSize is the initial size in bytes of the backend's memory map, so a
	// commit that grows the db does not remap it (waiting for every open read, such as a
	// snapshot being sent). 0 sizes it as etcd does: QuotaBackendBytes plus 10% for a
	// quota other than the default, else DefaultInitialMmapSize.
	InitialMmapSize int64

	// GRPCKeepAliveMinTime is the least interval a client may ping at (etcd:
	// --grpc-keepalive-min-time); kube-apiserver pings every 30 s.
	GRPCKeepAliveMinTime  time.Duration
	GRPCKeepAliveInterval time.Duration
	GRPCKeepAliveTimeout  time.Duration

	EnablePprof bool

	// AuthToken is --auth-token ("simple", or "jwt,pub-key=...,priv-key=...,sign-method=...,
	// ttl=..."); AuthTokenTTL is --auth-token-ttl for simple tokens (0: 300 s); BcryptCost
	// is --bcrypt-cost (0: 10).
	AuthToken    string
	AuthTokenTTL time.Duration
	BcryptCost   int
	// ClientCertAuth is --client-cert-auth: a client that sends no token is the user
	// its verified certificate's common name names.
	ClientCertAuth bool
	// PeerDialTLS is the TLS configuration this member dials https:// peer URLs with
	// (--peer-cert-file etc.); nil dials them with Go's defaults.
	PeerDialTLS *tls.Config
	// PeerSkipMemberCertCheck turns off the peer port's check that a connection's
	// verified client certificate is valid for a peer URL of the member it claims to be
	// (raftnode's CheckMemberCert; Cairn's --peer-skip-member-cert-check).
	PeerSkipMemberCertCheck bool

	// InitialCorruptCheck makes the caller compare this member's HashKV with its peers'
	// before serving (CheckInitialHashKV); CompactHashCheck makes the leader compare the
	// members' hashes at the latest compaction every CompactHashCheckTime (default 1m)
	// and raise the CORRUPT alarm on a mismatch.
	InitialCorruptCheck  bool
	CompactHashCheck     bool
	CompactHashCheckTime time.Duration

	// LeaseCheckpointInterval is how often the leader records each lease's remaining TTL
	// through raft (etcd's LeaseCheckpoint feature), so a leader change or a restart
	// resumes a lease from its checkpointed remaining TTL instead of a full TTL.
	// 0 means DefaultLeaseCheckpointInterval; a negative value turns checkpointing off.
	LeaseCheckpointInterval time.Duration

	// AutoCompactionMode is etcd's --auto-compaction-mode (CompactorModePeriodic, the
	// default when empty, or CompactorModeRevision); AutoCompactionRetention is
	// --auto-compaction-retention as ParseCompactionRetention reads it (a duration, or a
	// revision count in revision mode). 0 turns auto-compaction off.
	AutoCompactionMode      string
	AutoCompactionRetention time.Duration

	// MaxLearners is how many learners the cluster may have (etcd's --max-learners),
	// checked when a learner is added, by the member asked and again by every member when
	// the change is applied. 0 means DefaultMaxLearners; a negative value allows none
	// (etcd's --max-learners=0).
	MaxLearners int

	// MaxSnapshots and MaxWALs are etcd's --max-snapshots and --max-wals: how many
	// snapshot files and WAL segments the member keeps (WAL segments only while the
	// newest snapshot does not need them). 0 means 5, etcd's default; a negative value
	// keeps them all (etcd's 0).
	MaxSnapshots int
	MaxWALs      int

	// ForceNewCluster restarts an existing member as a one-member cluster (etcd's
	// --force-new-cluster): committed conf changes removing every other member are
	// written to its own log at start, so it keeps all its data and leads alone. Ignored
	// for a new member.
	ForceNewCluster bool

	// BackupDir, if set, is where the member saves a backup of its db every
	// BackupInterval (default DefaultBackupInterval), keeping the newest BackupRetention
	// (default DefaultBackupRetention) files: Cairn's --backup-dir, --backup-interval and
	// --backup-retention.
	BackupDir       string
	BackupInterval  time.Duration
	BackupRetention int

	// DiskReserveBytes is Cairn's --disk-reserve-bytes: the free space the file systems
	// of the data dir and the WAL dir must each keep; below it the member refuses client
	// writes until space returns (see diskguard.go). 0 means defaultDiskReserve(); a
	// negative value turns the free-space check off (the refusals while a write that
	// failed for lack of space is retried stay).
	DiskReserveBytes int64
	// DiskCheckInterval is how often the free space is read (0: DefaultDiskCheckInterval).
	DiskCheckInterval time.Duration
	// FreeBytes reads a directory's free space (nil: fsutil.FreeBytes, statfs); tests
	// give a fake disk.
	FreeBytes func(dir string) (uint64, error)

	// VersionMonitorInterval is how often the leader moves the cluster version toward
	// what it should be: the downgrade job's target while one is enabled, 3.6.0 otherwise
	// (0: DefaultVersionMonitorInterval).
	VersionMonitorInterval time.Duration

	Logger *zap.Logger
}

// quota is QuotaBackendBytes: 0 means etcd's default, a negative value no quota.
func (c *Config) quota() int64 {
	if c.QuotaBackendBytes != 0 {
		return c.QuotaBackendBytes
	}
	return DefaultQuotaBackendBytes
}

// Defaults as etcd 3.6 has them.
const (
	DefaultName          = "default"
	DefaultSnapshotCount = 10000
	// DefaultSnapshotCatchUpEntries: a slightly lagging follower catches up from the log
	// kept behind a snapshot instead of a whole snapshot (etcd's default).
	DefaultSnapshotCatchUpEntries = 5000
	DefaultHeartbeatInterval      = 100 * time.Millisecond
	DefaultElectionTimeout        = 1000 * time.Millisecond
	DefaultQuotaBackendBytes      = 2 * 1024 * 1024 * 1024
	DefaultMaxRequestBytes        = 1.5 * 1024 * 1024
	DefaultInitialMmapSize        = 10 * 1024 * 1024 * 1024
	DefaultMaxTxnOps              = 128
	DefaultClusterToken           = "etcd-cluster"
	// DefaultLeaseCheckpointInterval is etcd's lease checkpoint interval. (etcd 3.6
	// checkpoints only behind --feature-gates=LeaseCheckpoint=true; Cairn always does.)
	DefaultLeaseCheckpointInterval = 5 * time.Minute
	DefaultCompactHashCheckTime    = time.Minute
	DefaultBackupInterval          = time.Hour
	DefaultBackupRetention         = 24
	DefaultDiskCheckInterval       = time.Second
	// DefaultVersionMonitorInterval is etcd's: its leader checks the cluster version every
	// 4 s (rafthttp.ConnWriteTimeout - 1 s).
	DefaultVersionMonitorInterval = 4 * time.Second
	// DefaultMaxLearners is etcd's default --max-learners.
	DefaultMaxLearners = 1
)

// MemberDir is where a member keeps its state: <data-dir>/member, as etcd does.
func (c *Config) MemberDir() string { return c.DataDir + "/member" }

// WALPath is the WAL directory: --wal-dir if set, else <data-dir>/member/wal.
func (c *Config) WALPath() string {
	if c.WALDir != "" {
		return c.WALDir
	}
	return c.MemberDir() + "/wal"
}

// SnapPath is the raft snapshot directory.
func (c *Config) SnapPath() string { return c.MemberDir() + "/snap" }

// BackendPath is the bbolt file, at etcd's location so etcd tooling finds it.
func (c *Config) BackendPath() string { return c.SnapPath() + "/db" }

// withDefaults fills every unset field with etcd's default, so a Config built in code
// behaves like the binary started with no flags.
func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.SnapshotCount == 0 {
		c.SnapshotCount = DefaultSnapshotCount
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = DefaultElectionTimeout
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.MaxTxnOps == 0 {
		c.MaxTxnOps = DefaultMaxTxnOps
	}
	if c.InitialClusterToken == "" {
		c.InitialClusterToken = DefaultClusterToken
	}
	if c.LeaseCheckpointInterval == 0 {
		c.LeaseCheckpointInterval = DefaultLeaseCheckpointInterval
	}
	if c.BackupInterval <= 0 {
		c.BackupInterval = DefaultBackupInterval
	}
	if c.BackupRetention <= 0 {
		c.BackupRetention = DefaultBackupRetention
	}
	if c.DiskCheckInterval <= 0 {
		c.DiskCheckInterval = DefaultDiskCheckInterval
	}
	if c.FreeBytes == nil {
		c.FreeBytes = fsutil.FreeBytes
	}
	if c.DiskReserveBytes == 0 {
		c.DiskReserveBytes = defaultDiskReserve()
	}
	if c.VersionMonitorInterval <= 0 {
		c.VersionMonitorInterval = DefaultVersionMonitorInterval
	}
	if c.CompactHashCheckTime <= 0 {
		c.CompactHashCheckTime = DefaultCompactHashCheckTime
	}
	if c.InitialClusterState == "" {
		c.InitialClusterState = "new"
	}
	if c.MaxLearners == 0 {
		c.MaxLearners = DefaultMaxLearners
	}
	if c.AutoCompactionMode == "" {
		c.AutoCompactionMode = CompactorModePeriodic
	}
	if c.InitialMmapSize <= 0 {
		c.InitialMmapSize = DefaultInitialMmapSize
		if q := c.QuotaBackendBytes; q > 0 && q != DefaultQuotaBackendBytes {
			c.InitialMmapSize = q + q/10 // etcd: room for 10% over the quota, to disarm
		}
	}
	return c
}
