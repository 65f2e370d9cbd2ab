package server

import (
	"crypto/sha1"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
)

// memberID derives a member's id from its peer URLs and the cluster token, as etcd
// does, so the same flags give the same id on every member.
func memberID(peerURLs []string, token string) uint64 {
	urls := append([]string(nil), peerURLs...)
	sort.Strings(urls)
	sum := sha1.Sum([]byte(strings.Join(urls, "") + token))
	return binary.BigEndian.Uint64(sum[:8])
}

// clusterID derives the cluster id from the ids of its initial members.
func clusterID(ids []uint64) uint64 {
	sorted := append([]uint64(nil), ids...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	b := make([]byte, 8*len(sorted))
	for i, id := range sorted {
		binary.BigEndian.PutUint64(b[8*i:], id)
	}
	sum := sha1.Sum(b)
	return binary.BigEndian.Uint64(sum[:8])
}

func urlStrings(us []url.URL) []string {
	out := make([]string, len(us))
	for i := range us {
		out[i] = us[i].String()
	}
	return out
}

// member is one member as carried in a raft conf change's context.
type member struct {
	ID         uint64   `json:"id"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs,omitempty"`
	IsLearner  bool     `json:"isLearner,omitempty"`
}

// initialMembers builds the bootstrap membership from --initial-cluster.
func initialMembers(cfg *Config) ([]*member, error) {
	if len(cfg.InitialCluster) == 0 {
		return nil, fmt.Errorf("server: --initial-cluster is empty")
	}
	var ms []*member
	for name, urls := range cfg.InitialCluster {
		peers := urlStrings(urls)
		ms = append(ms, &member{ID: memberID(peers, cfg.InitialClusterToken), Name: name, PeerURLs: peers})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].ID < ms[j].ID })
	return ms, nil
}

// walMetadata is written at the head of the WAL: who this member is, and of which
// cluster, so a restart ignores --initial-cluster as etcd does.
type walMetadata struct {
	MemberID  uint64 `json:"memberID"`
	ClusterID uint64 `json:"clusterID"`
}

func (m walMetadata) marshal() []byte {
	b, _ := json.Marshal(m)
	return b
}

func parseWALMetadata(b []byte) (walMetadata, error) {
	var m walMetadata
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("server: wal metadata: %w", err)
	}
	if m.MemberID == 0 || m.ClusterID == 0 {
		return m, fmt.Errorf("server: wal metadata without member or cluster id")
	}
	return m, nil
}

// membership is the set of members, changed only by applied conf changes, and the ids
// of removed members, which may never come back.
type membership struct {
	mu      sync.RWMutex
	members map[uint64]*member
	removed map[uint64]bool
	// maxLearners is the most learners the membership may hold (--max-learners); fixed
	// at start.
	maxLearners int
}

func newMembership() *membership {
	return &membership{members: map[uint64]*member{}, removed: map[uint64]bool{}, maxLearners: DefaultMaxLearners}
}

// get returns a copy of member id, nil if it is not a member.
func (ms *membership) get(id uint64) *member {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	m, ok := ms.members[id]
	if !ok {
		return nil
	}
	c := *m
	return &c
}

// isLearner reports whether member id is a learner, without get's copy (it is asked
// on every request).
func (ms *membership) isLearner(id uint64) bool {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	m, ok := ms.members[id]
	return ok && m.IsLearner
}

func (ms *membership) isRemoved(id uint64) bool {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	return ms.removed[id]
}

func (ms *membership) markRemoved(id uint64) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	delete(ms.members, id)
	ms.removed[id] = true
}

// peerURLTaken says whether a member other than except uses one of urls.
func (ms *membership) peerURLTaken(urls []string, except uint64) bool {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	for id, m := range ms.members {
		if id == except {
			continue
		}
		for _, u := range m.PeerURLs {
			for _, v := range urls {
				if u == v {
					return true
				}
			}
		}
	}
	return false
}

// setPeerURLs changes a member's peer URLs; false if it is not a member.
func (ms *membership) setPeerURLs(id uint64, urls []string) bool {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	m, ok := ms.members[id]
	if ok {
		m.PeerURLs = append([]string(nil), urls...)
	}
	return ok
}

