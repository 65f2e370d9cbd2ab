package auth

import (
	"sync"
	"time"
)

// FailureLimiter bounds failed authentications per source (a client address), against
// password guessing: each source may fail Burst times in a row, then once per Refill;
// successes cost nothing. etcd has no such limit; Cairn's is generous enough that no
// client that knows its password ever meets it. The zero value is not usable: use
// NewFailureLimiter.
type FailureLimiter struct {
	burst  float64
	refill time.Duration
	now    func() time.Time

	mu      sync.Mutex
	sources map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// maxSources bounds the table: past it, sources whose bucket has refilled are dropped.
const maxSources = 4096

// NewFailureLimiter allows burst failures per source, then one per refill; now nil
// means time.Now.
func NewFailureLimiter(burst int, refill time.Duration, now func() time.Time) *FailureLimiter {
	if now == nil {
		now = time.Now
	}
	return &FailureLimiter{burst: float64(burst), refill: refill, now: now, sources: map[string]*bucket{}}
}

func (l *FailureLimiter) level(b *bucket, now time.Time) float64 {
	return min(l.burst, b.tokens+float64(now.Sub(b.at))/float64(l.refill))
}

// Allow says whether source may try to authenticate now.
func (l *FailureLimiter) Allow(source string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.sources[source]
	return b == nil || l.level(b, l.now()) >= 1
}

// Failed records a failed attempt of source.
func (l *FailureLimiter) Failed(source string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.sources[source]
	if b == nil {
		if len(l.sources) >= maxSources {
			for s, ob := range l.sources {
				if l.level(ob, now) >= l.burst {
					delete(l.sources, s)
				}
			}
		}
		b = &bucket{tokens: l.burst, at: now}
		l.sources[source] = b
	}
	b.tokens, b.at = max(l.level(b, now)-1, 0), now
}
