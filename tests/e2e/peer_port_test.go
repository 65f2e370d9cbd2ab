package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// memberState is what a message on the peer port could change: raft's leader and term,
// the store's revision, hash and keys, a lease's remaining TTL.
type memberState struct {
	leader, term uint64
	rev          int64
	hash         uint32
	keys         []string
	leaseTTL     int64
}

func stateOf(t *testing.T, m *framework.Member, lease clientv3.LeaseID) memberState {
	t.Helper()
	cli := m.Client()
	st, err := cli.Status(ctx(t), m.Endpoint())
	if err != nil {
		t.Fatalf("%s: status: %v", m.Name, err)
	}
	h, err := cli.HashKV(ctx(t), m.Endpoint(), 0)
	if err != nil {
		t.Fatalf("%s: hashkv: %v", m.Name, err)
	}
	s := memberState{leader: st.Leader, term: st.RaftTerm, rev: h.Header.Revision, hash: h.Hash}
	got, err := cli.Get(ctx(t), "", clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithSerializable())
	if err != nil {
		t.Fatalf("%s: get: %v", m.Name, err)
	}
	for _, kv := range got.Kvs {
		s.keys = append(s.keys, string(kv.Key))
	}
	if lease != 0 {
		ttl, err := cli.TimeToLive(ctx(t), lease)
		if err != nil {
			t.Fatalf("%s: lease time-to-live: %v", m.Name, err)
		}
		s.leaseTTL = ttl.TTL
	}
	return s
}

// requireUnchanged fails unless after is before, except for the lease's TTL, which may
// only have run down.
func requireUnchanged(t *testing.T, who string, before, after memberState) {
	t.Helper()
	if before.leader != after.leader || before.term != after.term || before.rev != after.rev ||
		before.hash != after.hash || !slices.Equal(before.keys, after.keys) || after.leaseTTL > before.leaseTTL {
		t.Fatalf("%s changed after the refused peer messages:\n before %+v\n after  %+v", who, before, after)
	}
}

func raftMsg(m *raftpb.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// intrusion is one request a non-member sends to a peer port: a raft stream, a
// snapshot stream or a forwarded request, claiming to come from member h.From.
type intrusion struct {
	name string
	do   func(ctx context.Context) error
}

// intrusions are the requests that, were they accepted from h.From, would change the
// receiving member: raft messages from a far higher term (a vote, an append, a forced
// election, a proposal writing key "intruder"), a snapshot, a lease renewal, a promotion,
// and reading the store's hash.
func intrusions(t *testing.T, peerURL string, tlsCfg *tls.Config, h framework.PeerHeader, term uint64, lease clientv3.LeaseID) []intrusion {
	cc, err := framework.DialPeerPort(peerURL, tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	high := term + 100
	put, err := (&pb.InternalRaftRequest{Header: &pb.RequestHeader{ID: 0x1ead}, Put: &pb.PutRequest{Key: []byte("intruder"), Value: []byte("x")}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	msg := func(typ raftpb.MessageType, f func(*raftpb.Message)) []byte {
		m := &raftpb.Message{Type: typ.Enum(), From: proto.Uint64(h.From), To: proto.Uint64(h.To), Term: proto.Uint64(high)}
		if f != nil {
			f(m)
		}
		return raftMsg(m)
	}
	entry := &raftpb.Entry{Type: raftpb.EntryNormal.Enum(), Term: proto.Uint64(high), Index: proto.Uint64(1 << 20), Data: put}
	send := func(msgs ...[]byte) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			return framework.PeerStream(ctx, cc, framework.PeerMethodSend, framework.PeerEnvelope(h, msgs...))
		}
	}
	// Raft messages reach a member on two streams: the peer service's gRPC stream and
	// the direct stream members use first; each is tried.
	sendDirect := func(msgs ...[]byte) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			return framework.PeerDirectStream(ctx, peerURL, tlsCfg, framework.PeerEnvelope(h, msgs...))
		}
	}
	call := func(method string, req []byte) func(ctx context.Context) error {
		return func(ctx context.Context) error { _, err := framework.PeerCall(ctx, cc, method, req); return err }
	}
	renew, _ := (&pb.LeaseKeepAliveRequest{ID: int64(lease)}).Marshal()
	ttl, _ := (&pb.LeaseTimeToLiveRequest{ID: int64(lease), Keys: true}).Marshal()
	promote, _ := (&pb.MemberPromoteRequest{ID: h.To}).Marshal()
	snap := msg(raftpb.MsgSnap, func(m *raftpb.Message) {
		m.Snapshot = &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(1 << 20), Term: proto.Uint64(high),
			ConfState: &raftpb.ConfState{Voters: []uint64{h.From, h.To}}}}
	})
	raftMsgs := []struct {
		name string
		msg  []byte
	}{
		{"MsgVote", msg(raftpb.MsgVote, func(m *raftpb.Message) { m.LogTerm, m.Index = proto.Uint64(high), proto.Uint64(1<<20) })},
		{"MsgApp", msg(raftpb.MsgApp, func(m *raftpb.Message) {
			m.LogTerm, m.Index, m.Commit, m.Entries = proto.Uint64(high), proto.Uint64(1<<20-1), proto.Uint64(1<<20), []*raftpb.Entry{entry}
		})},
		{"MsgTimeoutNow", msg(raftpb.MsgTimeoutNow, nil)},
		{"MsgProp", msg(raftpb.MsgProp, func(m *raftpb.Message) {
			m.Term, m.Entries = proto.Uint64(0), []*raftpb.Entry{{Type: raftpb.EntryNormal.Enum(), Data: put}}
		})},
		{"MsgHeartbeat", msg(raftpb.MsgHeartbeat, func(m *raftpb.Message) { m.Commit = proto.Uint64(1 << 20) })},
	}
	var raftIntrusions []intrusion
	for _, rm := range raftMsgs {
		raftIntrusions = append(raftIntrusions, intrusion{rm.name, send(rm.msg)}, intrusion{rm.name + " (direct stream)", sendDirect(rm.msg)})
	}
	return append(raftIntrusions, []intrusion{
		{"MsgSnap", func(ctx context.Context) error {
			return framework.PeerStream(ctx, cc, framework.PeerMethodSendSnapshot, framework.PeerSnapshotChunk(h, snap, []byte("not a db")))
		}},
		{"LeaseForward.Renew", call(framework.PeerMethodLeaseRenew, framework.PeerRequest(h, renew))},
		{"LeaseForward.TimeToLive", call(framework.PeerMethodLeaseTTL, framework.PeerRequest(h, ttl))},
		{"MemberForward.Promote", call(framework.PeerMethodPromote, framework.PeerRequest(h, promote))},
		{"HashCheck.HashKV", call(framework.PeerMethodHashKV, framework.PeerHashKVRequest(h, 0))},
	}...)
}

