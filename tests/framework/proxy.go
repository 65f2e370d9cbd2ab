package framework

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// PartitionMode is how a PeerNetwork cuts connections.
type PartitionMode int

const (
	// PartitionDrop closes every cut connection at once and every new one
	// as soon as it is accepted: peers see connection errors and redial.
	PartitionDrop PartitionMode = iota
	// PartitionStall stops forwarding cut connections (new ones are
	// accepted and held) until Heal, then forwards what was held: bytes are
	// delayed, never lost, as TCP across a partition that heals in time.
	// Peers see writes block and time out.
	PartitionStall
)

func (m PartitionMode) String() string {
	if m == PartitionStall {
		return "stall"
	}
	return "drop"
}

// PeerNetwork is a userspace TCP proxy in front of each member's peer port,
// started by StartProxiedCluster. Members advertise the proxy's address
// (--initial-advertise-peer-urls, --initial-cluster) and listen on their own
// peer URL, so every peer connection goes through the proxy of the member it
// is dialed to. The proxy also learns which member dialed each connection
// (from /proc, see socketOwner), so it can cut a member off in both
// directions whatever its raft transport dials: Cairn has every member dial
// each peer to send, etcd's rafthttp dials to receive as well.
type PeerNetwork struct {
	proxies []*peerProxy

	mu     sync.Mutex
	cond   *sync.Cond // signalled on Heal and Close
	side   map[string]bool
	active bool
	mode   PartitionMode
	closed bool
	// unknownSources counts accepted connections whose dialer was not
	// found; during a partition they are cut.
	unknownSources int
	accepted       int
	dropped        int // connections closed because they were cut
	held           int // times a connection was held until Heal
}

type peerProxy struct {
	pn     *PeerNetwork
	member *Member
	ln     net.Listener
	url    string // http(s)://127.0.0.1:port, advertised by the member
	target string // the member's own peer listener, host:port

	mu    sync.Mutex
	conns map[*proxyConn]struct{}
}

type proxyConn struct {
	src, dst string // member names; src "" if unknown
	in       net.Conn

	mu     sync.Mutex
	out    net.Conn
	closed bool
}

// setOut attaches the connection to the member; false (and out closed) if
// pc was closed meanwhile.
func (pc *proxyConn) setOut(out net.Conn) bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.closed {
		_ = out.Close()
		return false
	}
	pc.out = out
	return true
}

func (pc *proxyConn) close() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.closed {
		return
	}
	pc.closed = true
	_ = pc.in.Close()
	if pc.out != nil {
		_ = pc.out.Close()
	}
}

// ProxyURL returns the peer URL m advertises (its proxy's), or "" if m is not
// behind this network.
func (pn *PeerNetwork) ProxyURL(m *Member) string {
	for _, p := range pn.proxies {
		if p.member == m {
			return p.url
		}
	}
	return ""
}

// Partition cuts the members in side off from the others (connections
// within each side keep working) until Heal. A connection whose dialer is
// unknown is cut as well.
func (pn *PeerNetwork) Partition(mode PartitionMode, side ...*Member) {
	pn.mu.Lock()
	pn.side = map[string]bool{}
	for _, m := range side {
		pn.side[m.Name] = true
	}
	pn.active, pn.mode = true, mode
	pn.mu.Unlock()
	if mode == PartitionDrop {
		for _, p := range pn.proxies {
			for _, pc := range p.snapshot() {
				if pn.isCut(pc) {
					pn.mu.Lock()
					pn.dropped++
					pn.mu.Unlock()
					pc.close()
				}
			}
		}
	}
}

// Heal ends the partition: stalled connections resume, new ones are
// forwarded.
func (pn *PeerNetwork) Heal() {
	pn.mu.Lock()
	pn.active, pn.side = false, nil
	pn.cond.Broadcast()
	pn.mu.Unlock()
}

// PeerNetworkStats counts what a PeerNetwork did.
type PeerNetworkStats struct {
	// Accepted connections; Dropped (closed because cut); Held (stalled
	// until Heal, counted once per stall); UnknownSources (accepted
	// connections whose dialer was not found among the members).
	Accepted, Dropped, Held, UnknownSources int
}

// Stats returns the network's counters.
func (pn *PeerNetwork) Stats() PeerNetworkStats {
	pn.mu.Lock()
	defer pn.mu.Unlock()
	return PeerNetworkStats{Accepted: pn.accepted, Dropped: pn.dropped, Held: pn.held, UnknownSources: pn.unknownSources}
}

// Close stops every proxy and closes all connections.
func (pn *PeerNetwork) Close() {
	pn.mu.Lock()
	pn.closed = true
	pn.cond.Broadcast()
	pn.mu.Unlock()
	for _, p := range pn.proxies {
		_ = p.ln.Close()
		for _, pc := range p.snapshot() {
			pc.close()
		}
	}
}

