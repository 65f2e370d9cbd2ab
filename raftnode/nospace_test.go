package raftnode

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"

	"go.uber.org/zap/zaptest"
)

// The Ready loop retries a write that failed for lack of space until it succeeds,
// reporting DiskFull meanwhile; any other error, or a stop, ends the wait.
func TestUntilSpaceRetries(t *testing.T) {
	n := &Node{lg: zaptest.NewLogger(t), stopc: make(chan struct{})}
	full := &os.PathError{Op: "write", Path: "seg.wal", Err: syscall.ENOSPC}
	calls := 0
	err := n.untilSpace(func() error {
		calls++
		if calls < 3 {
			if calls == 2 && n.DiskFull() == nil {
				t.Error("DiskFull is nil while the write is retried")
			}
			return fmt.Errorf("raftnode: save to wal: %w", full)
		}
		return nil
	})
	if err != nil || calls != 3 || n.DiskFull() != nil {
		t.Fatalf("untilSpace = %v after %d calls, DiskFull %v; want success after 3, DiskFull nil", err, calls, n.DiskFull())
	}
	other := errors.New("checksum mismatch")
	if err := n.untilSpace(func() error { return other }); !errors.Is(err, other) {
		t.Fatalf("untilSpace with another error = %v", err)
	}
	close(n.stopc)
	if err := n.untilSpace(func() error { return full }); !errors.Is(err, errStopped) {
		t.Fatalf("untilSpace after Stop = %v, want errStopped", err)
	}
}
