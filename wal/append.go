package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cairn-kv/cairn/internal/fsutil"
	"go.uber.org/zap"
)

// append writes buf at the end of the last segment and, if sync is set, makes it and
// everything before it durable.
func (w *WAL) append(buf []byte, sync bool) error {
	start := time.Now()
	if w.zero == nil {
		w.zero = newZeroFiller(w.f, w.size, SegmentSizeBytes)
	}
	w.zero.beforeAppend(w.size+int64(len(buf)), len(buf))
	var n int
	err := w.hookNoSpace("append", w.f.Name())
	if err != nil {
		n, _ = w.f.WriteAt(buf[:len(buf)/2], w.size)
	} else {
		n, err = w.f.WriteAt(buf, w.size)
	}
	if err == nil {
		w.unsynced = true
		if sync {
			err = w.sync()
		}
	}
	writeDuration.Observe(time.Since(start).Seconds())
	writeBytes.Add(float64(n))
	if err != nil {
		// Cutting the partial write keeps a restart from seeing garbage mid-log.
		terr := w.f.Truncate(w.size)
		err = fmt.Errorf("wal: append to %s at offset %d: %w", w.segs[len(w.segs)-1].path, w.size, err)
		// A write refused for lack of space, cut off again, leaves the log as it was
		// before it: the same append may be tried again once there is space. After a
		// failed fsync (or a failed cut-off) the file's contents are unknown, so every
		// later append is refused.
		if n < len(buf) && fsutil.IsNoSpace(err) && terr == nil {
			return err
		}
		w.err = err
		return w.err
	}
	w.size += int64(n)
	return nil
}

// maybeCut starts a new segment once the current one is over SegmentSizeBytes.
func (w *WAL) maybeCut() error {
	if w.size <= SegmentSizeBytes {
		return nil
	}
	cur := w.segs[len(w.segs)-1]
	// Only the last segment may end in a torn write: once the next one exists, a crash
	// that lost this one's unsynced tail (e.g. a commit-only hard state) would leave a
	// short segment mid-log whose CRC chain breaks, and the log would not open. So it
	// must be durable before its successor appears.
	if w.unsynced {
		if err := w.sync(); err != nil {
			w.err = fmt.Errorf("wal: sync %s before cutting: %w", cur.path, err)
			return w.err
		}
	}
	next := segment{seq: cur.seq + 1, index: w.lastIndex + 1}
	next.path = filepath.Join(w.dir, segmentName(next.seq, next.index))
	hdr, crc := w.segmentHeader(w.crc)
	var f *os.File
	err := w.hookNoSpace("cut", next.path)
	if err == nil {
		f, err = createSegment(w.dir, next, hdr, w.syncedHook())
	}
	if err != nil {
		if w.cutNoSpace(next, err) {
			return nil
		}
		w.err = err
		return err
	}
	if w.cutErr != nil {
		w.lg.Info("wal: cut a segment again after running out of space", zap.String("file", next.path))
		w.cutErr = nil
	}
	old := w.f
	w.f, w.size, w.crc = f, int64(len(hdr)), crc
	w.segs = append(w.segs, next)
	if w.zero != nil {
		w.zero.reset(f, w.size, SegmentSizeBytes)
	}
	// Closing the old file drops its lock; the new segment was locked before it appeared.
	if err := old.Close(); err != nil {
		w.lg.Warn("wal: close finished segment", zap.String("file", cur.path), zap.Error(err))
	}
	if w.hooks != nil && w.hooks.cut != nil {
		w.hooks.cut()
	}
	w.lg.Debug("wal: cut segment", zap.String("file", next.path))
	return nil
}

// cutNoSpace tells whether a failed cut to next only ran out of space before the new
// segment appeared: then the current one, synced, stays the last and takes the appends
// (growing past SegmentSizeBytes) and every later append tries the cut again. The
// failure is logged once, not at every retry.
func (w *WAL) cutNoSpace(next segment, err error) bool {
	if !fsutil.IsNoSpace(err) {
		return false
	}
	if _, serr := os.Stat(next.path); !errors.Is(serr, os.ErrNotExist) {
		return false // the new segment may be in place: its log would not chain on
	}
	if w.cutErr == nil {
		w.lg.Warn("wal: cannot cut a new segment for lack of disk space; appending to the current one and retrying at each append",
			zap.String("file", w.segs[len(w.segs)-1].path), zap.Int64("size", w.size), zap.Error(err))
	}
	w.cutErr = err
	return true
}

// hookNoSpace is the error a noSpace hook injects for op, or nil.
func (w *WAL) hookNoSpace(op, path string) error {
	if w.hooks == nil || w.hooks.noSpace == nil || !w.hooks.noSpace(op) {
		return nil
	}
	return &os.PathError{Op: "write", Path: path, Err: syscall.ENOSPC}
}
