package server

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Below the reserve the member refuses puts, writing txns and lease grants with an error
// naming itself, the directory and its free bytes, serves reads, deletes and read-only
// txns, and lifts the refusal by itself once space returns.
func TestDiskGuardRefusesWritesWhileSpaceIsLow(t *testing.T) {
	var free atomic.Uint64
	free.Store(1 << 40)
	cfg := testConfig(t)
	cfg.FreeBytes = func(string) (uint64, error) { return free.Load(), nil }
	cfg.DiskReserveBytes = 1 << 20
	cfg.DiskCheckInterval = 10 * time.Millisecond
	s := startServer(t, cfg)
	mustPut(t, s, "a", "1")

	free.Store(1000)
	var err error
	eventually(t, 5*time.Second, "a put refused", func() bool {
		_, err = s.Put(ctx(t), &pb.PutRequest{Key: []byte("b"), Value: []byte("1")})
		return err != nil
	})
	want := fmt.Sprintf("member %x: %s has 1000 bytes free, below the reserve of 1048576 bytes", s.ID(), cfg.SnapPath())
	if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), want) {
		t.Fatalf("put while space is low = %v; want ErrDiskFull with %q", err, want)
	}
	txn := &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("c")}}}}}
	if _, err := s.Txn(ctx(t), txn); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("writing txn = %v, want ErrDiskFull", err)
	}
	if _, err := s.LeaseGrant(ctx(t), &pb.LeaseGrantRequest{TTL: 60}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("lease grant = %v, want ErrDiskFull", err)
	}
	if kv := mustGet(t, s, "a"); string(kv.Value) != "1" {
		t.Fatalf("read while space is low: %v", kv)
	}
	if _, err := s.DeleteRange(ctx(t), &pb.DeleteRangeRequest{Key: []byte("a")}); err != nil {
		t.Fatalf("delete while space is low: %v", err)
	}
	if n := testutil.ToFloat64(s.disk.refused); n < 3 {
		t.Fatalf("cairn_disk_writes_refused_total = %v, want at least 3", n)
	}

	free.Store(1 << 40)
	eventually(t, 5*time.Second, "puts accepted again", func() bool {
		_, err = s.Put(ctx(t), &pb.PutRequest{Key: []byte("b"), Value: []byte("2")})
		return err == nil
	})
	if kv := mustGet(t, s, "b"); string(kv.Value) != "2" {
		t.Fatalf("b after space returned: %v", kv)
	}
}

// A negative reserve turns the free-space check off.
func TestDiskGuardOff(t *testing.T) {
	cfg := testConfig(t)
	cfg.FreeBytes = func(string) (uint64, error) { return 0, nil }
	cfg.DiskReserveBytes = -1
	s := startServer(t, cfg)
	mustPut(t, s, "a", "1")
}
