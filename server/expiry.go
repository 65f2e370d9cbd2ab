package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// expiryTicks per request timeout: a request's timeout ends between timeout and
// timeout + timeout/expiryTicks after it began.
const expiryTicks = 64

// requestExpiry hands out request timeouts as shared ones: the requests that begin within
// the same tick (the timeout / expiryTicks) get the same expiry, which ends once the
// timeout has passed for the last of them. One timer per tick instead of a
// context.WithTimeout per request, which cost eight allocations (the context, its timer
// and Done channel, an entry in the parent's set of children) and ~3% of a member's CPU
// under put-100.
type requestExpiry struct {
	timeout, tick time.Duration
	cur           atomic.Pointer[expiry]
	mu            sync.Mutex // serializes making the next tick's expiry
}

func newRequestExpiry(timeout time.Duration) *requestExpiry {
	return &requestExpiry{timeout: timeout, tick: timeout / expiryTicks}
}

// get is the expiry of a request beginning now.
func (r *requestExpiry) get() *expiry {
	now := time.Now()
	if e := r.cur.Load(); e != nil && now.Sub(e.begin) < r.tick {
		return e
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.cur.Load(); e != nil && now.Sub(e.begin) < r.tick {
		return e
	}
	after := r.timeout + r.tick
	e := &expiry{begin: now, deadline: now.Add(after), done: make(chan struct{})}
	time.AfterFunc(after, func() {
		e.expired.Store(true)
		close(e.done)
	})
	r.cur.Store(e)
	return e
}

// expiry is a context.Context that ends, with DeadlineExceeded, at its deadline; it
// carries no values. It is what raft's Propose is given while a leader is known (which
// Propose then never waits for), and what every request of its tick waits on for its
// timeout, next to its own context.
type expiry struct {
	begin, deadline time.Time
	done            chan struct{}
	expired         atomic.Bool // set before done is closed
}

func (e *expiry) Deadline() (time.Time, bool) { return e.deadline, true }
func (e *expiry) Done() <-chan struct{}       { return e.done }
func (e *expiry) Value(any) any               { return nil }

func (e *expiry) Err() error {
	if e.expired.Load() {
		return context.DeadlineExceeded
	}
	return nil
}

// bounded is ctx ending at e's deadline at the latest: for a wait that must also end
// with the request's own context.
func (e *expiry) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithDeadline(ctx, e.deadline)
}
