package fsutil

import (
	"errors"
	"syscall"
)

// IsNoSpace reports whether err is a file system out of space (ENOSPC) or a user out of
// disk quota (EDQUOT): a write that may succeed once space returns.
func IsNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
