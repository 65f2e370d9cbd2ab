//go:build linux

package wal

import (
	"errors"
	"os"
	"syscall"
)

// fdatasync flushes f's data and only the metadata needed to read it back (its size),
// not timestamps: the cheaper half of fsync, and all a log append needs.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }

// preallocate extends f to size with allocated (zero) blocks, so appends within it
// change no file size and fdatasync has only data to flush. A file system without
// fallocate just grows the file as it is written.
func preallocate(f *os.File, size int64) error {
	err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
	if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS) {
		return nil
	}
	return err
}
