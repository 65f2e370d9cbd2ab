package lease

import (
	"container/heap"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/cairn-kv/cairn/internal/errs"
)

// LeaseID identifies a lease; NoLease (0) means "no lease".
type LeaseID int64

// NoLease is the zero lease ID, carried by keys that have no lease.
const NoLease LeaseID = 0

// MaxLeaseTTL is the largest TTL, in seconds, a lease may be granted with (etcd's value).
const MaxLeaseTTL = 9000000000

// DefaultExpiredRetryInterval is how long Expired holds back a lease it has returned
// before returning it again, if it is still there (etcd's value).
const DefaultExpiredRetryInterval = 3 * time.Second

var (
	// Defined once in internal/errs, which api maps to etcd's gRPC errors by value.
	ErrLeaseNotFound    = errs.ErrLeaseNotFound
	ErrLeaseExists      = errs.ErrLeaseExists
	ErrLeaseTTLTooLarge = errs.ErrLeaseTTLTooLarge
	ErrNotPrimary       = errors.New("not a primary lessor")
)

// Lease is a read-only snapshot of one lease, as returned by Grant, Lookup and Leases.
// Changing it changes nothing in the Lessor.
type Lease struct {
	ID LeaseID
	// TTL is the granted TTL in seconds (already raised to Config.MinTTL).
	TTL int64
	// RemainingTTL is the last checkpointed remaining TTL in seconds; 0 means none.
	RemainingTTL int64

	expiry time.Time // zero unless the lessor was primary when the snapshot was taken
	keys   []string  // sorted
}

// Keys returns the keys attached to the lease, sorted.
func (l *Lease) Keys() []string {
	return append([]string(nil), l.keys...)
}

// Remaining is the time left until the lease expires, as the leader sees it (never below
// zero). Without an expiry (this lessor was not primary) it is the TTL a Promote would
// start from: RemainingTTL if checkpointed, else TTL.
func (l *Lease) Remaining(now time.Time) time.Duration {
	if l.expiry.IsZero() {
		return time.Duration(effectiveTTL(l.TTL, l.RemainingTTL)) * time.Second
	}
	if d := l.expiry.Sub(now); d > 0 {
		return d
	}
	return 0
}

// Checkpoint is a lease's remaining TTL (seconds) for the leader to propose through raft.
type Checkpoint struct {
	ID        LeaseID
	Remaining int64
}

// Config configures a Lessor.
type Config struct {
	// MinTTL is the smallest TTL granted (seconds); Grant and Restore raise smaller TTLs
	// to it. Values below 1 are treated as 1.
	MinTTL int64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// ExpiredRetryInterval is how long Expired holds back a lease it returned;
	// 0 (or negative) means DefaultExpiredRetryInterval.
	ExpiredRetryInterval time.Duration
}

// Lessor holds every lease. All methods are safe for concurrent use.
type Lessor struct {
	mu      sync.Mutex
	minTTL  int64
	now     func() time.Time
	retry   time.Duration
	leases  map[LeaseID]*entry
	owner   map[string]LeaseID // attached key -> its lease
	primary bool
	exp     timeHeap // by expiry; primary only
	cps     timeHeap // by checkpoint base; primary only
}

type entry struct {
	id           LeaseID
	ttl          int64
	remainingTTL int64
	keys         map[string]struct{}

	// Primary-only state.
	expiry   time.Time // when the lease expires
	expireAt time.Time // expiry heap key: expiry, or the retry time once Expired returned it
	expIdx   int       // index in Lessor.exp, -1 if absent
	cpBase   time.Time // cps heap key: when the cluster last learnt the remaining TTL; zero = due now
	cpReset  bool      // a Renew cleared RemainingTTL: checkpoint Remaining = TTL at once
	cpIdx    int       // index in Lessor.cps, -1 if absent
}

