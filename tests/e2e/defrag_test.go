package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// `etcdctl defrag` shrinks the db file (DbSize in status) and keeps every key, while a
// writer and a reader keep going; on Cairn the writes and reads also go on during the
// rewrite (etcd blocks them, so there they only queue), and no request fails on either.
func TestDefragUnderLoad(t *testing.T) {
	p := framework.StartPair(t)
	for _, m := range p.Members() {
		t.Run(map[bool]string{true: "etcd", false: "cairn"}[m.IsEtcd], func(t *testing.T) {
			testDefragUnderLoad(t, m)
		})
	}
}

// fillThenFree writes keys k0000.. with val (8 writers), deletes the first two
// thousand of them and compacts physically, so the db holds that much free space; it
// returns the revision of the delete.
func fillThenFree(t *testing.T, ctx context.Context, cli *clientv3.Client, keys int, val string) int64 {
	t.Helper()
	putKeys(t, ctx, cli, keys, val)
	dr, err := cli.Delete(ctx, "k0", clientv3.WithRange("k2"))
	if err != nil || dr.Deleted != 2000 {
		t.Fatalf("delete: %v, %v", dr, err)
	}
	if _, err := cli.Compact(ctx, dr.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	return dr.Header.Revision
}

// putKeys writes keys k0000.. (up to k9999) with val, 8 writers at a time.
func putKeys(t *testing.T, ctx context.Context, cli *clientv3.Client, keys int, val string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < keys; i += 8 {
				if _, err := cli.Put(ctx, fmt.Sprintf("k%04d", i), val); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("put: %v", err)
	}
}

func testDefragUnderLoad(t *testing.T, m *framework.Member) {
	cli := m.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	val := strings.Repeat("v", 2048)
	fillThenFree(t, ctx, cli, 3000, val)
	before := clStatus(t, m).DbSize

	var failures, writes, reads atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	load := func(done *atomic.Int64, op func(i int) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if op(i) != nil {
					failures.Add(1)
				}
				done.Add(1)
			}
		}()
	}
	load(&writes, func(i int) error {
		_, err := cli.Put(ctx, fmt.Sprintf("load%03d", i%100), "x")
		return err
	})
	load(&reads, func(i int) error {
		_, err := cli.Get(ctx, fmt.Sprintf("k%04d", 2000+i%1000))
		return err
	})
	out, stderr, err := m.Etcdctl("defrag")
	close(stop)
	wg.Wait()
	if err != nil || !strings.Contains(out, "Finished defragmenting etcd member["+m.ClientURL+"]") {
		t.Fatalf("etcdctl defrag: %v\n%s%s", err, out, stderr)
	}
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d writes and %d reads failed during the defragmentation", n, writes.Load(), reads.Load())
	}
	after := clStatus(t, m).DbSize
	if after >= before*3/4 {
		t.Fatalf("db size %d after defrag, was %d", after, before)
	}
	r, err := cli.Get(ctx, "k", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || r.Count != 1000 {
		t.Fatalf("keys after defrag: %v, %v", r, err)
	}
	m.Stop()
	m.Restart()
	if r := mustGet(t, m.Client(), "k2999"); len(r.Kvs) != 1 || string(r.Kvs[0].Value) != val {
		t.Fatalf("k2999 after defrag and restart: %v", r.Kvs)
	}
}
