package framework

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// FaultInjectionEnv, in Options.Env, enables Cairn's test-only fault endpoint
// (server.FaultInjectionEnv), which FreezeRaft uses. etcd has no such endpoint.
const FaultInjectionEnv = "CAIRN_FAULT_INJECTION=1"

// FreezeRaft freezes the raft Ready loop of a Cairn member started with
// FaultInjectionEnv for d (no ticks, nothing persisted, sent or applied; its
// gRPC and HTTP keep serving, as with a stalled disk); d == 0 ends a freeze.
// It returns once the member's Ready loop took the request.
func (m *Member) FreezeRaft(d time.Duration) error {
	u := m.ClientURL + "/debug/fault/raft-freeze?seconds=" + strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
	resp, err := m.httpClient(10*time.Second).Post(u, "text/plain", nil)
	if err != nil {
		return fmt.Errorf("freeze raft of %s for %v: %w", m.Name, d, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("freeze raft of %s for %v: %s: %s (is %s set?)", m.Name, d, resp.Status, strings.TrimSpace(string(body)), FaultInjectionEnv)
	}
	return nil
}

// pausedMembers maps each member paused by Pause to the pid it stopped.
var pausedMembers = struct {
	sync.Mutex
	pid map[*Member]int
}{pid: map[*Member]int{}}

// Pause stops the member's process with SIGSTOP (it keeps its sockets but
// answers nothing: a hung member). It also registers a t.Cleanup that
// resumes it, which runs before the member's own cleanup (cleanups run
// last-registered first), so a paused process is never left for SIGTERM or
// SIGQUIT that it would not act on.
func (m *Member) Pause() error {
	pid := m.Pid()
	if pid == 0 || !m.Running() {
		return fmt.Errorf("pause %s: not running", m.Name)
	}
	m.t.Cleanup(func() { _ = m.Resume() })
	if err := m.signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("pause %s: %w", m.Name, err)
	}
	pausedMembers.Lock()
	pausedMembers.pid[m] = pid
	pausedMembers.Unlock()
	return nil
}

// Resume sends SIGCONT to a member stopped by Pause; a no-op if it is not
// paused or was killed since.
func (m *Member) Resume() error {
	pausedMembers.Lock()
	pid, ok := pausedMembers.pid[m]
	delete(pausedMembers.pid, m)
	pausedMembers.Unlock()
	if !ok || m.Pid() != pid {
		return nil
	}
	if err := m.signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("resume %s: %w", m.Name, err)
	}
	return nil
}

// Paused reports whether the member is stopped by Pause.
func (m *Member) Paused() bool {
	pausedMembers.Lock()
	defer pausedMembers.Unlock()
	_, ok := pausedMembers.pid[m]
	return ok
}

// FaultKind is a fault a Nemesis injects.
type FaultKind string

// Fault kinds.
const (
	// FaultKill is kill -9, then a restart on the same data dir.
	FaultKill FaultKind = "kill"
	// FaultPause is SIGSTOP, then SIGCONT.
	FaultPause FaultKind = "pause"
	// FaultPartition cuts the targets off from the other members through
	// the PeerNetwork, then heals.
	FaultPartition FaultKind = "partition"
	// FaultFreeze freezes the targets' raft Ready loop (FreezeRaft) while
	// their processes keep serving clients, then thaws it. Cairn only.
	FaultFreeze FaultKind = "freeze"
)

// freezeSlack is how much longer than the hold a FaultFreeze asks the member
// to stay frozen: the explicit thaw ends it, and a test that dies between the
// two leaves no member frozen for long.
const freezeSlack = 10 * time.Second

// Fault is one fault injected and healed by a Nemesis.
type Fault struct {
	Kind    FaultKind
	Targets []string
	Detail  string // e.g. "leader", the partition mode
	// Injected and Healed bound the fault; Recovered is when the cluster
	// again had every member running and a leader all agree on.
	Injected, Healed, Recovered time.Time
}

