package wal

import (
	"encoding/binary"
	"os"
	"syscall"
	"unsafe"
)

const (
	fsIocFiemap           = 0xC020660B // _IOWR('f', 11, struct fiemap)
	fiemapFlagSync        = 0x1
	fiemapExtentUnwritten = 0x800
	fiemapHeaderSize      = 32
	fiemapExtentSize      = 56
	fiemapMaxExtents      = 64
)

type fiemapExtent struct {
	logical, length uint64
	flags           uint32
}

// fiemap lists the extents of f overlapping off..off+n (struct fiemap of linux/fiemap.h).
func fiemap(f *os.File, off, n int64) ([]fiemapExtent, error) {
	buf := make([]byte, fiemapHeaderSize+fiemapMaxExtents*fiemapExtentSize)
	le := binary.LittleEndian
	le.PutUint64(buf[0:], uint64(off))
	le.PutUint64(buf[8:], uint64(n))
	le.PutUint32(buf[16:], fiemapFlagSync)
	le.PutUint32(buf[24:], fiemapMaxExtents)
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(&buf[0]))); errno != 0 {
		return nil, errno
	}
	mapped := int(le.Uint32(buf[20:]))
	out := make([]fiemapExtent, 0, mapped)
	for i := range mapped {
		e := buf[fiemapHeaderSize+i*fiemapExtentSize:]
		out = append(out, fiemapExtent{logical: le.Uint64(e[0:]), length: le.Uint64(e[16:]), flags: le.Uint32(e[40:])})
	}
	return out, nil
}
