package server

import (
	"fmt"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/lease"
	"github.com/cairn-kv/cairn/mvcc"
	"go.uber.org/zap"
)

// TestRestoreLeasesStreams: restoring the lessor re-attaches every key that names a
// lease without holding the db's values in memory at once. 50k keys of 1 KB values
// (50 MB) are restored; the live heap may grow by far less than that (a quarter).
func TestRestoreLeasesStreams(t *testing.T) {
	const (
		keys      = 50000
		valueSize = 1024
		leases    = 10
	)
	path := filepath.Join(t.TempDir(), "db")
	st, err := mvcc.Open(zap.NewNop(), path, mvcc.Config{})
	if err != nil {
		t.Fatal(err)
	}
	index := uint64(0)
	update := func(fn func(tx *mvcc.WriteTxn)) {
		index++
		if err := st.Update(index, 1, func(tx *mvcc.WriteTxn) error { fn(tx); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	for l := 1; l <= leases; l++ {
		update(func(tx *mvcc.WriteTxn) { tx.PutLease(mvcc.LeaseRecord{ID: int64(l), TTL: 60}) })
	}
	value := make([]byte, valueSize)
	for i := 0; i < keys; i += 1000 {
		update(func(tx *mvcc.WriteTxn) {
			for j := i; j < i+1000; j++ {
				value[0] = byte(j)
				tx.Put([]byte(fmt.Sprintf("key-%06d", j)), value, int64(j%leases+1))
			}
		})
	}
	update(func(tx *mvcc.WriteTxn) { tx.Put([]byte("no-lease"), value, 0) })
	// Reopened, as at boot: every value is in the db file, none buffered in memory.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err = mvcc.Open(zap.NewNop(), path, mvcc.Config{}); err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := &Server{lg: zap.NewNop(), store: st, lessor: lease.New(lease.Config{MinTTL: 1})}

	// A small GC target keeps garbage (values already visited) from passing for live
	// heap; the sampler records the highest heap seen while the restore runs.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	base := heapBytes()
	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			peak = max(peak, heapBytes())
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	began := time.Now()
	err = s.restoreLeases()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	attached := 0
	for l := 1; l <= leases; l++ {
		le := s.lessor.Lookup(lease.LeaseID(l))
		if le == nil {
			t.Fatalf("lease %d not restored", l)
		}
		attached += len(le.Keys())
	}
	if attached != keys {
		t.Fatalf("%d keys attached to leases, want %d", attached, keys)
	}
	growth := int64(peak) - int64(base)
	total := int64(keys * valueSize)
	t.Logf("restore of %d keys (%d MB of values) took %v; heap %d MB before, peak growth %.1f MB",
		keys, total>>20, time.Since(began).Round(time.Millisecond), base>>20, float64(growth)/(1<<20))
	if growth > total/4 {
		t.Fatalf("restoring leases grew the heap by %.1f MB at its peak, more than a quarter of the %d MB of values: it holds them all",
			float64(growth)/(1<<20), total>>20)
	}
}

// heapBytes is the heap occupied by objects (live or not yet swept), read without
// stopping the world.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
