package mvcc

import (
	"os"

	"golang.org/x/sys/unix"
)

var osPageSize = uintptr(os.Getpagesize())

// dropResident tells the kernel this process no longer needs the pages of bbolt's
// memory map that cover [addr, addr+n) (madvise MADV_DONTNEED): they leave the
// process's resident set but stay in the page cache, and a later read of them faults
// them back in from there, unchanged (bbolt maps the file shared and read-only and
// writes it with pwrite, so the page cache is always the file's content). Caller holds
// a bbolt transaction open, so the map is not replaced meanwhile.
func dropResident(addr, n uintptr) {
	start := addr &^ (osPageSize - 1)
	end := (addr + n + osPageSize - 1) &^ (osPageSize - 1)
	if end > start {
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, start, end-start, unix.MADV_DONTNEED)
	}
}