// requireIntrusionsRefused sends every intrusion and asserts each is refused with code
// and a message containing msg.
func requireIntrusionsRefused(t *testing.T, who string, ins []intrusion, code codes.Code, msg string) {
	t.Helper()
	for _, in := range ins {
		c, cancel := context.WithTimeout(context.Background(), opTimeout)
		err := in.do(c)
		cancel()
		if gotCode, gotMsg := framework.StatusOf(err); gotCode != code || !strings.Contains(gotMsg, msg) {
			t.Errorf("%s, %s: %v; want %v %q", who, in.name, err, code, msg)
		}
	}
}

// A connection to a running member's peer port from outside the cluster changes
// nothing: raft messages (a vote and an append from a far higher term, a forced
// election, a proposal, a heartbeat), a snapshot, and the forwarded lease, promote and
// hash requests are refused when they claim an unknown member id (PermissionDenied "...
// is not a member of this cluster", logged) or the receiving member's own id, and when
// they claim another cluster (FailedPrecondition "cluster ID mismatch"). The leader, the
// term, the revision, HashKV, the keys and a lease's TTL stay as they were. Cairn-only:
// etcd's peer port speaks its own rafthttp protocol (etcd 3.6.16 answers a raft stream
// from an unknown sender 404 "error sender not found", logged "failed to find remote peer
// in cluster").
func TestPeerPortRefusesNonMember(t *testing.T) {
	framework.CairnOnly(t, "Cairn's peer protocol; etcd's peer port speaks rafthttp")
	m := framework.StartMember(t, framework.Options{})
	cli := m.Client()
	for i := 0; i < 5; i++ {
		mustPut(t, cli, fmt.Sprintf("k%d", i), "v")
	}
	lg, err := cli.Grant(ctx(t), 60)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, cli, "leased", "v", clientv3.WithLease(lg.ID))
	st, err := cli.Status(ctx(t), m.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	clusterID, self := st.Header.ClusterId, st.Header.MemberId
	before := stateOf(t, m, lg.ID)

	unknown := uint64(0xbad0bad0)
	requireIntrusionsRefused(t, "unknown member id",
		intrusions(t, m.PeerURL, nil, framework.PeerHeader{ClusterID: clusterID, From: unknown, To: self}, before.term, lg.ID),
		codes.PermissionDenied, "is not a member of this cluster")
	requireIntrusionsRefused(t, "the receiver's own id",
		intrusions(t, m.PeerURL, nil, framework.PeerHeader{ClusterID: clusterID, From: self, To: self}, before.term, lg.ID),
		codes.PermissionDenied, "is not a member of this cluster")
	requireIntrusionsRefused(t, "another cluster",
		intrusions(t, m.PeerURL, nil, framework.PeerHeader{ClusterID: clusterID + 1, From: unknown, To: self}, before.term, lg.ID),
		codes.FailedPrecondition, "cluster ID mismatch")

	// Give anything that slipped through time to show.
	time.Sleep(time.Second)
	requireUnchanged(t, m.Name, before, stateOf(t, m, lg.ID))
	for _, want := range []string{"rejected peer stream: the sender is not a member of the cluster",
		"refused a peer request from a member not in the cluster", "rejected peer stream: cluster ID mismatch"} {
		if !m.LogContains(want) {
			t.Errorf("%s did not log %q", m.Name, want)
		}
	}
}

