package mvcc

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"
)

// A commit that fails for lack of space does not fail the store: the batch is rebuilt in
// memory, reads and writes go on, CommitBlocked reports it, the commit is retried with
// backoff and, once space returns, everything (the dropped batch and what came after it)
// reaches the file.
func TestCommitNoSpaceKeepsBatchAndRecovers(t *testing.T) {
	p := dbPath(t)
	s := openStore(t, p, Config{BatchInterval: time.Hour})
	put(t, s, "a", "1")
	update(t, s, 3, 1, nil)
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	s.wmu.Lock()
	s.b.failCommit = &os.PathError{Op: "write", Path: p, Err: syscall.ENOSPC}
	s.wmu.Unlock()
	put(t, s, "b", "1")
	update(t, s, 4, 1, func(tx *WriteTxn) { tx.Put([]byte("c"), []byte("1"), 0) })
	err := s.Commit()
	if !errors.Is(err, ErrDiskFull) || !errors.Is(err, syscall.ENOSPC) || errors.Is(err, ErrBackendFailed) {
		t.Fatalf("Commit on a full disk = %v, want ErrDiskFull wrapping ENOSPC", err)
	}
	if !errors.Is(s.CommitBlocked(), syscall.ENOSPC) {
		t.Fatalf("CommitBlocked = %v", s.CommitBlocked())
	}
	// Within the backoff a commit is not even tried.
	if err := s.Commit(); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("second Commit = %v", err)
	}
	// Writes and reads go on, from the rebuilt batch.
	update(t, s, 5, 1, func(tx *WriteTxn) {
		tx.Put([]byte("d"), []byte("1"), 0)
		tx.DeleteRange([]byte("a"), nil)
	})
	for _, k := range []string{"b", "c", "d"} {
		if kv := get(t, s, k, 0); kv == nil || string(kv.Value) != "1" {
			t.Fatalf("%s while commits fail: %v", k, kv)
		}
	}
	if kv := get(t, s, "a", 0); kv != nil {
		t.Fatalf("deleted a still there: %v", kv)
	}
	s.wmu.Lock()
	s.b.failCommit = nil
	s.retryAt = time.Time{}
	s.wmu.Unlock()
	if err := s.Commit(); err != nil {
		t.Fatalf("Commit once space returned: %v", err)
	}
	if err := s.CommitBlocked(); err != nil {
		t.Fatalf("CommitBlocked after recovery = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, p, Config{})
	defer s.Close()
	if i, _ := s.ConsistentIndex(); i != 5 {
		t.Fatalf("consistent index after reopen = %d, want 5", i)
	}
	for _, k := range []string{"b", "c", "d"} {
		if kv := get(t, s, k, 0); kv == nil {
			t.Fatalf("%s lost across the failed commit", k)
		}
	}
	if kv := get(t, s, "a", 0); kv != nil {
		t.Fatalf("a's delete lost: %v", kv)
	}
}

// The commit loop retries a blocked commit by itself; an error that is not a full disk
// still fails the store.
func TestCommitNoSpaceRetriedByCommitLoop(t *testing.T) {
	p := dbPath(t)
	s := openStore(t, p, Config{BatchInterval: 10 * time.Millisecond})
	defer s.Close()
	s.wmu.Lock()
	s.b.failCommit = fmt.Errorf("disk: %w", syscall.EDQUOT)
	s.wmu.Unlock()
	update(t, s, 2, 1, func(tx *WriteTxn) { tx.Put([]byte("k"), []byte("v"), 0) })
	deadline := time.Now().Add(5 * time.Second)
	for s.CommitBlocked() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the commit loop never hit the failing commit")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.wmu.Lock()
	s.b.failCommit = nil
	s.wmu.Unlock()
	for s.CommitBlocked() != nil {
		if time.Now().After(deadline) {
			t.Fatal("the commit loop never retried the blocked commit")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if rev := s.committedRev.Load(); rev != s.Rev() {
		t.Fatalf("committed revision %d, want %d", rev, s.Rev())
	}
}
