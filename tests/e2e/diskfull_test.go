package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The text every disk-full refusal starts with (Cairn's internal/errs.ErrDiskFull).
const diskFullText = "cairn: not enough free disk space, writes refused"

// freeBytes is the free space of path's file system.
func freeBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		t.Fatalf("statfs %s: %v", path, err)
	}
	return int64(st.Bavail) * st.Bsize
}

// ballast fills path's file system with a file until leave bytes are free, and returns
// the file's path.
func ballast(t *testing.T, path string, leave int64) string {
	t.Helper()
	p := filepath.Join(path, "ballast")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for i := 0; i < 100000; i++ {
		n := freeBytes(t, path) - leave
		if n <= 0 {
			return p
		}
		if _, err := f.Write(chunk[:min(n, int64(len(chunk)))]); err != nil {
			t.Fatalf("ballast: %v (free %d)", err, freeBytes(t, path))
		}
	}
	t.Fatal("ballast: the file system never filled")
	return p
}

// requireDiskFull asserts err is the member's disk-full refusal: ResourceExhausted with
// a text that names why (want).
func requireDiskFull(t *testing.T, err error, want string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted || !strings.HasPrefix(st.Message(), diskFullText) || !strings.Contains(st.Message(), want) {
		t.Fatalf("got %v; want ResourceExhausted %q ... %q", err, diskFullText, want)
	}
}

// putUntilRefused puts values of size bytes (keys prefix-N) until the member refuses one
// with its disk-full error, and returns the keys it acknowledged and the refusal. Puts
// that fail otherwise (a timeout while a write waits for space) are not acknowledged.
func putUntilRefused(t *testing.T, m *framework.Member, prefix string, size, most int) (acked []string, refusal error) {
	t.Helper()
	kv := raw(m)
	val := []byte(strings.Repeat("x", size))
	for i := 0; i < most; i++ {
		key := fmt.Sprintf("%s-%04d", prefix, i)
		c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := kv.Put(c, &pb.PutRequest{Key: []byte(key), Value: val})
		cancel()
		if err == nil {
			acked = append(acked, key)
			continue
		}
		if st, _ := status.FromError(err); st.Code() == codes.ResourceExhausted {
			return acked, err
		}
		t.Logf("put %s: %v (not acknowledged)", key, err)
	}
	t.Fatalf("no disk-full refusal after %d puts (%d acknowledged)", most, len(acked))
	return nil, nil
}

// requireSized asserts every key has a value of size bytes (serializable reads when
// serializable is set).
func requireSized(t *testing.T, cli *clientv3.Client, keys []string, size int, serializable bool) {
	t.Helper()
	for _, k := range keys {
		var opts []clientv3.OpOption
		if serializable {
			opts = append(opts, clientv3.WithSerializable())
		}
		resp := mustGet(t, cli, k, opts...)
		if len(resp.Kvs) != 1 || len(resp.Kvs[0].Value) != size {
			t.Fatalf("acknowledged %s: %d kvs", k, len(resp.Kvs))
		}
	}
}

func requireMetric(t *testing.T, m *framework.Member, line string) {
	t.Helper()
	_, body, err := m.HTTPGet("/metrics")
	if err != nil || !strings.Contains(body, line) {
		t.Fatalf("/metrics has no %q (err %v)", line, err)
	}
}