func (f Fault) String() string {
	s := fmt.Sprintf("%s %s", f.Kind, strings.Join(f.Targets, ","))
	if f.Detail != "" {
		s += " (" + f.Detail + ")"
	}
	s += fmt.Sprintf(" for %v", f.Healed.Sub(f.Injected).Round(time.Millisecond))
	if !f.Recovered.IsZero() {
		s += fmt.Sprintf(", recovered %v after heal", f.Recovered.Sub(f.Healed).Round(time.Millisecond))
	}
	return s
}

// Nemesis injects faults into a cluster, one at a time, each followed by
// recovery. Call it from the test goroutine.
type Nemesis struct {
	c  *Cluster
	pn *PeerNetwork // nil: no partitions
	// RecoverTimeout bounds the wait for a restarted member's readiness and
	// for a leader after each fault; default 20 s.
	RecoverTimeout time.Duration
	// Faults are the faults injected so far.
	Faults []Fault
}

// NewNemesis returns a nemesis for c; pn (nil if c has no proxies) enables
// FaultPartition.
func NewNemesis(c *Cluster, pn *PeerNetwork) *Nemesis {
	return &Nemesis{c: c, pn: pn, RecoverTimeout: 20 * time.Second}
}

// Inject injects kind on targets, holds it for hold, heals it (restart,
// SIGCONT, Heal or thaw), then waits until every member is running and all agree
// on a leader (bounded by RecoverTimeout). detail is logged with the fault;
// mode applies to partitions. The fault is appended to Faults even when an
// error is returned (recovery failed).
func (n *Nemesis) Inject(kind FaultKind, targets []*Member, hold time.Duration, mode PartitionMode, detail string) (Fault, error) {
	f := Fault{Kind: kind, Detail: detail, Injected: time.Now()}
	for _, m := range targets {
		f.Targets = append(f.Targets, m.Name)
	}
	err := n.inject(kind, targets, hold, mode)
	f.Healed = time.Now()
	if err == nil {
		_, err = n.c.WaitLeader(n.RecoverTimeout)
	}
	if err == nil {
		f.Recovered = time.Now()
	} else {
		err = fmt.Errorf("%s: %w", f, err)
	}
	n.Faults = append(n.Faults, f)
	return f, err
}

func (n *Nemesis) inject(kind FaultKind, targets []*Member, hold time.Duration, mode PartitionMode) error {
	switch kind {
	case FaultKill:
		for _, m := range targets {
			m.Kill()
		}
		time.Sleep(hold)
		var errs []error
		for _, m := range targets {
			if err := m.Start(); err != nil {
				errs = append(errs, fmt.Errorf("restart %s: %w", m.Name, err))
			}
		}
		for _, m := range targets {
			if err := m.WaitReady(n.RecoverTimeout); err != nil {
				errs = append(errs, fmt.Errorf("restart %s: %w", m.Name, err))
			}
		}
		return errors.Join(errs...)
	case FaultPause:
		var errs []error
		for _, m := range targets {
			if err := m.Pause(); err != nil {
				errs = append(errs, err)
			}
		}
		time.Sleep(hold)
		for _, m := range targets {
			if err := m.Resume(); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	case FaultFreeze:
		var errs []error
		var frozen []*Member
		for _, m := range targets {
			if err := m.FreezeRaft(hold + freezeSlack); err != nil {
				errs = append(errs, err)
				continue
			}
			frozen = append(frozen, m)
		}
		time.Sleep(hold)
		for _, m := range frozen {
			if err := m.FreezeRaft(0); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	case FaultPartition:
		if n.pn == nil {
			return errors.New("partition: the cluster has no peer proxies (use StartProxiedCluster)")
		}
		n.pn.Partition(mode, targets...)
		defer n.pn.Heal()
		time.Sleep(hold)
		return nil
	}
	return fmt.Errorf("unknown fault %q", kind)
}
