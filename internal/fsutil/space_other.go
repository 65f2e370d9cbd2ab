//go:build !(linux || darwin)

package fsutil

import (
	"errors"
	"fmt"
)

// FreeBytes is not available on this platform.
func FreeBytes(dir string) (uint64, error) {
	return 0, fmt.Errorf("statfs %s: %w", dir, errors.ErrUnsupported)
}
