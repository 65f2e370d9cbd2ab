package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"time"

	"github.com/cairn-kv/cairn/proto/peerpb"
	"github.com/cairn-kv/cairn/raftnode"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// joinTimeout bounds asking the existing members for the cluster's membership.
const joinTimeout = 10 * time.Second

// membersResponse is what this member answers a joining member's Members RPC.
func (s *Server) membersResponse() *peerpb.MembersResponse {
	resp := &peerpb.MembersResponse{ClusterId: s.clusterID, MemberId: s.id}
	for _, m := range s.members.list() {
		resp.Members = append(resp.Members, &peerpb.Member{
			Id: m.ID, Name: m.Name, PeerUrls: m.PeerURLs, ClientUrls: m.ClientURLs, IsLearner: m.IsLearner,
		})
	}
	return resp
}

// joinExisting asks the other members listed in --initial-cluster for the cluster this
// member was added to (etcdctl member add), and finds itself in it by its advertised peer
// URLs, as etcd does for --initial-cluster-state existing. It returns the cluster id,
// this member's id and the members to talk to.
func joinExisting(lg *zap.Logger, cfg *Config) (clusterID, id uint64, ms []*member, err error) {
	own := urlStrings(cfg.AdvertisePeerURLs)
	sort.Strings(own)
	var targets []string
	for name, urls := range cfg.InitialCluster {
		if name == cfg.Name {
			continue
		}
		targets = append(targets, urlStrings(urls)...)
	}
	if len(targets) == 0 {
		return 0, 0, nil, errors.New("server: --initial-cluster-state existing needs the other members in --initial-cluster")
	}
	sort.Strings(targets)
	ctx, cancel := context.WithTimeout(context.Background(), joinTimeout)
	defer cancel()
	var errs []error
	for ctx.Err() == nil {
		for _, target := range targets {
			resp, err := fetchMembers(ctx, target, cfg.PeerDialTLS)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", target, err))
				continue
			}
			for _, pm := range resp.GetMembers() {
				urls := slices.Clone(pm.GetPeerUrls())
				sort.Strings(urls)
				m := &member{ID: pm.GetId(), Name: pm.GetName(), PeerURLs: pm.GetPeerUrls(), ClientURLs: pm.GetClientUrls(), IsLearner: pm.GetIsLearner()}
				ms = append(ms, m)
				if slices.Equal(urls, own) {
					id = m.ID
				}
			}
			if id == 0 {
				return 0, 0, nil, fmt.Errorf("server: the cluster at %s has no member with peer URLs %v (add it first: etcdctl member add %s --peer-urls=...)", target, own, cfg.Name)
			}
			if err := validateJoin(cfg.InitialCluster, ms); err != nil {
				return 0, 0, nil, fmt.Errorf("server: error validating peerURLs of the cluster at %s against --initial-cluster: %w", target, err)
			}
			lg.Info("joining existing cluster", zap.String("cluster-id", fmt.Sprintf("%x", resp.GetClusterId())),
				zap.String("local-member-id", fmt.Sprintf("%x", id)), zap.Int("members", len(ms)))
			return resp.GetClusterId(), id, ms, nil
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	return 0, 0, nil, fmt.Errorf("server: cannot fetch the cluster's members to join it: %w", errors.Join(lastErrors(errs, 3)...))
}

// validateJoin checks, as etcd does, that --initial-cluster names exactly the cluster's
// members: a member joining the wrong cluster (or one that changed since the member was
// added) is refused rather than left to disrupt it.
func validateJoin(local map[string][]url.URL, remote []*member) error {
	if len(local) != len(remote) {
		return fmt.Errorf("member count is unequal (--initial-cluster has %d, the cluster %d)", len(local), len(remote))
	}
	for _, m := range remote {
		want := slices.Clone(m.PeerURLs)
		sort.Strings(want)
		found := false
		for _, urls := range local {
			have := urlStrings(urls)
			sort.Strings(have)
			if slices.Equal(have, want) {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("PeerURLs: no match found for existing member (%x, %v)", m.ID, m.PeerURLs)
		}
	}
	return nil
}

func lastErrors(errs []error, n int) []error {
	if len(errs) > n {
		return errs[len(errs)-n:]
	}
	return errs
}

func fetchMembers(ctx context.Context, peerURL string, tlsCfg *tls.Config) (*peerpb.MembersResponse, error) {
	cc, err := raftnode.DialPeer(peerURL, tlsCfg, time.Second, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return peerpb.NewPeerClient(cc).Members(cctx, &peerpb.MembersRequest{}, grpc.WaitForReady(true))
}

// clusterCheckBound bounds how long a restarted member keeps asking its peers which
// cluster they are in, until one of them answers.
const clusterCheckBound = 30 * time.Second

// checkPeersCluster runs once at the restart of a multi-member member: it asks the
// members the store knows which cluster they belong to. If some answer and every one
// that does names another cluster, this data dir is from a different cluster (or those
// peers were re-created): the member stops with a clear error rather than run isolated
// and serve stale data. Peers that do not answer decide nothing.
func (s *Server) checkPeersCluster() {
	ms, err := s.storedMembers()
	if err != nil || len(ms) < 2 {
		return
	}
	deadline := time.Now().Add(clusterCheckBound)
	for time.Now().Before(deadline) {
		var others, same int
		var foreign uint64
		var where []string
		for _, m := range ms {
			if m.ID == s.id {
				continue
			}
			for _, u := range m.PeerURLs {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				resp, err := fetchMembers(ctx, u, s.cfg.PeerDialTLS)
				cancel()
				if err != nil {
					continue
				}
				if resp.GetClusterId() == s.clusterID {
					same++
				} else {
					others++
					foreign = resp.GetClusterId()
					where = append(where, u)
				}
				break
			}
		}
		switch {
		case same > 0:
			return
		case others > 0:
			err := fmt.Errorf("%w: this data dir belongs to cluster %x, but the members at %v are in cluster %x",
				ErrClusterIDMismatch, s.clusterID, where, foreign)
			s.lg.Error("stopping: the peers belong to another cluster", zap.Error(err))
			s.stopErr.Store(&err)
			s.Stop()
			return
		}
		select {
		case <-time.After(time.Second):
		case <-s.stopping:
			return
		}
	}
}