// New returns an empty, non-primary Lessor.
func New(cfg Config) *Lessor {
	le := &Lessor{
		minTTL: cfg.MinTTL,
		now:    cfg.Now,
		retry:  cfg.ExpiredRetryInterval,
		leases: make(map[LeaseID]*entry),
		owner:  make(map[string]LeaseID),
		exp: timeHeap{
			at:    func(e *entry) time.Time { return e.expireAt },
			index: func(e *entry) *int { return &e.expIdx },
		},
		cps: timeHeap{
			at:    func(e *entry) time.Time { return e.cpBase },
			index: func(e *entry) *int { return &e.cpIdx },
		},
	}
	if le.minTTL < 1 {
		le.minTTL = 1
	}
	if le.now == nil {
		le.now = time.Now
	}
	if le.retry <= 0 {
		le.retry = DefaultExpiredRetryInterval
	}
	return le
}

// effectiveTTL is the TTL a freshly promoted leader gives a lease, in seconds.
func effectiveTTL(ttl, remaining int64) int64 {
	if remaining > 0 {
		return remaining
	}
	return ttl
}

func seconds(n int64) time.Duration { return time.Duration(n) * time.Second }

// Grant creates lease id with ttl seconds. id must not be NoLease (ErrLeaseNotFound, as
// etcd); ttl above MaxLeaseTTL is ErrLeaseTTLTooLarge; an existing id is ErrLeaseExists;
// ttl below Config.MinTTL is raised to it. On a primary the lease expires at now+TTL.
func (le *Lessor) Grant(id LeaseID, ttl int64) (*Lease, error) {
	if id == NoLease {
		return nil, ErrLeaseNotFound
	}
	if ttl > MaxLeaseTTL {
		return nil, ErrLeaseTTLTooLarge
	}
	le.mu.Lock()
	defer le.mu.Unlock()
	if _, ok := le.leases[id]; ok {
		return nil, ErrLeaseExists
	}
	if ttl < le.minTTL {
		ttl = le.minTTL
	}
	e := &entry{id: id, ttl: ttl, keys: make(map[string]struct{}), expIdx: -1, cpIdx: -1}
	le.leases[id] = e
	if le.primary {
		now := le.now()
		le.setExpiry(e, now.Add(seconds(ttl)))
		le.setCPBase(e, now)
	}
	leaseTotalTTLs.Observe(float64(ttl))
	leaseGranted.Inc()
	return e.snapshot(), nil
}

// Revoke removes lease id and returns its attached keys, sorted, for the caller to delete
// in one revision. A missing lease is ErrLeaseNotFound.
func (le *Lessor) Revoke(id LeaseID) ([]string, error) {
	le.mu.Lock()
	defer le.mu.Unlock()
	e := le.leases[id]
	if e == nil {
		return nil, ErrLeaseNotFound
	}
	keys := e.sortedKeys()
	for _, k := range keys {
		delete(le.owner, k)
	}
	le.unschedule(e)
	delete(le.leases, id)
	leaseRevoked.Inc()
	return keys, nil
}

// Attach attaches key to lease id, detaching it from any other lease first. A missing
// lease is ErrLeaseNotFound.
func (le *Lessor) Attach(id LeaseID, key string) error {
	le.mu.Lock()
	defer le.mu.Unlock()
	e := le.leases[id]
	if e == nil {
		return ErrLeaseNotFound
	}
	le.attach(e, key)
	return nil
}

func (le *Lessor) attach(e *entry, key string) {
	if old, ok := le.owner[key]; ok && old != e.id {
		if oe := le.leases[old]; oe != nil {
			delete(oe.keys, key)
		}
	}
	le.owner[key] = e.id
	e.keys[key] = struct{}{}
}

// Detach detaches key from lease id; it does nothing if the lease is missing or the key
// is not attached to it.
func (le *Lessor) Detach(id LeaseID, key string) {
	le.mu.Lock()
	defer le.mu.Unlock()
	if le.owner[key] != id {
		return
	}
	delete(le.owner, key)
	if e := le.leases[id]; e != nil {
		delete(e.keys, key)
	}
}

