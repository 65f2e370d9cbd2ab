package mvcc

import (
	"fmt"
	"runtime"
	"testing"
)

// The index of keys with one revision each stays within its per-key budget: with a
// million keys it is most of a member's memory.
func TestIndexMemoryPerKey(t *testing.T) {
	const n = 100000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ti := newTreeIndex()
	for i := 0; i < n; i++ {
		ti.put([]byte(fmt.Sprintf("/pods/%010d", i)), revision{main: int64(i + 2)})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perKey := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.0f bytes per key", perKey)
	if perKey > 105 {
		t.Fatalf("%.0f bytes per key of 16 bytes, want at most 105", perKey)
	}
	runtime.KeepAlive(ti)
}
