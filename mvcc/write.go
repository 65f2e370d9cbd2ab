package mvcc

import (
	"bytes"
	"fmt"

	"github.com/cairn-kv/cairn/internal/errs"
	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// ErrBackendFailed marks a storage failure (a bbolt write or commit that failed, a stored
// value that does not decode). The store then refuses every later write and never commits
// again: what it holds in memory may be ahead of bbolt, so the member must stop and replay
// its log from the last commit.
var ErrBackendFailed = errs.ErrBackendFailed

// Update runs fn as the write transaction of the raft entry (index, term), the only way
// to change the store. Everything fn writes gets main revision Rev()+1 and the next sub
// revision; readers see none of it until Update returns.
//
// If fn returns an error, every change it made is undone (keys, index, every bucket) and
// Update returns that error: a failed request changes nothing. Either way the entry is
// recorded as applied, in the same batch as its changes, so a restart replays exactly
// the entries after it. A storage failure, in fn or in the commit, returns an error
// wrapping ErrBackendFailed; from then on Update refuses every call with it. fn may be
// nil for an entry that changes nothing but must still be recorded.
func (s *Store) Update(index, term uint64, fn func(t *WriteTxn) error) error {
	t := s.write()
	defer s.wmu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	var err error
	if fn != nil {
		err = fn(t)
	}
	if err != nil && t.err == nil {
		t.rollback()
	}
	if t.err != nil {
		s.fail(t.err)
		return t.err
	}
	t.end(index, term)
	if s.failed != nil {
		return s.failed
	}
	return err
}

// UpdateEach runs n write transactions, fn(0..n-1), for the one raft entry (index, term)
// that holds n requests: each is exactly what Update would make of it as an entry of its
// own (its own revision, the next after the one before it, none if it writes nothing;
// undone alone if it fails), and after(i, err) runs once transaction i has ended, before
// the next begins (still under the write lock: it must not call the Store). The entry is
// recorded as applied once, after the last, and no commit falls in between, so a restart
// finds all of the entry's requests applied or none.
//
// The returned error is a storage failure (wrapping ErrBackendFailed), after which the
// remaining functions do not run; a function's own error goes only to after.
func (s *Store) UpdateEach(index, term uint64, n int, fn func(i int, t *WriteTxn) error, after func(i int, err error)) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	for i := range n {
		t := &WriteTxn{s: s, beginRev: s.currentRev.Load()}
		err := fn(i, t)
		if err != nil && t.err == nil {
			t.rollback()
		}
		if t.err != nil {
			s.fail(t.err)
			return t.err
		}
		t.publish()
		after(i, err)
	}
	s.setCI(index, term)
	s.maybeCommit()
	return s.failed
}

// WriteTxn is the one write transaction at a time, handed to Update's function. Its
// storage errors are kept (the first one) and end the transaction's work: later calls do
// nothing, and Update reports the error.
type WriteTxn struct {
	s        *Store
	beginRev int64
	sub      int64
	events   []*mvccpb.Event
	prevs    []*mvccpb.KeyValue // the value each event replaced (or unreadPrev), for watchers' prevKV
	undo     []undoOp           // reverts each change, applied last to first by rollback
	err      error
}

// write starts a write transaction holding the store's write lock; the caller unlocks
// it once the transaction is ended or rolled back (Update, or tests).
func (s *Store) write() *WriteTxn {
	s.wmu.Lock()
	return &WriteTxn{s: s, beginRev: s.currentRev.Load()}
}

// Rev is the store revision before this transaction.
func (t *WriteTxn) Rev() int64 { return t.beginRev }

func (t *WriteTxn) viewRev() int64 {
	if len(t.events) > 0 {
		return t.beginRev + 1
	}
	return t.beginRev
}

// Range is ReadTxn.Range over the store including this transaction's own changes.
func (t *WriteTxn) Range(key, end []byte, o RangeOptions) (*RangeResult, error) {
	if t.err != nil {
		return nil, t.err
	}
	rangeCounter.Inc()
	t.s.mu.RLock()
	defer t.s.mu.RUnlock()
	return t.s.rangeLocked(key, end, o, t.viewRev(), t.s.b.batchValue)
}

func (t *WriteTxn) fail(err error) {
	if t.err == nil {
		t.err = fmt.Errorf("%w: %w", ErrBackendFailed, err)
	}
}

func (t *WriteTxn) nextRev() revision {
	r := revision{main: t.beginRev + 1, sub: t.sub}
	t.sub++
	return r
}

// putRevision writes one new revision of a key into the batch and the index.
func (t *WriteTxn) putRevision(key []byte, rev revision, tomb bool, kv *mvccpb.KeyValue) bool {
	s := t.s
	data, err := kv.MarshalVT()
	if err != nil {
		t.fail(fmt.Errorf("encode %q: %w", key, err))
		return false
	}
	if err := s.b.putKV(rev, tomb, data); err != nil {
		t.fail(err)
		return false
	}
	s.mu.Lock()
	if s.keyLeasesLoaded {
		s.keyLeases, s.keyLeasesLoaded = nil, false // no longer what the store holds
	}
	if tomb {
		s.idx.tombstone(key, rev)
	} else {
		s.idx.put(key, rev)
	}
	s.mu.Unlock()
	t.undo = append(t.undo, undoOp{key: key, rev: rev, tomb: tomb})
	return true
}

// undoOp reverts one change of a write transaction: a key revision (putRevision: the
// index entry, then the batch's value) or, with fn, a change to another bucket. A
// revision's is a record, not a closure: it is one per key written, and rollbacks are
// rare.
type undoOp struct {
	key  []byte
	rev  revision
	tomb bool
	fn   func()
}

