//go:build !linux

package wal

import (
	"errors"
	"os"
)

const fiemapExtentUnwritten = 0x800

type fiemapExtent struct {
	logical, length uint64
	flags           uint32
}

func fiemap(*os.File, int64, int64) ([]fiemapExtent, error) {
	return nil, errors.New("FIEMAP is Linux's")
}
