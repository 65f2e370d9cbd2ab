package mvcc

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"
)

func TestWatcherGroupMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	key := func() []byte { return []byte{byte('a' + rng.IntN(8)), byte('a' + rng.IntN(8))} }
	g := newWatcherGroup()
	var live []*watcher
	seq := uint64(0)
	for step := 0; step < 3000; step++ {
		if len(live) > 0 && rng.IntN(3) == 0 {
			i := rng.IntN(len(live))
			g.delete(live[i])
			live = append(live[:i], live[i+1:]...)
		} else {
			seq++
			w := &watcher{seq: seq, key: key()}
			switch rng.IntN(3) {
			case 1:
				w.end = key()
				if bytes.Compare(w.key, w.end) >= 0 {
					w.end = append(bytes.Clone(w.key), 0)
				}
			case 2:
				w.fromKey, w.end = true, []byte{0}
			}
			g.add(w)
			live = append(live, w)
		}
		if step%50 != 0 {
			continue
		}
		for q := 0; q < 20; q++ {
			k := key()[:1+rng.IntN(2)]
			var got, want []uint64
			g.match(k, func(w *watcher) { got = append(got, w.seq) })
			for _, w := range live {
				in := bytes.Equal(k, w.key)
				if w.isRange() {
					in = bytes.Compare(w.key, k) <= 0 && (w.fromKey || bytes.Compare(k, w.end) < 0)
				}
				if in {
					want = append(want, w.seq)
				}
			}
			sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
			sort.Slice(want, func(i, j int) bool { return want[i] < want[j] })
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("step %d key %q: got %v, want %v", step, k, got, want)
			}
		}
	}
	if g.size() != len(live) {
		t.Fatalf("size %d, want %d", g.size(), len(live))
	}
}

// TestWatchManyWatchers: 10,000 watchers (single keys, prefixes, from-key, all) on 100
// streams each receive every event of their range once, in order.
func TestWatchManyWatchers(t *testing.T) {
	s, _ := newStore(t)
	const (
		streams = 100
		perStr  = 100
		writes  = 100
	)
	type spec struct{ key, end string }
	specOf := func(i int) spec {
		switch i % 4 {
		case 0:
			return spec{fmt.Sprintf("k%02d", i%100), ""}
		case 1:
			return spec{"k0", "k1"}
		case 2:
			return spec{"k50", "\x00"}
		default:
			return spec{"", "\x00"}
		}
	}
	matches := func(sp spec, k string) bool {
		switch {
		case sp.end == "":
			return k == sp.key
		case sp.end == "\x00":
			return k >= sp.key
		default:
			return k >= sp.key && k < sp.end
		}
	}
	wss := make([]*WatchStream, streams)
	for j := range wss {
		wss[j] = s.NewWatchStream()
		for i := 0; i < perStr; i++ {
			sp := specOf(j + i)
			if id := mustWatch(t, wss[j], AutoWatchID, sp.key, sp.end, 0, false); id != WatchID(i) {
				t.Fatalf("id %d", id)
			}
		}
	}
	keyOf := func(n int) string { return fmt.Sprintf("k%02d", (n*37)%100) }
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for j, ws := range wss {
		want := make([]int, perStr)
		for i := range want {
			for n := 0; n < writes; n++ {
				if matches(specOf(j+i), keyOf(n)) {
					want[i]++
				}
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := make([]int, perStr)
			last := make([]int64, perStr)
			remaining := 0
			for _, n := range want {
				remaining += n
			}
			timeout := time.After(60 * time.Second)
			for remaining > 0 {
				select {
				case <-ws.Ready():
					rs, _ := ws.Take()
					for _, r := range rs {
						for _, e := range r.Events {
							if e.Kv.ModRevision <= last[r.WatchID] {
								errs <- fmt.Errorf("stream %d watch %d: rev %d after %d", j, r.WatchID, e.Kv.ModRevision, last[r.WatchID])
								return
							}
							if string(e.Kv.Key) != keyOf(int(e.Kv.ModRevision-2)) {
								errs <- fmt.Errorf("stream %d watch %d: key %s at rev %d", j, r.WatchID, e.Kv.Key, e.Kv.ModRevision)
								return
							}
							last[r.WatchID] = e.Kv.ModRevision
							got[r.WatchID]++
							remaining--
						}
					}
				case <-timeout:
					errs <- fmt.Errorf("stream %d: %d events missing", j, remaining)
					return
				}
			}
			for i := range got {
				if got[i] != want[i] {
					errs <- fmt.Errorf("stream %d watch %d: %d events, want %d", j, i, got[i], want[i])
					return
				}
			}
		}()
	}
	start := time.Now()
	for n := 0; n < writes; n++ {
		put(t, s, keyOf(n), "v")
	}
	wrote := time.Since(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d writes in %v, all delivered in %v", writes, wrote, time.Since(start))
	for _, ws := range wss {
		ws.Close()
	}
}

// TestWatchMemoryPerIdleWatcher logs the heap an idle single-key watcher costs.
func TestWatchMemoryPerIdleWatcher(t *testing.T) {
	s, _ := newStore(t)
	ws := s.NewWatchStream()
	defer ws.Close()
	const n = 50000
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("/registry/pods/default/pod-%06d", i))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		if _, _, err := ws.Watch(AutoWatchID, keys[i], nil, 0, false); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("%.0f bytes per idle single-key watcher (key of %d bytes)",
		float64(after.HeapAlloc-before.HeapAlloc)/n, len(keys[0]))
	runtime.KeepAlive(keys)
}

// TestWatchConcurrentCatchUp: watchers start at past revisions while writes go on and
// their readers pause now and then; each sees every revision from its start once, in
// order, whether it was delivered live or read back from the backend.
func TestWatchConcurrentCatchUp(t *testing.T) {
	s := openStore(t, dbPath(t), Config{BatchLimit: 300, BatchInterval: 5 * time.Millisecond})
	defer s.Close()
	const writes = 3000
	for i := 0; i < 200; i++ {
		put(t, s, fmt.Sprintf("k%d", i), "v")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < writes; i++ {
			tw := s.Write()
			tw.Put([]byte(fmt.Sprintf("k%d", i%50)), []byte("v"), 0)
			tw.End(0, 0)
			if i%10 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for j := 0; j < 8; j++ {
		ws := s.NewWatchStream()
		start := 1 + int64(j)*100 + int64(j%3)
		if _, _, err := ws.Watch(AutoWatchID, []byte("k"), []byte("l"), start, j%2 == 0); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer ws.Close()
			next := max(start, 2)
			rng := rand.New(rand.NewPCG(uint64(j), 7))
			for next <= writes+201 {
				select {
				case <-ws.Ready():
					rs, _ := ws.Take()
					for _, r := range rs {
						for _, e := range r.Events {
							if e.Kv.ModRevision != next {
								errs <- fmt.Errorf("stream %d: rev %d, want %d", j, e.Kv.ModRevision, next)
								return
							}
							next++
						}
					}
					if rng.IntN(10) == 0 {
						time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
					}
				case <-time.After(20 * time.Second):
					errs <- fmt.Errorf("stream %d: stuck before rev %d", j, next)
					return
				}
			}
		}()
	}
	<-done
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
