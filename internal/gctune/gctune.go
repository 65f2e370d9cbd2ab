package gctune

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"time"
)

const (
	// Headroom is the heap growth allowed between collections.
	Headroom = 64 << 20
	// MinPercent bounds how often a large heap is collected.
	MinPercent = 50
	// MaxPercent bounds the headroom of a tiny heap (4 MiB live: Headroom).
	MaxPercent = 1600
	// interval is how often the live heap is read.
	interval = time.Second
	// liveHeap is the runtime metric of the heap marked live by the last collection.
	liveHeap = "/gc/heap/live:bytes"
)

// Percent is the GC percentage for a live heap of live bytes.
func Percent(live uint64) int {
	if live == 0 {
		return MaxPercent
	}
	return int(min(MaxPercent, max(MinPercent, 100*Headroom/live)))
}

// Enabled says whether environ leaves the GC policy to Run: neither GOGC nor GOMEMLIMIT
// is set.
func Enabled(environ []string) bool {
	for _, kv := range environ {
		if strings.HasPrefix(kv, "GOGC=") || strings.HasPrefix(kv, "GOMEMLIMIT=") {
			return false
		}
	}
	return true
}

// Run sets the GC percentage from the live heap every second until ctx ends, then
// restores the one it found.
func Run(ctx context.Context) {
	sample := []metrics.Sample{{Name: liveHeap}}
	orig := debug.SetGCPercent(100) // reads it
	debug.SetGCPercent(orig)
	cur := orig
	defer debug.SetGCPercent(orig)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return // an old runtime without the metric: leave GOGC alone
		}
		if p := Percent(sample[0].Value.Uint64()); p != cur {
			debug.SetGCPercent(p)
			cur = p
		}
	}
}
