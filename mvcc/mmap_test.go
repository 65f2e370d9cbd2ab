package mvcc

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// blockedTimeout is how long a test waits for an operation that must not be blocked.
const blockedTimeout = 5 * time.Second

// newStoreWith opens a store closed at cleanup, after the cleanups registered later (a
// gate's release).
func newStoreWith(t *testing.T, cfg Config) *Store {
	t.Helper()
	s := openStore(t, dbPath(t), cfg)
	t.Cleanup(func() { s.Close() })
	return s
}

// With an initial memory map larger than the db will grow, a commit that grows the db
// does not wait for a long read transaction (a snapshot being sent) to remap.
func TestInitialMmapSizeCommitBesideOpenSnapshot(t *testing.T) {
	s := newStoreWith(t, Config{InitialMmapSize: 64 << 20})
	put(t, s, "a", "1")
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			sn.Close()
		}
	}()
	errc := make(chan error, 1)
	go func() {
		val := bytes.Repeat([]byte("x"), 10<<10)
		tw := s.Write()
		for i := 0; i < 400; i++ { // 4 MB, far past bbolt's first maps
			tw.Put([]byte(fmt.Sprint("big", i)), val, 0)
		}
		tw.End(0, 0)
		errc <- s.Commit()
	}()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(blockedTimeout):
		sn.Close()
		closed = true
		<-errc
		t.Fatalf("a commit growing the db did not finish within %v beside an open snapshot", blockedTimeout)
	}
	if total, _ := s.Size(); total < 4<<20 {
		t.Fatalf("db size %d, want > 4 MB", total)
	}
}