// LeaseOf returns the lease key is attached to, or NoLease.
func (le *Lessor) LeaseOf(key string) LeaseID {
	le.mu.Lock()
	defer le.mu.Unlock()
	return le.owner[key]
}

// Lookup returns a snapshot of lease id, or nil if it does not exist.
func (le *Lessor) Lookup(id LeaseID) *Lease {
	le.mu.Lock()
	defer le.mu.Unlock()
	e := le.leases[id]
	if e == nil {
		return nil
	}
	return e.snapshot()
}

// Leases returns snapshots of every lease, sorted by ID.
func (le *Lessor) Leases() []*Lease {
	le.mu.Lock()
	ls := make([]*Lease, 0, len(le.leases))
	for _, e := range le.leases {
		ls = append(ls, e.snapshot())
	}
	le.mu.Unlock()
	sort.Slice(ls, func(i, j int) bool { return ls[i].ID < ls[j].ID })
	return ls
}

// Renew is the leader's keep-alive: the lease expires at now+TTL again and its
// RemainingTTL is cleared (CheckpointDue then returns it at once with Remaining = TTL so
// followers clear theirs too). It returns the TTL. Not primary is ErrNotPrimary; a lease
// that is missing or already past its expiry (its revoke is pending) is ErrLeaseNotFound.
func (le *Lessor) Renew(id LeaseID) (int64, error) {
	le.mu.Lock()
	defer le.mu.Unlock()
	if !le.primary {
		return -1, ErrNotPrimary
	}
	e := le.leases[id]
	if e == nil {
		return -1, ErrLeaseNotFound
	}
	now := le.now()
	if !now.Before(e.expiry) {
		return -1, ErrLeaseNotFound
	}
	le.setExpiry(e, now.Add(seconds(e.ttl)))
	if e.remainingTTL > 0 {
		e.remainingTTL = 0
		e.cpReset = true
		le.setCPBase(e, time.Time{})
	} else if !e.cpReset {
		le.setCPBase(e, now)
	}
	leaseRenewed.Inc()
	return e.ttl, nil
}

// Checkpoint applies a raft-committed checkpoint: RemainingTTL = remaining, where
// remaining <= 0 or >= TTL clears it. As in etcd, it only records what a later Promote
// (or Restore on a primary) starts from: the primary's own expiry is authoritative and is
// not moved (moving it would add the commit latency and the rounding up to every
// checkpoint). On a primary the lease is next due for a checkpoint an interval from now.
// A missing lease is ErrLeaseNotFound.
func (le *Lessor) Checkpoint(id LeaseID, remaining int64) error {
	le.mu.Lock()
	defer le.mu.Unlock()
	e := le.leases[id]
	if e == nil {
		return ErrLeaseNotFound
	}
	if remaining <= 0 || remaining >= e.ttl {
		e.remainingTTL = 0
	} else {
		e.remainingTTL = remaining
	}
	if le.primary && !e.cpReset {
		le.setCPBase(e, le.now())
	}
	return nil
}

// Promote makes the lessor primary (leader): every lease expires at
// now + (RemainingTTL if set, else TTL) + extend.
func (le *Lessor) Promote(extend time.Duration) {
	le.mu.Lock()
	defer le.mu.Unlock()
	le.primary = true
	le.rebuildPrimary(extend)
}

func (le *Lessor) rebuildPrimary(extend time.Duration) {
	now := le.now()
	le.exp.items = le.exp.items[:0]
	le.cps.items = le.cps.items[:0]
	for _, e := range le.leases {
		e.expiry = now.Add(seconds(effectiveTTL(e.ttl, e.remainingTTL)) + extend)
		e.expireAt = e.expiry
		e.cpBase = now
		e.cpReset = false
		e.expIdx = len(le.exp.items)
		le.exp.items = append(le.exp.items, e)
		e.cpIdx = len(le.cps.items)
		le.cps.items = append(le.cps.items, e)
	}
	heap.Init(&le.exp)
	heap.Init(&le.cps)
}

