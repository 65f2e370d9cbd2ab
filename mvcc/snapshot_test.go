package mvcc

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// snapshotFile writes s's committed contents to a file and returns its path.
func snapshotFile(t *testing.T, s *Store) string {
	t.Helper()
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer sn.Close()
	var buf bytes.Buffer
	n, err := sn.WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) || n != sn.Size() {
		t.Fatalf("WriteTo = %d, %v (wrote %d, size %d)", n, err, buf.Len(), sn.Size())
	}
	path := filepath.Join(t.TempDir(), "received.snap.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRestoreFromSnapshot replaces a lagging store's contents with a leader's: reads,
// revisions and the consistent index follow the new contents, a synced watcher gets the
// events it missed, one whose next revision was compacted away is told so, and the new
// contents survive a reopen.
func TestRestoreFromSnapshot(t *testing.T) {
	leader, _ := newStore(t)
	follower, fpath := newStore(t)
	for _, s := range []*Store{leader, follower} {
		put(t, s, "a", "1") // 2
		put(t, s, "b", "1") // 3
	}
	ws := follower.NewWatchStream()
	defer ws.Close()
	idAll := mustWatch(t, ws, AutoWatchID, "", "\x00", 0, false)
	idOld := mustWatch(t, ws, AutoWatchID, "b", "", 2, false) // catches up at once
	if got := collectEvents(t, ws, 1); !eq(got[idOld], []string{"PUT b=1@3"}) {
		t.Fatalf("old watcher got %v", got)
	}
	// The follower applied something the leader's db also has, uncommitted.
	put(t, follower, "c", "1") // 4
	put(t, leader, "c", "1")   // 4
	if got := collectEvents(t, ws, 1); !eq(got[idAll], []string{"PUT c=1@4"}) {
		t.Fatalf("watcher got %v", got)
	}

	put(t, leader, "a", "2") // 5
	del(t, leader, "b", "")  // 6
	put(t, leader, "d", "1") // 7
	update(t, leader, 42, 3, nil)
	path := snapshotFile(t, leader)

	if err := follower.Restore(path); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("received file still there after Restore: %v", err)
	}
	if rev := follower.Rev(); rev != 7 {
		t.Fatalf("Rev = %d, want 7", rev)
	}
	if ci, term := follower.ConsistentIndex(); ci != 42 || term != 3 {
		t.Fatalf("ConsistentIndex = %d/%d, want 42/3", ci, term)
	}
	rr := rangeKVs(t, follower, []byte{0}, []byte{0}, RangeOptions{})
	if got := keysOf(rr.KVs); !eq(got, []string{"a", "c", "d"}) {
		t.Fatalf("keys after restore = %v", got)
	}
	if kv := get(t, follower, "a", 0); string(kv.Value) != "2" || kv.Version != 2 {
		t.Fatalf("a = %+v", kv)
	}
	if kv := get(t, follower, "b", 5); kv == nil || string(kv.Value) != "1" {
		t.Fatalf("b at 5 = %+v", kv)
	}
	got := collectEvents(t, ws, 4)
	if want := []string{"PUT a=2@5", "DELETE b@6", "PUT d=1@7"}; !eq(got[idAll], want) {
		t.Fatalf("watcher after restore got %v, want %v", got[idAll], want)
	}
	if want := []string{"DELETE b@6"}; !eq(got[idOld], want) {
		t.Fatalf("key watcher after restore got %v, want %v", got[idOld], want)
	}
	// Writes continue on the new contents and reach the watcher live.
	put(t, follower, "e", "1")
	if got := collectEvents(t, ws, 1); !eq(got[idAll], []string{"PUT e=1@8"}) {
		t.Fatalf("live event after restore: %v", got)
	}

	if err := follower.Close(); err != nil {
		t.Fatal(err)
	}
	reopened := openStore(t, fpath, Config{})
	defer reopened.Close()
	if rev := reopened.Rev(); rev != 8 {
		t.Fatalf("reopened Rev = %d, want 8", rev)
	}
}

// TestRestoreCompactedWatcher: a watcher whose next revision the new contents compacted
// away gets the compaction notice; an unfinished compaction of the old contents stops.
func TestRestoreCompactedWatcher(t *testing.T) {
	leader, _ := newStore(t)
	follower, _ := newStore(t)
	for _, s := range []*Store{leader, follower} {
		put(t, s, "a", "1") // 2
	}
	ws := follower.NewWatchStream()
	defer ws.Close()
	id := mustWatch(t, ws, AutoWatchID, "a", "", 0, false)
	for i := 0; i < 5; i++ {
		put(t, leader, "a", "x") // 3..7
	}
	done, err := leader.Compact(6)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, done)
	path := snapshotFile(t, leader)
	if err := follower.Restore(path); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if cr := follower.CompactedRev(); cr != 6 {
		t.Fatalf("CompactedRev = %d, want 6", cr)
	}
	r := recv(t, ws)
	if r.WatchID != id || r.CompactRevision != 6 {
		t.Fatalf("response = %+v, want compaction notice at 6 for %d", r, id)
	}
}
