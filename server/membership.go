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

// membership is the set of members, changed only by applied conf changes.
type membership struct {
	mu      sync.RWMutex
	members map[uint64]*member
}

func newMembership() *membership { return &membership{members: map[uint64]*member{}} }

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

func (ms *membership) remove(id uint64) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	delete(ms.members, id)
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
