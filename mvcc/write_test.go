package mvcc

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// storeState is everything a txn can change, as readers and a restart see it.
func storeState(t *testing.T, s *Store) []any {
	t.Helper()
	leases, err := s.Leases()
	if err != nil {
		t.Fatal(err)
	}
	members, err := s.Members()
	if err != nil {
		t.Fatal(err)
	}
	alarms, err := s.Alarms()
	if err != nil {
		t.Fatal(err)
	}
	h, _, _, err := s.HashByRev(0)
	if err != nil {
		t.Fatal(err)
	}
	return []any{s.Rev(), dump(t, s, max(1, s.CompactedRev())), batchKeyCount(t, s), leases, members, alarms, h}
}

// A failing Update undoes every change its function made (keys, including new, revived,
// rewritten and deleted ones, and the other buckets), delivers no event, and still
// records the entry as applied.
func TestUpdateRollsBackOnError(t *testing.T) {
	p := dbPath(t)
	s := openStore(t, p, Config{})
	put(t, s, "a", "1")
	put(t, s, "b", "1")
	put(t, s, "gone", "1")
	del(t, s, "gone", "")
	update(t, s, 5, 1, func(tx *WriteTxn) {
		tx.PutLease(LeaseRecord{ID: 1, TTL: 10})
		tx.PutMember(7, []byte(`{"id":7}`))
	})
	before := storeState(t, s)

	ws := s.NewWatchStream()
	defer ws.Close()
	mustWatch(t, ws, AutoWatchID, "", "\x00", 0, false)

	errRefused := errors.New("refused")
	err := s.Update(6, 2, func(tx *WriteTxn) error {
		tx.Put([]byte("a"), []byte("2"), 0)    // a rewritten key
		tx.Put([]byte("new"), []byte("2"), 0)  // a new key
		tx.Put([]byte("gone"), []byte("2"), 0) // a deleted key revived
		tx.DeleteRange([]byte("b"), nil)
		tx.Put([]byte("b"), []byte("3"), 0) // and put again
		tx.PutLease(LeaseRecord{ID: 1, TTL: 99})
		tx.PutLease(LeaseRecord{ID: 2, TTL: 10})
		tx.DeleteMember(7)
		tx.PutAlarm([]byte("alarm"))
		if rr, err := tx.Range([]byte("a"), []byte{0}, RangeOptions{}); err != nil || len(rr.KVs) != 4 {
			t.Errorf("txn's own view: %v, %v", rr, err)
		}
		return errRefused
	})
	if !errors.Is(err, errRefused) {
		t.Fatalf("Update = %v, want %v", err, errRefused)
	}
	if after := storeState(t, s); !reflect.DeepEqual(after, before) {
		t.Fatalf("after a failed txn:\n%v\nwant\n%v", after, before)
	}
	if i, tm := s.ConsistentIndex(); i != 6 || tm != 2 {
		t.Fatalf("consistent index %d/%d, want 6/2", i, tm)
	}
	expectNone(t, ws, 200*time.Millisecond)

	// The next txn takes the revision the failed one would have had, and the store
	// reopens to the same state.
	if rev := put(t, s, "a", "x"); rev != 6 {
		t.Fatalf("next put at %d, want 6", rev)
	}
	if kv := get(t, s, "a", 0); kv.Version != 2 || kv.CreateRevision != 2 {
		t.Fatalf("a after rollback and put = %v", kv)
	}
	want := storeState(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, p, Config{})
	defer s.Close()
	if got := storeState(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopen:\n%v\nwant\n%v", got, want)
	}
}

