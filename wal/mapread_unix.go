//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package wal

import (
	"fmt"
	"os"
	"syscall"
)

// withSegment calls f with the content of the segment at path, mapped read-only rather
// than read into the heap: a segment is preallocated to 64 MiB, mostly zeros, and a
// restart reads several, which as heap buffers would stay in the member's resident set
// (until the runtime returns them) long after the replay. f must not keep buf: records
// are decoded into copies.
func withSegment(path string, f func(buf []byte) error) error {
	fd, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("wal: read %s: %w", path, err)
	}
	defer fd.Close()
	fi, err := fd.Stat()
	if err != nil {
		return fmt.Errorf("wal: read %s: %w", path, err)
	}
	if fi.Size() == 0 {
		return f(nil)
	}
	buf, err := syscall.Mmap(int(fd.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("wal: map %s: %w", path, err)
	}
	defer func() { _ = syscall.Munmap(buf) }()
	return f(buf)
}