// SetPrimary promotes (as Promote(extend)) or demotes the lessor unless it already is
// in that state, atomically, and reports whether it changed anything: callers that race
// to follow leadership never promote twice (which would extend every lease again).
func (le *Lessor) SetPrimary(primary bool, extend time.Duration) bool {
	le.mu.Lock()
	defer le.mu.Unlock()
	if le.primary == primary {
		return false
	}
	if primary {
		le.primary = true
		le.rebuildPrimary(extend)
		return true
	}
	le.demoteLocked()
	return true
}

// Demote makes the lessor a follower: expiries are forgotten and nothing expires.
func (le *Lessor) Demote() {
	le.mu.Lock()
	defer le.mu.Unlock()
	le.demoteLocked()
}

func (le *Lessor) demoteLocked() {
	le.primary = false
	for _, e := range le.leases {
		e.clearPrimary()
	}
	le.exp.items = nil
	le.cps.items = nil
}

// IsPrimary reports whether the lessor is primary (leader).
func (le *Lessor) IsPrimary() bool {
	le.mu.Lock()
	defer le.mu.Unlock()
	return le.primary
}

// Expired returns, on a primary, up to max (max <= 0: no limit) leases past their expiry,
// earliest first, for the leader to propose revokes for. A returned lease is not returned
// again for Config.ExpiredRetryInterval; after that it is, if still present. A follower
// returns nil.
func (le *Lessor) Expired(max int) []LeaseID {
	le.mu.Lock()
	defer le.mu.Unlock()
	if !le.primary {
		return nil
	}
	now := le.now()
	var ids []LeaseID
	for n := len(le.exp.items); n > 0 && (max <= 0 || len(ids) < max); n-- {
		e := le.exp.items[0]
		if now.Before(e.expireAt) {
			break
		}
		ids = append(ids, e.id)
		e.expireAt = now.Add(le.retry)
		heap.Fix(&le.exp, 0)
	}
	return ids
}

// CheckpointDue returns, on a primary, up to max (max <= 0: no limit) leases whose
// remaining TTL the cluster last learnt at least interval ago (at grant, promote, renew or
// an applied checkpoint) and that have not expired, with their remaining TTL in seconds
// (rounded up), oldest first; and first of all, with Remaining = TTL, leases whose
// checkpointed RemainingTTL a Renew cleared. A returned lease is not due again for
// interval. A follower, or interval <= 0, returns nil. etcd's interval is 5 minutes.
func (le *Lessor) CheckpointDue(interval time.Duration, max int) []Checkpoint {
	le.mu.Lock()
	defer le.mu.Unlock()
	if !le.primary || interval <= 0 {
		return nil
	}
	now := le.now()
	var cps []Checkpoint
	for n := len(le.cps.items); n > 0 && (max <= 0 || len(cps) < max); n-- {
		e := le.cps.items[0]
		if !e.cpBase.IsZero() && now.Sub(e.cpBase) < interval {
			break
		}
		rem := e.expiry.Sub(now)
		switch {
		case e.cpReset:
			cps = append(cps, Checkpoint{ID: e.id, Remaining: e.ttl})
		case rem > 0:
			cps = append(cps, Checkpoint{ID: e.id, Remaining: int64((rem + time.Second - 1) / time.Second)})
		}
		// An expired lease is left to Expired; either way it is not due again for interval.
		e.cpReset = false
		e.cpBase = now
		heap.Fix(&le.cps, 0)
	}
	return cps
}