func (pn *PeerNetwork) isCut(pc *proxyConn) bool {
	pn.mu.Lock()
	defer pn.mu.Unlock()
	return pn.isCutLocked(pc)
}

func (pn *PeerNetwork) isCutLocked(pc *proxyConn) bool {
	if !pn.active {
		return false
	}
	return pc.src == "" || pn.side[pc.src] != pn.side[pc.dst]
}

// pass waits until pc may forward data: true at once if it is not cut,
// after Heal if it is stalled; false if it must be dropped (cut in drop
// mode, or the network closed). The wait ends at Heal or Close, which the
// nemesis and t.Cleanup always call.
func (pn *PeerNetwork) pass(pc *proxyConn) bool {
	pn.mu.Lock()
	defer pn.mu.Unlock()
	for i := 0; !pn.closed; i++ {
		if !pn.isCutLocked(pc) {
			return true
		}
		if pn.mode == PartitionDrop {
			pn.dropped++
			return false
		}
		if i == 0 {
			pn.held++
		}
		pn.cond.Wait()
	}
	return false
}

func (p *peerProxy) snapshot() []*proxyConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*proxyConn, 0, len(p.conns))
	for pc := range p.conns {
		out = append(out, pc)
	}
	return out
}

// serve accepts until the listener is closed.
func (p *peerProxy) serve(members []*Member) {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(in, members)
	}
}

func (p *peerProxy) handle(in net.Conn, members []*Member) {
	pn := p.pn
	pc := &proxyConn{in: in, dst: p.member.Name}
	_, lport, _ := net.SplitHostPort(in.LocalAddr().String())
	_, rport, _ := net.SplitHostPort(in.RemoteAddr().String())
	pc.src = socketOwner(rport, lport, members)
	pn.mu.Lock()
	pn.accepted++
	if pc.src == "" {
		pn.unknownSources++
	}
	closed := pn.closed
	pn.mu.Unlock()
	if closed {
		_ = in.Close()
		return
	}
	p.mu.Lock()
	p.conns[pc] = struct{}{}
	p.mu.Unlock()
	defer func() {
		pc.close()
		p.mu.Lock()
		delete(p.conns, pc)
		p.mu.Unlock()
	}()
	if !pn.pass(pc) {
		return
	}
	out, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		return // the member is down: the dialer sees the connection close
	}
	if !pc.setOut(out) {
		return
	}
	done := make(chan struct{}, 2)
	go func() { pn.pipe(pc, out, in); done <- struct{}{} }()
	go func() { pn.pipe(pc, in, out); done <- struct{}{} }()
	<-done // either direction ending ends the connection
	pc.close()
	<-done
}

// pipe copies src to dst, holding data while pc is stalled.
func (pn *PeerNetwork) pipe(pc *proxyConn, dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !pn.pass(pc) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// socketOwner returns the name of the member whose process owns the TCP
// socket 127.0.0.1:localPort -> 127.0.0.1:remotePort (the dialing end of a
// connection the proxy accepted), or "" if none does. It reads the socket's
// inode from /proc/net/tcp{,6} and looks for it among the members' open
// file descriptors (/proc/<pid>/fd), which works unprivileged for processes
// of the same user. The lookup runs once per accepted connection; peers
// keep their connections open, so that is rare.
func socketOwner(localPort, remotePort string, members []*Member) string {
	lp, err1 := strconv.Atoi(localPort)
	rp, err2 := strconv.Atoi(remotePort)
	if err1 != nil || err2 != nil {
		return ""
	}
	// The dialer may not have appeared in the tables yet: retry briefly.
	for attempt := 0; attempt < 5; attempt++ {
		if inode := socketInode(lp, rp); inode != "" {
			link := "socket:[" + inode + "]"
			for _, m := range members {
				if pid := m.Pid(); pid > 0 && m.Running() && hasFD(pid, link) {
					return m.Name
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return ""
}

// socketInode finds the inode of the TCP socket with the given local and
// remote ports in /proc/net/tcp and /proc/net/tcp6.
func socketInode(localPort, remotePort int) string {
	want := func(addr string, port int) bool {
		i := strings.LastIndexByte(addr, ':')
		if i < 0 {
			return false
		}
		p, err := strconv.ParseUint(addr[i+1:], 16, 32)
		return err == nil && int(p) == port
	}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || fs[0] == "sl" {
				continue
			}
			if want(fs[1], localPort) && want(fs[2], remotePort) && fs[9] != "0" {
				_ = f.Close()
				return fs[9]
			}
		}
		_ = f.Close()
	}
	return ""
}

// hasFD reports whether process pid has an open descriptor linking to link.
func hasFD(pid int, link string) bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && l == link {
			return true
		}
	}
	return false
}

// StartProxiedCluster is StartCluster with a PeerNetwork: each member
// listens on its own peer URL but advertises a proxy in front of it, so the
// test can partition members (PeerNetwork.Partition). Member names, cluster
// token, raft timings, readiness and leader wait are as in StartCluster;
// opts.Flags may not set the peer URL flags or --initial-cluster.
func StartProxiedCluster(t testing.TB, n int, opts Options) (*Cluster, *PeerNetwork) {
	t.Helper()
	if n < 1 {
		t.Fatalf("StartProxiedCluster: n=%d", n)
	}
	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		c, pn, err := newProxiedCluster(t, n, opts)
		if err == nil {
			if err = c.start(); err == nil {
				if _, err = c.WaitLeader(DefaultLeaderTimeout); err == nil {
					t.Cleanup(pn.Close)
					return c, pn
				}
			}
		}
		lastErr = err
		portRace := errors.Is(err, errProxyListen)
		for _, m := range c.Members {
			m.Kill()
			if m.LogContains("address already in use") {
				portRace = true
			}
		}
		pn.Close()
		if !portRace {
			break
		}
		t.Logf("proxied cluster: port race (%v); retrying with new ports", err)
	}
	t.Fatalf("proxied cluster of %d did not become ready: %v", n, lastErr)
	return nil, nil
}

