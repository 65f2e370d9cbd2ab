package mvcc

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/proto/mvccpb"
)

func dbPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "member", "snap", "db")
}

func openStore(t *testing.T, path string, cfg Config) *Store {
	t.Helper()
	s, err := Open(zaptest.NewLogger(t), path, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	p := dbPath(t)
	s := openStore(t, p, Config{})
	t.Cleanup(func() { s.Close() })
	return s, p
}

// repeatUntilStopped runs f over and over in a goroutine until stop is called, or f
// fails; stop waits for the goroutine and returns f's error.
func repeatUntilStopped(f func() error) (stop func() error) {
	quit := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for {
			select {
			case <-quit:
				done <- nil
				return
			default:
			}
			if err := f(); err != nil {
				done <- err
				return
			}
		}
	}()
	return func() error {
		close(quit)
		return <-done
	}
}

// put writes one key in its own write txn and returns the new revision.
func put(t *testing.T, s *Store, key, val string) int64 {
	t.Helper()
	tw := s.Write()
	tw.Put([]byte(key), []byte(val), 0)
	tw.End(0, 0)
	return s.Rev()
}

func del(t *testing.T, s *Store, key, end string) int {
	t.Helper()
	var e []byte
	if end != "" {
		e = []byte(end)
	}
	tw := s.Write()
	n := len(tw.DeleteRange([]byte(key), e))
	tw.End(0, 0)
	return n
}

func rangeKVs(t *testing.T, s *Store, key, end []byte, o RangeOptions) *RangeResult {
	t.Helper()
	r := s.Read()
	defer r.End()
	rr, err := r.Range(key, end, o)
	if err != nil {
		t.Fatalf("Range(%q, %q, %+v): %v", key, end, o, err)
	}
	return rr
}

func get(t *testing.T, s *Store, key string, rev int64) *mvccpb.KeyValue {
	t.Helper()
	rr := rangeKVs(t, s, []byte(key), nil, RangeOptions{Rev: rev})
	if len(rr.KVs) == 0 {
		return nil
	}
	return rr.KVs[0]
}

func keysOf(kvs []*mvccpb.KeyValue) []string {
	out := []string{}
	for _, kv := range kvs {
		out = append(out, string(kv.Key))
	}
	return out
}

// batchKeyCount counts "key" bucket entries including uncommitted ones.
func batchKeyCount(t *testing.T, s *Store) int {
	t.Helper()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	n := 0
	_ = s.b.tx.Bucket(bucketKey).ForEach(func(k, v []byte) error { n++; return nil })
	return n
}

// committedKeyCount counts "key" bucket entries bbolt has committed.
func committedKeyCount(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	err := s.b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketKey).ForEach(func(k, v []byte) error { n++; return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func waitDone(t *testing.T, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("compaction did not finish")
	}
}

func unmarshal(b []byte, kv *mvccpb.KeyValue) error { return proto.Unmarshal(b, kv) }

// Write and End let a test hold a write transaction open across checks; End ends it as
// Update does (once: a deferred End after an explicit one is a no-op) and releases the
// write lock.
func (s *Store) Write() *WriteTxn { return s.write() }

var endedTxns sync.Map

func (t *WriteTxn) End(index, term uint64) []*mvccpb.Event {
	if _, done := endedTxns.LoadOrStore(t, true); done {
		return nil
	}
	evs := t.end(index, term)
	t.s.wmu.Unlock()
	return evs
}

// update is Update for a test whose function cannot fail.
func update(t *testing.T, s *Store, index, term uint64, fn func(*WriteTxn)) {
	t.Helper()
	err := s.Update(index, term, func(tx *WriteTxn) error {
		if fn != nil {
			fn(tx)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update(%d, %d): %v", index, term, err)
	}
}

// Compact compacts in a write txn of its own, keeping the recorded consistent index.
func (s *Store) Compact(rev int64) (done <-chan struct{}, err error) {
	index, term := s.ConsistentIndex()
	err = s.Update(index, term, func(t *WriteTxn) error {
		done, err = t.Compact(rev)
		return err
	})
	return done, err
}
