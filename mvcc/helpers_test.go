package mvcc

import (
	"path/filepath"
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
