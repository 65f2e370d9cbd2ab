package server

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-kv/cairn/auth"
	"github.com/cairn-kv/cairn/lease"
	"github.com/cairn-kv/cairn/mvcc"
	"github.com/cairn-kv/cairn/raftnode"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/raft/v3"
	"go.uber.org/zap"
)

// maxGapBetweenApplyAndCommit bounds how far the apply loop may fall behind the log
// before new proposals are refused with "too many requests".
const maxGapBetweenApplyAndCommit = 5000

// Server is one member.
type Server struct {
	cfg Config
	lg  *zap.Logger

	id        uint64
	clusterID uint64
	members   *membership

	store  *mvcc.Store
	lessor *lease.Lessor
	peers  *raftnode.PeerTransport
	node   *raftnode.Node

	proposals *proposalWaiters
	applied   atomic.Uint64
	appliedW  *appliedWaiters
	reads     *readIndexBatcher
	batcher   *proposalBatcher
	expiry    *requestExpiry // the request timeout of proposals
	ids       *idGenerator
	leaseFwd  *leaseForwarder // connections to the leader for forwarded lease requests
	alarms    *alarmStore
	versions  versionState
	auth      *auth.Store
	// authFailures limits failed authentications per client address.
	authFailures *auth.FailureLimiter

	// snapshotRequests carries the transport's requests for a snapshot to send to a
	// follower to the apply loop.
	snapshotRequests chan snapshotRequest

	// Owned by the apply loop.
	retention *logRetention // requests in the applied log: when to snapshot, what to keep
	// snapRetryAt: no snapshot before it (one failed for lack of disk space).
	snapRetryAt time.Time
	// replayMembership says the in-memory membership starts from the snapshot's (or
	// empty, with the whole log to replay), so replayed conf changes are validated and
	// applied to it again; otherwise it was loaded from the store.
	replayMembership bool
	// stopErr is why the member stopped on its own, if it did (e.g. ErrMemberRemoved).
	stopErr atomic.Pointer[error]
	// storeIndex is the store's consistent index at start: raft hands out again the
	// entries after its newest snapshot, and those up to here are already in the store.
	storeIndex uint64

	reg     *prometheus.Registry
	metrics *serverMetrics
	// disk refuses client writes while a disk the member writes to is full.
	disk *diskGuard

	readyOnce sync.Once
	readyc    chan struct{}
	stopOnce  sync.Once
	stopping  chan struct{}
	donec     chan struct{}
}

