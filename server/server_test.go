package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/internal/testutil"
	"github.com/cairn-kv/cairn/mvcc"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/mvccpb"
	"go.uber.org/zap/zaptest"
)

// testConfig is a one-member cluster in a temporary data dir. The peer URL is never
// listened on by a single member; it only feeds the member id.
func testConfig(t *testing.T) Config {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peer := url.URL{Scheme: "http", Host: l.Addr().String()}
	l.Close()
	return Config{
		Name:              "m1",
		DataDir:           t.TempDir(),
		AdvertisePeerURLs: []url.URL{peer},
		InitialCluster:    map[string][]url.URL{"m1": {peer}},
		HeartbeatInterval: 10 * time.Millisecond,
		ElectionTimeout:   100 * time.Millisecond,
		Logger:            zaptest.NewLogger(t),
	}
}

func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(s.Stop)
	select {
	case <-s.ReadyNotify():
	case <-time.After(10 * time.Second):
		t.Fatal("member not ready after 10s")
	}
	return s
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustPut(t *testing.T, s *Server, k, v string) *pb.PutResponse {
	t.Helper()
	resp, err := s.Put(ctx(t), &pb.PutRequest{Key: []byte(k), Value: []byte(v)})
	if err != nil {
		t.Fatalf("put %s: %v", k, err)
	}
	return resp
}

func mustGet(t *testing.T, s *Server, k string) *mvccpb.KeyValue {
	t.Helper()
	resp, err := s.Range(ctx(t), &pb.RangeRequest{Key: []byte(k)})
	if err != nil {
		t.Fatalf("get %s: %v", k, err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %d kvs, want 1", k, len(resp.Kvs))
	}
	return resp.Kvs[0]
}

func TestPutGetHeader(t *testing.T) {
	s := startServer(t, testConfig(t))
	p := mustPut(t, s, "a", "1")
	if p.Header.Revision != 2 || p.Header.ClusterId == 0 || p.Header.MemberId != s.ID() || p.Header.RaftTerm == 0 {
		t.Fatalf("put header = %v", p.Header)
	}
	kv := mustGet(t, s, "a")
	if string(kv.Value) != "1" || kv.CreateRevision != 2 || kv.ModRevision != 2 || kv.Version != 1 {
		t.Fatalf("kv = %v", kv)
	}
}

func TestRestartKeepsDataAndIdentity(t *testing.T) {
	cfg := testConfig(t)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	<-s.ReadyNotify()
	for i := 0; i < 50; i++ {
		mustPut(t, s, fmt.Sprintf("k%02d", i), fmt.Sprint(i))
	}
	id, cid := s.ID(), s.ClusterID()
	s.Stop()

	s2 := startServer(t, cfg)
	if s2.ID() != id || s2.ClusterID() != cid {
		t.Fatalf("identity changed: %x/%x -> %x/%x", id, cid, s2.ID(), s2.ClusterID())
	}
	if kv := mustGet(t, s2, "k49"); string(kv.Value) != "49" || kv.ModRevision != 51 {
		t.Fatalf("after restart k49 = %v", kv)
	}
	if got := mustPut(t, s2, "after", "x").Header.Revision; got != 52 {
		t.Fatalf("revision after restart = %d, want 52", got)
	}
	ml, err := s2.MemberList(ctx(t), &pb.MemberListRequest{})
	if err != nil || len(ml.Members) != 1 || ml.Members[0].Name != "m1" {
		t.Fatalf("members after restart = %v, %v", ml, err)
	}
}

// A restart whose store is behind the WAL (the batch was never committed) replays the
// missing entries: here the store is reopened from a copy taken mid-run.
func TestRestartReplaysWhatStoreMissed(t *testing.T) {
	cfg := testConfig(t)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	<-s.ReadyNotify()
	mustPut(t, s, "early", "1")
	s.Stop()
	db := cfg.BackendPath()
	saved, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	s = startServer(t, cfg)
	for i := 0; i < 20; i++ {
		mustPut(t, s, fmt.Sprintf("late%02d", i), "v")
	}
	s.Stop()
	// Roll the store back to before the late writes: only the WAL has them now.
	if err := os.WriteFile(db, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, cfg)
	if kv := mustGet(t, s, "late19"); kv.ModRevision != 22 {
		t.Fatalf("late19 = %v, want mod revision 22", kv)
	}
	if kv := mustGet(t, s, "early"); kv.ModRevision != 2 {
		t.Fatalf("early = %v", kv)
	}
}

func TestSnapshotsPurgeWAL(t *testing.T) {
	cfg := testConfig(t)
	cfg.SnapshotCount = 50
	s := startServer(t, cfg)
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 60; i++ {
				if _, err := s.Put(ctx(t), &pb.PutRequest{Key: []byte(fmt.Sprintf("w%d-%d", w, i)), Value: []byte("v")}); err != nil {
					errc <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	snaps, _ := filepath.Glob(filepath.Join(cfg.SnapPath(), "*.snap"))
	if len(snaps) == 0 || len(snaps) > 5 {
		t.Fatalf("%d snapshot files, want 1..5", len(snaps))
	}
	s.Stop()
	s = startServer(t, cfg)
	resp, err := s.Range(ctx(t), &pb.RangeRequest{Key: []byte("w"), RangeEnd: []byte("x"), CountOnly: true})
	if err != nil || resp.Count != 480 {
		t.Fatalf("after restart from snapshot: count %v, %v; want 480", resp, err)
	}
}

func TestTxnAndErrors(t *testing.T) {
	s := startServer(t, testConfig(t))
	mustPut(t, s, "k", "v1")
	txn := &pb.TxnRequest{
		Compare: []*pb.Compare{{Key: []byte("k"), Target: pb.Compare_VALUE, Result: pb.Compare_EQUAL,
			TargetUnion: &pb.Compare_Value{Value: []byte("v1")}}},
		Success: []*pb.RequestOp{
			{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k"), Value: []byte("v2")}}},
			{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k2"), Value: []byte("x")}}},
		},
	}
	resp, err := s.Txn(ctx(t), txn)
	if err != nil || !resp.Succeeded || resp.Header.Revision != 3 {
		t.Fatalf("txn = %v, %v", resp, err)
	}
	if kv := mustGet(t, s, "k2"); kv.ModRevision != 3 {
		t.Fatalf("k2 = %v: both puts must share revision 3", kv)
	}
	if _, err := s.Put(ctx(t), &pb.PutRequest{Key: []byte("k"), Lease: 42}); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("put with unknown lease: %v", err)
	}
	if _, err := s.Put(ctx(t), &pb.PutRequest{Key: []byte("nokey"), IgnoreValue: true}); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("ignore_value on missing key: %v", err)
	}
	if _, err := s.Compact(ctx(t), &pb.CompactionRequest{Revision: 3, Physical: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Range(ctx(t), &pb.RangeRequest{Key: []byte("k"), Revision: 2}); !errors.Is(err, mvcc.ErrCompacted) {
		t.Fatalf("read below compaction: %v", err)
	}
	if _, err := s.Range(ctx(t), &pb.RangeRequest{Key: []byte("k"), Revision: 100}); !errors.Is(err, mvcc.ErrFutureRev) {
		t.Fatalf("read of future revision: %v", err)
	}
	if _, err := s.Put(ctx(t), &pb.PutRequest{Key: []byte("big"), Value: make([]byte, DefaultMaxRequestBytes+1)}); !errors.Is(err, ErrRequestTooLarge) {
		t.Fatalf("oversized put: %v", err)
	}
}

// eventually waits until cond holds, failing the test after timeout.
var eventually = testutil.Eventually