// The proactive guard: with its data dir (and WAL) on a small tmpfs filled by a ballast
// below the default reserve (80 MiB), the member refuses puts, writing txns and lease
// grants with ResourceExhausted naming itself, the directory and the free bytes, logs it
// once, stays up, serves reads, deletes and compaction; once the ballast is gone it takes
// writes again without a restart; kill -9 and a restart keep every acknowledged write.
// Cairn-only: etcd has no such guard (it panics on ENOSPC).
func TestDiskFullReserveRefusesWrites(t *testing.T) {
	framework.CairnOnly(t, "etcd has no free-space guard and panics on ENOSPC")
	m := framework.NewMember(t, framework.Options{Binary: framework.BinaryCairn})
	fs := framework.MountTmpfs(t, m, m.DataDir, "160m")
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.WaitReady(framework.DefaultReadyTimeout); err != nil {
		t.Fatal(err)
	}
	cli := m.Client()
	var acked []string
	for i := 0; i < 20; i++ {
		k := fmt.Sprintf("before-%02d", i)
		mustPut(t, cli, k, strings.Repeat("v", 1024))
		acked = append(acked, k)
	}
	requireMetric(t, m, "cairn_disk_writes_refused 0")

	bp := ballast(t, fs.Path, 40<<20)
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for err == nil && time.Now().Before(deadline) {
		if _, err = raw(m).Put(ctx(t), &pb.PutRequest{Key: []byte("refused"), Value: []byte("v")}); err == nil {
			acked = append(acked, "refused")
			time.Sleep(100 * time.Millisecond)
		}
	}
	requireDiskFull(t, err, "below the reserve of 83886080 bytes")
	st, _ := status.FromError(err)
	if !strings.Contains(st.Message(), filepath.Join(m.DataDir, "member")) || !strings.Contains(st.Message(), "bytes free") {
		t.Fatalf("refusal %q names neither the directory nor its free bytes", st.Message())
	}
	_, err = raw(m).Txn(ctx(t), &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("t"), Value: []byte("v")}}}}})
	requireDiskFull(t, err, "bytes free")
	_, err = pb.NewLeaseClient(m.Client().ActiveConnection()).LeaseGrant(ctx(t), &pb.LeaseGrantRequest{TTL: 60})
	requireDiskFull(t, err, "bytes free")
	if _, err := cli.Put(ctx(t), "refused", "v"); err == nil || !strings.Contains(err.Error(), diskFullText) {
		t.Fatalf("clientv3 put = %v, want the disk-full refusal (not retried)", err)
	}
	if !m.Running() {
		t.Fatal("member exited on a full disk")
	}
	requireSized(t, cli, acked[:20], 1024, false)
	if resp, err := cli.Delete(ctx(t), acked[0]); err != nil || resp.Deleted != 1 {
		t.Fatalf("delete while refusing writes: %v", err)
	}
	acked = acked[1:]
	if _, err := cli.Compact(ctx(t), mustGet(t, cli, acked[0]).Header.Revision); err != nil {
		t.Fatalf("compaction while refusing writes: %v", err)
	}
	requireMetric(t, m, "cairn_disk_writes_refused 1")
	if n := len(framework.GrepLines(m.CurrentRunLog(), "refusing client writes")); n != 1 {
		t.Fatalf("%d log lines on refusing writes, want 1 (one per change)", n)
	}

	if err := os.Remove(bp); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, err := cli.Put(ctx(t), "after", "v")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes still refused 10s after space returned: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !m.LogContains("accepting client writes again") {
		t.Fatal("no log line on accepting writes again")
	}
	requireMetric(t, m, "cairn_disk_writes_refused 0")

	m.Kill()
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.WaitReady(framework.DefaultReadyTimeout); err != nil {
		t.Fatal(err)
	}
	cli = m.NewClient()
	requireSized(t, cli, acked[:19], 1024, false)
	if resp := mustGet(t, cli, "after"); len(resp.Kvs) != 1 {
		t.Fatal("the write after space returned was lost")
	}
	if resp := mustGet(t, cli, "before-00"); len(resp.Kvs) != 0 {
		t.Fatal("the delete made while refusing writes was lost")
	}
}

// restart starts m again after a kill and waits until it serves.
func restart(t *testing.T, m *framework.Member) *clientv3.Client {
	t.Helper()
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.WaitReady(framework.DefaultReadyTimeout); err != nil {
		t.Fatal(err)
	}
	return m.NewClient()
}