// Restore replaces every lease with ls (ID, TTL, RemainingTTL as persisted; TTL raised to
// Config.MinTTL, RemainingTTL normalised as by Checkpoint, ID NoLease skipped, a repeated
// ID keeps the last). Keys carried by snapshots from Lookup/Leases are re-attached; the
// server re-attaches the others with Attach. On a primary expiries restart as by
// Promote(0).
func (le *Lessor) Restore(ls []Lease) {
	le.mu.Lock()
	defer le.mu.Unlock()
	le.leases = make(map[LeaseID]*entry, len(ls))
	le.owner = make(map[string]LeaseID)
	for i := range ls {
		l := &ls[i]
		if l.ID == NoLease {
			continue
		}
		e := &entry{id: l.ID, ttl: l.TTL, remainingTTL: l.RemainingTTL, keys: make(map[string]struct{}), expIdx: -1, cpIdx: -1}
		if e.ttl < le.minTTL {
			e.ttl = le.minTTL
		}
		if e.remainingTTL < 0 || e.remainingTTL >= e.ttl {
			e.remainingTTL = 0
		}
		if old := le.leases[l.ID]; old != nil {
			for k := range old.keys {
				delete(le.owner, k)
			}
		}
		le.leases[l.ID] = e
		for _, k := range l.keys {
			le.attach(e, k)
		}
	}
	le.exp.items = nil
	le.cps.items = nil
	if le.primary {
		le.rebuildPrimary(0)
	} else {
		for _, e := range le.leases {
			e.clearPrimary()
		}
	}
}

func (e *entry) clearPrimary() {
	e.expiry, e.expireAt, e.cpBase = time.Time{}, time.Time{}, time.Time{}
	e.cpReset = false
	e.expIdx, e.cpIdx = -1, -1
}

func (e *entry) sortedKeys() []string {
	keys := make([]string, 0, len(e.keys))
	for k := range e.keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (e *entry) snapshot() *Lease {
	return &Lease{ID: e.id, TTL: e.ttl, RemainingTTL: e.remainingTTL, expiry: e.expiry, keys: e.sortedKeys()}
}

func (le *Lessor) setExpiry(e *entry, t time.Time) {
	e.expiry, e.expireAt = t, t
	if e.expIdx >= 0 {
		heap.Fix(&le.exp, e.expIdx)
	} else {
		heap.Push(&le.exp, e)
	}
}

func (le *Lessor) setCPBase(e *entry, t time.Time) {
	e.cpBase = t
	if e.cpIdx >= 0 {
		heap.Fix(&le.cps, e.cpIdx)
	} else {
		heap.Push(&le.cps, e)
	}
}

func (le *Lessor) unschedule(e *entry) {
	if e.expIdx >= 0 {
		heap.Remove(&le.exp, e.expIdx)
	}
	if e.cpIdx >= 0 {
		heap.Remove(&le.cps, e.cpIdx)
	}
}

// timeHeap orders leases by one of their times, then ID (so ties are deterministic).
// The lessor keeps two: by expiry, and by when the cluster last learnt the remaining
// TTL (for checkpoints). Each entry records its position in each heap.
type timeHeap struct {
	items []*entry
	at    func(*entry) time.Time
	index func(*entry) *int
}

func (h *timeHeap) Len() int { return len(h.items) }
func (h *timeHeap) Less(i, j int) bool {
	a, b := h.at(h.items[i]), h.at(h.items[j])
	if !a.Equal(b) {
		return a.Before(b)
	}
	return h.items[i].id < h.items[j].id
}
func (h *timeHeap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	*h.index(h.items[i]), *h.index(h.items[j]) = i, j
}
func (h *timeHeap) Push(x any) {
	e := x.(*entry)
	*h.index(e) = len(h.items)
	h.items = append(h.items, e)
}
func (h *timeHeap) Pop() any {
	old := h.items
	e := old[len(old)-1]
	old[len(old)-1] = nil
	h.items = old[:len(old)-1]
	*h.index(e) = -1
	return e
}
