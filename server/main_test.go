package server

import (
	"os"
	"testing"

	"github.com/cairn-kv/cairn/wal"
)

// TestMain keeps WAL segments small: each one is preallocated to its full size, and
// these tests start many members.
func TestMain(m *testing.M) {
	wal.SegmentSizeBytes = 1 << 20
	os.Exit(m.Run())
}