// counts returns the number of voters, of voters that published their attributes
// (etcd's "started" members) not counting except, and of learners.
func (ms *membership) counts(except uint64) (voters, started, learners int) {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	for id, m := range ms.members {
		if m.IsLearner {
			learners++
			continue
		}
		voters++
		if id != except && m.Name != "" {
			started++
		}
	}
	return voters, started, learners
}

// validate checks a conf change against the membership as of its place in the log, so
// every member decides the same (m is the member a change carries, nil for removals).
func (ms *membership) validate(typ raftpb.ConfChangeType, id uint64, m *member) error {
	if ms.isRemoved(id) {
		return ErrIDRemoved
	}
	cur := ms.get(id)
	switch typ {
	case raftpb.ConfChangeAddNode:
		if cur != nil && !cur.IsLearner {
			return ErrIDExists
		}
		if cur == nil && ms.peerURLTaken(m.PeerURLs, id) {
			return ErrPeerURLExists
		}
	case raftpb.ConfChangeAddLearnerNode:
		if cur != nil {
			return ErrIDExists
		}
		// Checked here too, not only when proposed: two adds sent to different members
		// can both pass their member's check before either is applied.
		if _, _, learners := ms.counts(0); learners >= ms.maxLearners {
			return ErrTooManyLearners
		}
		if ms.peerURLTaken(m.PeerURLs, id) {
			return ErrPeerURLExists
		}
	case raftpb.ConfChangeRemoveNode:
		if cur == nil {
			return ErrIDNotFound
		}
	case raftpb.ConfChangeUpdateNode:
		if cur == nil {
			return ErrIDNotFound
		}
		if ms.peerURLTaken(m.PeerURLs, id) {
			return ErrPeerURLExists
		}
	}
	return nil
}

// membershipSnapshot is the membership as a raft snapshot carries it: on restart, the
// conf changes after the snapshot are validated against it again, as when first applied.
type membershipSnapshot struct {
	Members []*member `json:"members"`
	Removed []uint64  `json:"removed,omitempty"`
}

func (ms *membership) marshalSnapshot() []byte {
	snap := membershipSnapshot{Members: ms.all()}
	ms.mu.RLock()
	for id := range ms.removed {
		snap.Removed = append(snap.Removed, id)
	}
	ms.mu.RUnlock()
	sort.Slice(snap.Members, func(i, j int) bool { return snap.Members[i].ID < snap.Members[j].ID })
	sort.Slice(snap.Removed, func(i, j int) bool { return snap.Removed[i] < snap.Removed[j] })
	b, _ := json.Marshal(&snap)
	return b
}

// restoreSnapshot replaces the membership with the one a snapshot carried.
func (ms *membership) restoreSnapshot(b []byte) error {
	var snap membershipSnapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return fmt.Errorf("server: decode membership in snapshot: %w", err)
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.members = map[uint64]*member{}
	ms.removed = map[uint64]bool{}
	for _, m := range snap.Members {
		ms.members[m.ID] = m
	}
	for _, id := range snap.Removed {
		ms.removed[id] = true
	}
	return nil
}

// all returns copies of every member.
func (ms *membership) all() []*member {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	out := make([]*member, 0, len(ms.members))
	for _, m := range ms.members {
		c := *m
		out = append(out, &c)
	}
	return out
}

func (ms *membership) add(m *member) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.members[m.ID] = m
}

// setAttributes records a member's published name and client URLs and returns a copy
// of the member, nil if it is not a member.
func (ms *membership) setAttributes(id uint64, name string, clientURLs []string) *member {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	m, ok := ms.members[id]
	if !ok {
		return nil
	}
	m.Name, m.ClientURLs = name, clientURLs
	c := *m
	return &c
}

func (ms *membership) list() []*pb.Member {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	out := make([]*pb.Member, 0, len(ms.members))
	for _, m := range ms.members {
		out = append(out, &pb.Member{
			ID:         m.ID,
			Name:       m.Name,
			PeerURLs:   append([]string(nil), m.PeerURLs...),
			ClientURLs: append([]string(nil), m.ClientURLs...),
			IsLearner:  m.IsLearner,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
