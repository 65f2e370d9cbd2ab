//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package wal

import (
	"errors"
	"os"
)

var errLocked = errors.New("wal: segment is locked by another writer")

// lockFile is a no-op where flock is unavailable; Cairn only supports running on the
// platforms above, this keeps the package building elsewhere.
func lockFile(*os.File) error { return nil }
