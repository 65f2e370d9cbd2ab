//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package wal

import (
	"fmt"
	"os"
)

// withSegment calls f with the content of the segment at path.
func withSegment(path string, f func(buf []byte) error) error {
	buf, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("wal: read %s: %w", path, err)
	}
	return f(buf)
}
