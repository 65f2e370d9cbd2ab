package fsutil

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestSyncDir(t *testing.T) {
	if err := SyncDir(t.TempDir()); err != nil {
		t.Fatalf("SyncDir of a directory: %v", err)
	}
	if err := SyncDir(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("SyncDir of a missing directory succeeded")
	}
}

func TestFreeBytesAndIsNoSpace(t *testing.T) {
	free, err := FreeBytes(t.TempDir())
	if err != nil || free == 0 {
		t.Fatalf("FreeBytes = %d, %v; want some free space", free, err)
	}
	if _, err := FreeBytes(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("FreeBytes of a missing dir succeeded")
	}
	wrapped := fmt.Errorf("wal: append: %w", &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC})
	if !IsNoSpace(wrapped) || !IsNoSpace(syscall.EDQUOT) || IsNoSpace(syscall.EIO) || IsNoSpace(nil) {
		t.Fatal("IsNoSpace misclassifies")
	}
}
