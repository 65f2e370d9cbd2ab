//go:build linux || darwin

package fsutil

import (
	"fmt"
	"syscall"
)

// FreeBytes is the space left on dir's file system for an unprivileged writer (statfs:
// available blocks times the block size).
func FreeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
