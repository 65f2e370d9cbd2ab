package raftnode

import (
	"time"

	"github.com/cairn-kv/cairn/internal/fsutil"
	"go.uber.org/zap"
)

// Pacing of the Ready loop's retries of a write that failed for lack of space.
const (
	noSpaceFirstRetry = 100 * time.Millisecond
	noSpaceMaxRetry   = 5 * time.Second
)

// untilSpace runs persist until it succeeds, fails for another reason than a full disk,
// or the node stops. While the disk is full the Ready loop waits here (every retry
// logged, with backoff): nothing of the Ready is acknowledged, sent by a follower or
// applied, raft gets no ticks (a leader's followers elect another leader), and DiskFull
// reports it. The WAL and snapshot files leave a write refused for lack of space as
// before it, so the same Ready can be written again.
func (n *Node) untilSpace(persist func() error) error {
	backoff := noSpaceFirstRetry
	for {
		err := persist()
		if err == nil || !fsutil.IsNoSpace(err) {
			if p := n.diskFull.Swap(nil); p != nil && err == nil {
				n.lg.Info("raft log written again after running out of disk space", zap.NamedError("last-error", *p))
			}
			return err
		}
		if n.diskFull.Swap(&err) == nil {
			n.lg.Error("cannot write the raft log for lack of disk space; waiting for space (nothing is acknowledged meanwhile)",
				zap.Duration("retry-in", backoff), zap.Error(err))
		} else {
			n.lg.Warn("raft log still cannot be written for lack of disk space", zap.Duration("retry-in", backoff), zap.Error(err))
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-n.stopc:
			t.Stop()
			return errStopped
		}
		backoff = min(2*backoff, noSpaceMaxRetry)
	}
}

// DiskFull is the write of the raft log or of a snapshot that failed for lack of space
// and that the Ready loop waits to retry, or nil.
func (n *Node) DiskFull() error {
	if p := n.diskFull.Load(); p != nil {
		return *p
	}
	return nil
}