// TestPeerPortMemberCertificate: three members on 127.0.0.1, .2 and .3, each with a
// peer certificate of its own (its IP and localhost, as kubeadm issues them) and peer
// client certificate auth, elect, replicate and agree (on Cairn and etcd). On Cairn, a
// connection carrying m2's certificate that claims to be m3 is refused on m1's and m2's
// peer ports (PermissionDenied, "... is not valid for any peer URL of
// member ...", logged), for raft streams, snapshots and forwarded requests alike, and
// changes nothing; m2's certificate claiming m2 is accepted. etcd accepts any member id
// from any certificate its CA signed, and its peer port speaks rafthttp: that part is
// Cairn-only.
func TestPeerPortMemberCertificate(t *testing.T) {
	ca := framework.NewCA(t, "ca")
	hosts := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	certs := make([]framework.CertFiles, len(hosts))
	for i, h := range hosts {
		certs[i] = ca.Issue(t, fmt.Sprintf("m%d", i+1), framework.CertOptions{CN: "member",
			IPs: []net.IP{net.ParseIP(h)}, DNSNames: []string{"localhost"}})
	}
	c := framework.StartCluster(t, 3, framework.Options{ForMember: func(i int, o *framework.Options) {
		o.Host = hosts[i]
		o.PeerTLS = &framework.TLSOptions{CA: ca, Server: certs[i], ClientCertAuth: true}
	}})
	cli := c.Client()
	for i := 0; i < 10; i++ {
		mustPut(t, cli, fmt.Sprintf("k%02d", i), "v")
	}
	rev := currentRev(t, cli)
	for _, m := range c.Members {
		waitFor(t, m.Name+" to apply revision "+fmt.Sprint(rev), func() bool {
			gctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			got, err := m.Client().Get(gctx, "k09", clientv3.WithSerializable())
			return err == nil && got.Header.Revision >= rev
		})
	}
	c.RequireHashKVEqual(t, rev)
	if framework.AgainstEtcd() {
		t.Log("etcd: the cluster with a certificate per member works; the member-certificate check is Cairn's")
		return
	}

	ids := map[string]uint64{}
	ml, err := cli.MemberList(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ml.Members {
		ids[m.Name] = m.ID
	}
	st, err := cli.Status(ctx(t), c.Members[0].Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	clusterID := st.Header.ClusterId
	leader := c.Leader()
	before := map[string]memberState{}
	for _, m := range c.Members {
		before[m.Name] = stateOf(t, m, 0)
	}

	m2Cert := framework.ClientTLS(t, ca, &certs[1])
	for _, m := range c.Members[:2] { // m3 claimed at its own port is TestPeerPortRefusesNonMember's case
		to := ids[m.Name]
		requireIntrusionsRefused(t, "m2's certificate claiming m3 at "+m.Name,
			intrusions(t, m.PeerURL, m2Cert, framework.PeerHeader{ClusterID: clusterID, From: ids["m3"], To: to}, before[m.Name].term, 0),
			codes.PermissionDenied, fmt.Sprintf("is not valid for any peer URL of member %x", ids["m3"]))
		waitFor(t, m.Name+" to log the refused certificate", func() bool {
			return m.LogContains("rejected peer request: the client certificate does not match the member it claims to be")
		})
	}
	// m2's certificate speaking for m2 is taken: an (empty) raft stream and a hash request.
	peerTo := leader
	if leader.Name == "m2" {
		peerTo = c.Followers()[0]
	}
	cc, err := framework.DialPeerPort(peerTo.PeerURL, m2Cert)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	h := framework.PeerHeader{ClusterID: clusterID, From: ids["m2"], To: ids[peerTo.Name]}
	if err := framework.PeerStream(ctx(t), cc, framework.PeerMethodSend, framework.PeerEnvelope(h)); err != nil {
		t.Errorf("m2's certificate as m2 at %s: %v", peerTo.Name, err)
	}
	if err := framework.PeerDirectStream(ctx(t), peerTo.PeerURL, m2Cert, framework.PeerEnvelope(h)); err != nil {
		t.Errorf("m2's certificate as m2 at %s, direct stream: %v", peerTo.Name, err)
	}
	if _, err := framework.PeerCall(ctx(t), cc, framework.PeerMethodHashKV, framework.PeerHashKVRequest(h, 0)); err != nil {
		t.Errorf("m2's certificate asking %s for its hash as m2: %v", peerTo.Name, err)
	}

	time.Sleep(time.Second)
	for _, m := range c.Members {
		requireUnchanged(t, m.Name, before[m.Name], stateOf(t, m, 0))
	}
	mustPut(t, cli, "after", "v")
	c.RequireHashKVEqual(t, currentRev(t, cli))
}