// A rollback takes its keys back out of the index under the index lock: readers range
// over the index meanwhile (under -race, the index changing under them was a race).
func TestRollbackWhileReading(t *testing.T) {
	s, _ := newStore(t)
	put(t, s, "k", "1")
	stop := repeatUntilStopped(func() error {
		r := s.Read()
		defer r.End()
		_, err := r.Range([]byte("a"), []byte("z"), RangeOptions{})
		return err
	})
	errRefused := errors.New("refused")
	for i := range 200 {
		err := s.Update(uint64(i+2), 1, func(tx *WriteTxn) error {
			tx.Put([]byte(fmt.Sprintf("new%03d", i)), []byte("v"), 0) // a key index created, then dropped
			tx.Put([]byte("k"), []byte("2"), 0)
			return errRefused
		})
		if !errors.Is(err, errRefused) {
			t.Fatalf("Update = %v", err)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if rr := rangeKVs(t, s, []byte("a"), []byte("z"), RangeOptions{}); len(rr.KVs) != 1 || string(rr.KVs[0].Value) != "1" {
		t.Fatalf("after the rollbacks: %v", rr.KVs)
	}
}

// A failed bbolt commit (a full disk) stops the store cleanly: every later Update and
// commit answers ErrBackendFailed instead of crashing on the dropped batch, nothing of the
// failed batch is ever committed, and the file reopens at its last commit.
func TestCommitFailureStopsWrites(t *testing.T) {
	p := dbPath(t)
	s := openStore(t, p, Config{BatchInterval: time.Hour})
	put(t, s, "a", "1")
	update(t, s, 3, 1, nil)
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	s.wmu.Lock()
	s.b.failCommit = errors.New("no space left on device")
	s.wmu.Unlock()
	put(t, s, "b", "1") // applied in memory, in the batch that will fail
	if err := s.Commit(); !errors.Is(err, ErrBackendFailed) {
		t.Fatalf("Commit = %v, want ErrBackendFailed", err)
	}
	err := s.Update(5, 1, func(tx *WriteTxn) error {
		t.Error("Update ran its function on a failed store")
		return nil
	})
	if !errors.Is(err, ErrBackendFailed) {
		t.Fatalf("Update after a failed commit = %v, want ErrBackendFailed", err)
	}
	if _, err := s.Compact(2); !errors.Is(err, ErrBackendFailed) {
		t.Fatalf("Compact after a failed commit = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close after a failed commit: %v", err)
	}
	s = openStore(t, p, Config{})
	defer s.Close()
	if i, _ := s.ConsistentIndex(); i != 3 {
		t.Fatalf("consistent index after reopen = %d, want 3 (the last commit)", i)
	}
	if kv := get(t, s, "b", 0); kv != nil {
		t.Fatalf("b from the failed batch reached the file: %v", kv)
	}
}

// UpdateEach gives each of an entry's requests what Update would have given it as an
// entry of its own: consecutive revisions (none for a request that writes nothing), a
// failed one undone alone, each one's events to watchers at its own revision; the entry
// is recorded as applied once, and the same requests through Update one entry each leave
// the same keys.
func TestUpdateEachMatchesUpdates(t *testing.T) {
	errRefused := errors.New("refused")
	reqs := []func(tx *WriteTxn) error{
		func(tx *WriteTxn) error { tx.Put([]byte("a"), []byte("1"), 0); return nil },
		func(tx *WriteTxn) error { tx.Put([]byte("b"), []byte("1"), 0); return nil },
		func(tx *WriteTxn) error { tx.Put([]byte("a"), []byte("x"), 0); return errRefused },
		func(tx *WriteTxn) error { return nil }, // writes nothing
		func(tx *WriteTxn) error {
			tx.DeleteRange([]byte("b"), nil)
			tx.Put([]byte("a"), []byte("2"), 0)
			return nil
		},
	}
	wantErrs := []error{nil, nil, errRefused, nil, nil}
	wantRevs := []int64{2, 3, 3, 3, 4}

	batched, _ := newStore(t)
	ws := batched.NewWatchStream()
	defer ws.Close()
	mustWatch(t, ws, AutoWatchID, "", "\x00", 0, false)
	var revs []int64
	var errs []error
	err := batched.UpdateEach(7, 3, len(reqs), func(i int, tx *WriteTxn) error { return reqs[i](tx) },
		func(i int, err error) {
			revs = append(revs, batched.Rev())
			errs = append(errs, err)
		})
	if err != nil {
		t.Fatalf("UpdateEach = %v", err)
	}
	if !reflect.DeepEqual(revs, wantRevs) || !reflect.DeepEqual(errs, wantErrs) {
		t.Fatalf("revisions %v errors %v, want %v %v", revs, errs, wantRevs, wantErrs)
	}
	if i, tm := batched.ConsistentIndex(); i != 7 || tm != 3 {
		t.Fatalf("consistent index %d/%d, want 7/3", i, tm)
	}
	var got []int64
	for len(got) < 4 {
		for _, e := range recv(t, ws).Events {
			got = append(got, e.Kv.ModRevision)
		}
	}
	if !reflect.DeepEqual(got, []int64{2, 3, 4, 4}) {
		t.Fatalf("events at revisions %v, want [2 3 4 4]", got)
	}

	single, _ := newStore(t)
	for i, f := range reqs {
		if err := single.Update(uint64(i+1), 3, f); !errors.Is(err, wantErrs[i]) {
			t.Fatalf("Update %d = %v, want %v", i, err, wantErrs[i])
		}
	}
	if a, b := storeState(t, batched), storeState(t, single); !reflect.DeepEqual(a, b) {
		t.Fatalf("batched:\n%v\none by one:\n%v", a, b)
	}
}
