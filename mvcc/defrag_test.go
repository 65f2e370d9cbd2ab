package mvcc

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// Defragment shrinks the file while writes and reads go on (a write completes while the
// copy is paused), keeps every revision, including the writes made during the copy, and
// the compact file reopens to the same state.
func TestDefragmentWhileWriting(t *testing.T) {
	p := dbPath(t)
	s := openStore(t, p, Config{})
	val := strings.Repeat("v", 1000)
	update(t, s, 1, 1, func(tx *WriteTxn) {
		for i := 0; i < 12000; i++ {
			tx.Put([]byte(fmt.Sprintf("k%05d", i)), []byte(val), 0)
		}
	})
	update(t, s, 2, 1, func(tx *WriteTxn) { tx.DeleteRange([]byte("k"), []byte("k08000")) })
	done, err := s.Compact(s.Rev())
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, done)
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Size()

	paused, resume := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s.hooks.defragCopy = func() {
		once.Do(func() {
			close(paused)
			<-resume
		})
	}
	defragErr := make(chan error, 1)
	go func() { defragErr <- s.Defragment() }()
	select {
	case <-paused:
	case <-time.After(10 * time.Second):
		t.Fatal("the copy did not start")
	}
	// Writes (and a commit) and reads go on while the copy runs.
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for i := 0; i < 50; i++ {
			put(t, s, fmt.Sprintf("during%02d", i), "x")
		}
		del(t, s, "k10000", "")
		_ = s.Commit()
	}()
	select {
	case <-wrote:
	case <-time.After(5 * time.Second):
		t.Fatal("writes blocked by the defragmentation")
	}
	if rr := rangeKVs(t, s, []byte("during"), []byte("durinh"), RangeOptions{}); len(rr.KVs) != 50 {
		t.Fatalf("read during defragmentation: %d keys", len(rr.KVs))
	}
	close(resume)
	if err := <-defragErr; err != nil {
		t.Fatal(err)
	}
	put(t, s, "after", "y")
	after, _ := s.Size()
	if after >= before/2 {
		t.Fatalf("db size %d after defragmentation, was %d", after, before)
	}
	want := storeState(t, s)
	if rr := rangeKVs(t, s, []byte("k"), []byte("l"), RangeOptions{}); rr.Count != 3999 {
		t.Fatalf("%d keys k*, want 3999", rr.Count)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, p, Config{})
	defer s.Close()
	if got := storeState(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopen:\n%v\nwant\n%v", got[:3], want[:3])
	}
}

// A copy left behind by a crash mid-defragmentation is removed at open; the db file
// itself was never touched.
func TestDefragmentLeftoverCopyRemoved(t *testing.T) {
	p := dbPath(t)
	s := openStore(t, p, Config{})
	put(t, s, "a", "1")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p+defragSuffix, []byte("half a copy"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, p, Config{})
	defer s.Close()
	if _, err := os.Stat(p + defragSuffix); !os.IsNotExist(err) {
		t.Fatalf("leftover copy: %v", err)
	}
	if kv := get(t, s, "a", 0); kv == nil || string(kv.Value) != "1" {
		t.Fatalf("a = %v", kv)
	}
}