// revert undoes op; a key revision's index entry is taken back under the index lock,
// as readers may be walking the index meanwhile.
func (t *WriteTxn) revert(op undoOp) {
	if op.fn != nil {
		op.fn()
		return
	}
	s := t.s
	s.mu.Lock()
	if op.tomb {
		s.idx.undoTombstone(op.key, op.rev)
	} else {
		s.idx.undoPut(op.key, op.rev)
	}
	s.mu.Unlock()
	s.b.deleteKV(op.rev, op.tomb)
}

// Put writes key at the transaction's revision. The key's previous value is read only
// while some watcher wants previous values: reading and decoding it was a fifth of a
// put's apply in a put-100 profile, and nothing else needs it (the previous lease, which
// a put without one detaches, the lessor knows).
func (t *WriteTxn) Put(key, value []byte, lease int64) {
	if t.err != nil {
		return
	}
	s := t.s
	main := t.beginRev + 1
	s.mu.RLock()
	mod, created, ver, ok := s.idx.get(key, main)
	s.mu.RUnlock()
	createRev := main
	var prev *mvccpb.KeyValue
	if ok {
		createRev = created
		prev = unreadPrev
		if s.hub.prevKVWatchers.Load() > 0 {
			var err error
			if prev, err = decodeKV(mod, s.b.batchValue); err != nil {
				t.fail(fmt.Errorf("put %q: read previous value: %w", key, err))
				return
			}
		}
	}
	kv := &mvccpb.KeyValue{
		Key:            bytes.Clone(key),
		Value:          bytes.Clone(value),
		CreateRevision: createRev,
		ModRevision:    main,
		Version:        ver + 1,
		Lease:          lease,
	}
	if !t.putRevision(kv.Key, t.nextRev(), false, kv) {
		return
	}
	t.events = append(t.events, &mvccpb.Event{Type: mvccpb.Event_PUT, Kv: kv})
	t.prevs = append(t.prevs, prev)
	putCounter.Inc()
}

// unreadPrev stands in t.prevs for a previous value that exists but was not read (no
// watcher wanted previous values then); a watcher asking for it later has it read then.
var unreadPrev = &mvccpb.KeyValue{}

// DeleteRange deletes the live keys in the range (end as in Range) and returns their last
// values.
func (t *WriteTxn) DeleteRange(key, end []byte) (deleted []*mvccpb.KeyValue) {
	if t.err != nil {
		return nil
	}
	s := t.s
	main := t.beginRev + 1
	s.mu.RLock()
	hits := s.idx.rangeAt(key, end, main)
	s.mu.RUnlock()
	for _, h := range hits {
		kv, err := decodeKV(h.rev, s.b.batchValue)
		if err != nil {
			t.fail(fmt.Errorf("delete %q: read value: %w", h.key, err))
			return nil
		}
		if !t.putRevision(kv.Key, t.nextRev(), true, &mvccpb.KeyValue{Key: kv.Key}) {
			return nil
		}
		deleted = append(deleted, kv)
		t.events = append(t.events, &mvccpb.Event{
			Type: mvccpb.Event_DELETE,
			Kv:   &mvccpb.KeyValue{Key: kv.Key, ModRevision: main},
		})
		t.prevs = append(t.prevs, kv)
	}
	deleteCounter.Add(float64(len(hits)))
	return deleted
}

// putBucket writes key = value into a bucket other than "key", as part of the txn.
func (t *WriteTxn) putBucket(bucket, key, value []byte) {
	t.changeBucket(bucket, key, func() error { return t.s.b.put(bucket, key, value) })
}

// deleteBucket removes key from a bucket other than "key", as part of the txn.
func (t *WriteTxn) deleteBucket(bucket, key []byte) {
	t.changeBucket(bucket, key, func() error { return t.s.b.delete(bucket, key) })
}

// changeBucket runs change and records how to put back what key held before it.
func (t *WriteTxn) changeBucket(bucket, key []byte, change func() error) {
	if t.err != nil {
		return
	}
	b := t.s.b
	old := b.tx.Bucket(bucket).Get(key)
	had := old != nil
	old = bytes.Clone(old)
	if err := change(); err != nil {
		t.fail(err)
		return
	}
	key = bytes.Clone(key)
	t.undo = append(t.undo, undoOp{fn: func() {
		var err error
		if had {
			err = b.put(bucket, key, old)
		} else {
			err = b.delete(bucket, key)
		}
		if err != nil {
			t.fail(fmt.Errorf("undo change of %q in bucket %q: %w", key, bucket, err))
		}
	}})
}

// rollback reverts every change of the transaction, last first.
func (t *WriteTxn) rollback() {
	for i := len(t.undo) - 1; i >= 0; i-- {
		t.revert(t.undo[i])
	}
	t.undo, t.events, t.prevs, t.sub = nil, nil, nil, 0
}

// end publishes the transaction's changes, records the applied raft entry (index, term) in
// the same batch and returns its events (shared with watchers: read-only). The caller
// still holds the write lock.
func (t *WriteTxn) end(index, term uint64) []*mvccpb.Event {
	t.publish()
	t.s.setCI(index, term)
	t.s.maybeCommit()
	return t.events
}

// publish makes the transaction's revision current and hands its events to the watch
// hub. The caller still holds the write lock.
func (t *WriteTxn) publish() {
	s := t.s
	txnCounter.Inc()
	if len(t.events) > 0 {
		s.currentRev.Store(t.beginRev + 1)
		s.hub.notify(t.beginRev+1, t.events, t.prevs)
	}
}