// New opens (or creates) the member's storage, replays what the store has not applied
// yet and starts raft. The member serves once ReadyNotify is closed.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	lg := cfg.Logger
	if lg == nil {
		lg = zap.NewNop()
		cfg.Logger = lg
	}
	if err := os.MkdirAll(cfg.SnapPath(), 0o700); err != nil {
		return nil, fmt.Errorf("server: create %s: %w", cfg.SnapPath(), err)
	}
	persisted, err := raftnode.LoadPersisted(lg, cfg.WALPath(), cfg.SnapPath())
	if err != nil {
		return nil, err
	}
	store, err := mvcc.Open(lg, cfg.BackendPath(), mvcc.Config{InitialMmapSize: int(min(cfg.InitialMmapSize, math.MaxInt))})
	if err != nil {
		if persisted != nil {
			persisted.WAL.Close()
		}
		return nil, fmt.Errorf("server: open backend: %w", err)
	}
	s := &Server{
		cfg:              cfg,
		lg:               lg,
		members:          newMembership(),
		store:            store,
		lessor:           lease.New(lease.Config{MinTTL: minLeaseTTL(cfg)}),
		proposals:        newProposalWaiters(),
		leaseFwd:         newLeaseForwarder(),
		alarms:           newAlarmStore(),
		snapshotRequests: make(chan snapshotRequest),
		readyc:           make(chan struct{}),
		stopping:         make(chan struct{}),
		donec:            make(chan struct{}),
	}
	s.authFailures = auth.NewFailureLimiter(authFailureBurst, authFailureRefill, nil)
	if s.auth, err = newAuthStore(cfg, lg, s.waitApplied); err != nil {
		if persisted != nil {
			persisted.WAL.Close()
		}
		store.Close()
		return nil, err
	}
	s.members.maxLearners = max(cfg.MaxLearners, 0)
	rcfg := raftnode.Config{
		Logger:         lg,
		TickInterval:   cfg.HeartbeatInterval,
		HeartbeatTicks: 1,
		ElectionTicks:  int(cfg.ElectionTimeout / cfg.HeartbeatInterval),
		WALDir:         cfg.WALPath(),
		SnapDir:        cfg.SnapPath(),
		MaxSnapshots:   cfg.MaxSnapshots,
		MaxWALs:        cfg.MaxWALs,
	}
	if q := cfg.quota(); q > 0 {
		rcfg.MaxSnapshotBytes = q + q/10 // a db may pass the quota a little before NOSPACE stops it
	}
	if err := recoverSnapshotDB(lg, store, persisted); err != nil {
		persisted.WAL.Close()
		store.Close()
		return nil, err
	}
	applied, _ := store.ConsistentIndex()
	var peers []*member // whom the transport talks to before the log is applied
	switch {
	case persisted == nil && cfg.InitialClusterState == "existing":
		s.clusterID, s.id, peers, err = joinExisting(lg, &cfg)
		if err != nil {
			store.Close()
			return nil, err
		}
		// No raft peers: the membership comes with the leader's log (or snapshot).
		rcfg.Metadata = walMetadata{MemberID: s.id, ClusterID: s.clusterID}.marshal()
		s.replayMembership = true
		applied = 0
	case persisted == nil:
		ms, err := initialMembers(&cfg)
		if err != nil {
			store.Close()
			return nil, err
		}
		ids := make([]uint64, len(ms))
		for i, m := range ms {
			ids[i] = m.ID
			if m.Name == cfg.Name {
				s.id = m.ID
			}
			ctx, _ := json.Marshal(m)
			rcfg.Peers = append(rcfg.Peers, raft.Peer{ID: m.ID, Context: ctx})
		}
		if s.id == 0 {
			store.Close()
			return nil, fmt.Errorf("server: --initial-cluster has no member named %q", cfg.Name)
		}
		s.clusterID = clusterID(ids)
		// The membership itself comes from applying the bootstrap conf changes.
		peers = ms
		s.replayMembership = true
		rcfg.Metadata = walMetadata{MemberID: s.id, ClusterID: s.clusterID}.marshal()
		applied = 0
	default:
		md, err := parseWALMetadata(persisted.Metadata)
		if err != nil {
			persisted.WAL.Close()
			store.Close()
			return nil, err
		}
		s.id, s.clusterID = md.MemberID, md.ClusterID
		if err := s.restoreMembers(persisted); err != nil {
			persisted.WAL.Close()
			store.Close()
			return nil, err
		}
		if cfg.ForceNewCluster {
			if err := s.forceNewCluster(persisted); err != nil {
				persisted.WAL.Close()
				store.Close()
				return nil, err
			}
		}
		peers = s.members.all()
	}
	rcfg.ID = s.id
	s.peers = raftnode.NewPeerTransport(lg, s.id, s.clusterID, cfg.PeerDialTLS)
	s.peers.SkipMemberCertCheck(cfg.PeerSkipMemberCertCheck)
	s.addPeers(peers)
	s.peers.SetMembersSource(s.membersResponse)
	s.peers.SetRemovedHandlers(s.members.isRemoved, func() { s.stopRemoved() })
	rcfg.Transport = s.peers
	s.storeIndex = applied
	err = s.restoreLeases()
	if err == nil {
		err = s.loadAlarms()
	}
	if err == nil {
		err = s.loadAuth()
	}
	if err == nil {
		err = s.loadVersions()
	}
	if err != nil {
		if persisted != nil {
			persisted.WAL.Close()
		}
		store.Close()
		return nil, err
	}
	s.applied.Store(applied)
	s.appliedW = newAppliedWaiters(applied)
	s.ids = newIDGenerator(s.id, time.Now())
	s.reg = prometheus.NewRegistry()
	s.disk = newDiskGuard(s)
	s.metrics = newServerMetrics(s)
	s.registerMetrics()

	// Before the node: its Ready loop tells the batcher about its writes from the start.
	s.expiry = newRequestExpiry(s.requestTimeout())
	s.retention = newLogRetention(cmp.Or(cfg.SnapshotCatchUpEntries, DefaultSnapshotCatchUpEntries))
	s.batcher = newProposalBatcher(s)
	rcfg.SyncWrite = s.batcher.syncWrite
	s.node, err = raftnode.Start(rcfg, persisted)
	if err != nil {
		if persisted != nil {
			persisted.WAL.Close()
		}
		store.Close()
		return nil, err
	}
	s.disk.check()
	go s.disk.run()
	s.peers.SetHandler(s.node.Step, s.node.ReportUnreachable)
	s.peers.SetSnapshotHandlers(s.makeSnapshot, s.node.ReceiveSnapshot, s.node.ReportSnapshot)
	s.reads = newReadIndexBatcher(s, time.Now())
	go s.reads.run()
	go s.batcher.run()
	go s.applyLoop()
	go s.runLeaseExpiry()
	go s.publishAttributes()
	go s.watchReady()
	go s.runVersionMonitor()
	if persisted != nil {
		go s.checkPeersCluster()
	}
	if cfg.CompactHashCheck {
		go s.runCompactHashCheck(cfg.CompactHashCheckTime)
	}
	if cfg.AutoCompactionRetention != 0 {
		go s.newAutoCompactor().run()
	}
	if cfg.BackupDir != "" {
		go s.runBackups()
	}
	lg.Info("started member",
		zap.String("local-member-id", fmt.Sprintf("%x", s.id)),
		zap.String("cluster-id", fmt.Sprintf("%x", s.clusterID)),
		zap.Uint64("applied-index", applied))
	return s, nil
}