// putAgain waits (up to 20 s: the retries back off to 5 s) until a put succeeds.
func putAgain(t *testing.T, cli *clientv3.Client, key string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := cli.Put(c, key, "v")
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes still failing 20s after space returned: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Real ENOSPC in bbolt: with the reserve check off (--disk-reserve-bytes=-1) and a
// ballast leaving 2 MiB, the backend's commits fail for lack of space. The member stays
// up, keeps the batch in memory, refuses writes naming the failed commit, serves every
// acknowledged write; killed and restarted while the disk is still full it starts (no
// crash loop), replays its log and serves them again; once the ballast is gone the commit
// goes through and writes are taken without a restart; a last kill -9 and restart keep
// every acknowledged write. Cairn-only: etcd panics on a failed bbolt commit.
func TestDiskFullBackendENOSPC(t *testing.T) {
	framework.CairnOnly(t, "etcd panics when a bbolt commit fails")
	m := framework.NewMember(t, framework.Options{Binary: framework.BinaryCairn, Flags: []string{"--disk-reserve-bytes=-1"}})
	fs := framework.MountTmpfs(t, m, m.DataDir, "96m")
	cli := restart(t, m)
	mustPut(t, cli, "first", strings.Repeat("v", 1024))

	bp := ballast(t, fs.Path, 2<<20)
	const size = 64 << 10
	acked, refusal := putUntilRefused(t, m, "b", size, 400)
	requireDiskFull(t, refusal, "a backend commit failed for lack of space")
	if !strings.Contains(refusal.Error(), "no space left on device") || len(acked) == 0 {
		t.Fatalf("refusal %v after %d acknowledged puts", refusal, len(acked))
	}
	t.Logf("%d puts acknowledged before the refusal", len(acked))
	if !m.Running() || !m.LogContains("backend commit failed for lack of disk space") {
		t.Fatal("member exited, or did not log the failed commit")
	}
	requireSized(t, cli, acked, size, false)

	m.Kill()
	cli = restart(t, m) // the disk is still full
	requireSized(t, cli, acked, size, false)
	// Writes are refused once the replayed batch's first commit has failed (a put may
	// still be taken before that: it is in the log, and must survive like the others).
	more, err := putUntilRefused(t, m, "r", size, 50)
	requireDiskFull(t, err, "no space left on device")
	acked = append(acked, more...)

	if err := os.Remove(bp); err != nil {
		t.Fatal(err)
	}
	putAgain(t, cli, "after")
	if !m.LogContains("backend commit succeeded again") {
		t.Fatal("no log line on the commit going through")
	}
	m.Kill()
	cli = restart(t, m)
	requireSized(t, cli, acked, size, false)
	if len(mustGet(t, cli, "after").Kvs) != 1 || len(mustGet(t, cli, "first").Kvs) != 1 {
		t.Fatal("a write acknowledged around the full disk was lost")
	}
}

// Real ENOSPC in the WAL: --wal-dir on its own small tmpfs, the data dir on the regular
// disk. Once the 64 MiB segment is full its cut cannot preallocate the next one (logged,
// appends go on in the current segment), then an append fails: the raft loop waits and
// retries, the member stays up, refuses writes naming the failed log write, serves
// serializable reads; once the ballast is gone the log write goes through and writes are
// taken again without a restart; kill -9 and a restart keep every acknowledged write.
// Cairn-only: etcd panics when a WAL write fails.
func TestDiskFullWALENOSPC(t *testing.T) {
	framework.CairnOnly(t, "etcd panics when a WAL write fails")
	m := framework.NewMember(t, framework.Options{Binary: framework.BinaryCairn})
	walDir := filepath.Join(m.Dir, "wal")
	fs := framework.MountTmpfs(t, m, walDir, "88m")
	m.AddFlags("--wal-dir="+walDir, "--disk-reserve-bytes=-1")
	cli := restart(t, m)

	bp := ballast(t, fs.Path, 8<<20)
	const size = 512 << 10
	acked, refusal := putUntilRefused(t, m, "w", size, 400)
	requireDiskFull(t, refusal, "a raft log write failed for lack of space")
	t.Logf("%d puts acknowledged before the refusal", len(acked))
	if len(acked) < 100 || !m.Running() {
		t.Fatalf("%d puts acknowledged (want the whole 64 MiB segment), running %v", len(acked), m.Running())
	}
	for _, line := range []string{"cannot cut a new segment for lack of disk space", "cannot write the raft log for lack of disk space"} {
		if !m.LogContains(line) {
			t.Fatalf("no %q in the log", line)
		}
	}
	requireSized(t, cli, acked[len(acked)-5:], size, true)

	if err := os.Remove(bp); err != nil {
		t.Fatal(err)
	}
	putAgain(t, cli, "after")
	if !m.LogContains("raft log written again") {
		t.Fatal("no log line on the log write going through")
	}
	m.Kill()
	cli = restart(t, m)
	requireSized(t, cli, acked, size, false)
	if len(mustGet(t, cli, "after").Kvs) != 1 {
		t.Fatal("the write after space returned was lost")
	}
}