var errProxyListen = errors.New("proxy listen")

// NewProxiedCluster prepares a cluster as StartProxiedCluster does without starting it,
// for tests that lay out the members' data dirs first (a restored snapshot: restore each
// member with the cluster's InitialCluster and Token and its ProxyURL as its advertised
// peer URL); Cluster.Start starts it. Its proxies already serve, and close when the test
// ends.
func NewProxiedCluster(t testing.TB, n int, opts Options) (*Cluster, *PeerNetwork) {
	t.Helper()
	if n < 1 {
		t.Fatalf("NewProxiedCluster: n=%d", n)
	}
	c, pn, err := newProxiedCluster(t, n, opts)
	t.Cleanup(pn.Close)
	if err != nil {
		t.Fatalf("proxied cluster of %d: %v", n, err)
	}
	return c, pn
}

// newProxiedCluster prepares the members and starts their proxies. It
// mirrors newCluster, with the proxies' URLs as the advertised peer URLs.
func newProxiedCluster(t testing.TB, n int, opts Options) (*Cluster, *PeerNetwork, error) {
	t.Helper()
	clusterSeq.Lock()
	clusterSeq.n++
	seq := clusterSeq.n
	clusterSeq.Unlock()
	c := &Cluster{t: t, Token: fmt.Sprintf("cairn-e2e-proxied-%d", seq)}
	pn := &PeerNetwork{}
	pn.cond = sync.NewCond(&pn.mu)
	var peers []string
	var listenErr error
	for i := 1; i <= n; i++ {
		o := opts
		o.Name = fmt.Sprintf("m%d", i)
		m := NewMember(t, o)
		c.Members = append(c.Members, m)
		addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			listenErr = fmt.Errorf("%w %s: %v", errProxyListen, addr, err)
			ln = nil
		}
		// The proxy forwards bytes: with peer TLS the members' TLS goes through it, so it
		// is advertised with the member's own scheme.
		scheme, target, _ := strings.Cut(m.PeerURL, "://")
		p := &peerProxy{pn: pn, member: m, ln: ln, url: scheme + "://" + addr,
			target: target, conns: map[*proxyConn]struct{}{}}
		if ln != nil {
			pn.proxies = append(pn.proxies, p)
		}
		peers = append(peers, m.Name+"="+p.url)
	}
	if listenErr != nil {
		return c, pn, listenErr
	}
	for _, p := range pn.proxies {
		go p.serve(c.Members)
	}
	c.InitialCluster = strings.Join(peers, ",")
	extra := []string{"--initial-cluster=" + c.InitialCluster, "--initial-cluster-token=" + c.Token}
	extra = append(extra, raftTimingFlags(opts.Flags)...)
	for i, m := range c.Members {
		o := m.opts
		o.OmitFlags = append(append([]string(nil), opts.OmitFlags...),
			"--initial-cluster", "--initial-cluster-token", "--initial-advertise-peer-urls")
		o.Flags = append(append([]string(nil), extra...), "--initial-advertise-peer-urls="+pn.proxies[i].url)
		o.Flags = append(o.Flags, opts.Flags...)
		m.mu.Lock()
		m.opts = o
		m.mu.Unlock()
	}
	return c, pn, nil
}