// restoreMembers rebuilds the membership on restart: from the newest snapshot's copy (the
// conf changes after it are replayed and validated again), from nothing when there is no
// snapshot (the whole log is replayed), and from the store for a snapshot that carries
// none.
func (s *Server) restoreMembers(p *raftnode.Persisted) error {
	switch {
	case p.Snapshot == nil:
		s.replayMembership = true
		return nil
	case len(p.Snapshot.GetData()) > 0:
		s.replayMembership = true
		return s.members.restoreSnapshot(p.Snapshot.GetData())
	}
	removed, err := s.store.RemovedMembers()
	if err != nil {
		return fmt.Errorf("server: load removed members: %w", err)
	}
	for _, id := range removed {
		s.members.markRemoved(id)
	}
	ms, err := s.storedMembers()
	if err != nil {
		return err
	}
	for _, m := range ms {
		s.members.add(m)
	}
	return nil
}

// storedMembers are the members the store has, as of its applied index.
func (s *Server) storedMembers() ([]*member, error) {
	raws, err := s.store.Members()
	if err != nil {
		return nil, fmt.Errorf("server: load members: %w", err)
	}
	var ms []*member
	for _, raw := range raws {
		var m member
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("server: decode member: %w", err)
		}
		ms = append(ms, &m)
	}
	return ms, nil
}

// ID is this member's id.
func (s *Server) ID() uint64 { return s.id }

// ClusterID is the cluster's id.
func (s *Server) ClusterID() uint64 { return s.clusterID }

// ReadyNotify is closed once the member has a leader, has applied the log it had and knows itself as a member.
func (s *Server) ReadyNotify() <-chan struct{} { return s.readyc }

// StopNotify is closed once the member has stopped, by Stop or by a fatal error.
func (s *Server) StopNotify() <-chan struct{} { return s.donec }

// StopReason is why the member stopped on its own (nil after Stop or while running).
func (s *Server) StopReason() error {
	if p := s.stopErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Registry holds the member's metrics for /metrics.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Leader is the current leader's id, 0 when there is none.
func (s *Server) Leader() uint64 { return s.node.Leader() }

// Stop stops raft and the apply loop and closes storage, committing what was applied.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		close(s.stopping)
		s.node.Stop()
		s.peers.Stop()
		<-s.donec
		if err := s.store.Close(); err != nil {
			s.lg.Warn("failed to close backend", zap.Error(err))
		}
	})
}

// watchReady re-checks readiness every heartbeat until the member is ready: a member
// restarted into an idle cluster has applied its whole log before it hears of the
// leader, and no entry may come after to trigger the check.
func (s *Server) watchReady() {
	t := time.NewTicker(s.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-s.readyc:
			return
		case <-s.stopping:
			return
		case <-t.C:
			s.maybeReady()
		}
	}
}

func (s *Server) maybeReady() {
	select {
	case <-s.readyc:
		return
	default:
	}
	// A joining member has applied "everything" before it got any of the log: it is
	// ready once it has applied its own addition, too.
	if s.node.Leader() != 0 && s.applied.Load() >= s.node.CommittedIndex() && s.members.get(s.id) != nil {
		s.readyOnce.Do(func() { close(s.readyc) })
	}
}
