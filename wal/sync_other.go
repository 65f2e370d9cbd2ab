//go:build !linux

package wal

import "os"

func fdatasync(f *os.File) error { return f.Sync() }

// preallocate is a no-op here: the file grows as it is written.
func preallocate(*os.File, int64) error { return nil }
