//go:build !linux

package mvcc

// dropResident is a no-op where madvise(MADV_DONTNEED) is not used (see the Linux one).
func dropResident(addr, n uintptr) {}
