package main

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/fsutil"
	"github.com/cairn-kv/cairn/server"
)

// Pacing of the start attempts while the disk is full.
const (
	startNoSpaceFirstRetry = time.Second
	startNoSpaceMaxRetry   = 30 * time.Second
)

// newMember starts the member. While that fails for lack of disk space (opening the
// backend or the WAL may have to write) it waits, logging the free space at every
// attempt, and tries again until ctx is done: a supervisor restarting a member on a full
// disk must not make it fail and exit in a loop. Any other error returns at once.
func newMember(ctx context.Context, sc server.Config, lg *zap.Logger) (*server.Server, error) {
	wait := startNoSpaceFirstRetry
	for {
		srv, err := server.New(sc)
		if err == nil || !fsutil.IsNoSpace(err) {
			return srv, err
		}
		fields := []zap.Field{zap.Duration("retry-in", wait), zap.Error(err)}
		for _, dir := range []string{sc.DataDir, sc.WALPath()} {
			free, ferr := fsutil.FreeBytes(dir)
			if ferr != nil {
				continue
			}
			fields = append(fields, zap.Dict("dir", zap.String("path", dir), zap.Uint64("free-bytes", free)))
		}
		lg.Error("cannot start the member for lack of disk space; waiting for space", fields...)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		wait = min(2*wait, startNoSpaceMaxRetry)
	}
}
