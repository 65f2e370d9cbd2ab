package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	bolt "go.etcd.io/bbolt"

	"github.com/cairn-kv/cairn/internal/fsutil"
	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// Bucket names, as in etcd's schema.
var (
	bucketKey            = []byte("key")
	bucketMeta           = []byte("meta")
	bucketLease          = []byte("lease")
	bucketMembers        = []byte("members")
	bucketMembersRemoved = []byte("members_removed")
	bucketCluster        = []byte("cluster")
	bucketAlarm          = []byte("alarm")
	bucketAuth           = []byte("auth")
	bucketAuthUsers      = []byte("authUsers")
	bucketAuthRoles      = []byte("authRoles")

	allBuckets = [][]byte{
		bucketKey, bucketMeta, bucketLease, bucketMembers, bucketMembersRemoved,
		bucketCluster, bucketAlarm, bucketAuth, bucketAuthUsers, bucketAuthRoles,
	}
)

// Keys of the "meta" bucket.
var (
	metaConsistentIndex  = []byte("consistent_index")
	metaTerm             = []byte("term")
	metaScheduledCompact = []byte("scheduledCompactRev")
	metaFinishedCompact  = []byte("finishedCompactRev")
	metaStorageVersion   = []byte("storageVersion")
)

// StorageVersion is the schema version of the db, as etcd 3.6 records it in "meta" (what
// etcdutl snapshot status and etcd's own schema check read).
const StorageVersion = "3.6.0"

// seqFillPercent is how full bbolt fills the pages it splits in the "key" bucket, where
// keys are appended in order (etcd's is the same).
const seqFillPercent = 0.9

// backend is the bbolt file with one long-lived write transaction (the batch). Everything
// that touches the batch transaction must hold the store's write lock; the batch is only
// committed between write transactions, so bbolt never holds half a revision.
//
// Readers cannot see the batch's uncommitted data through bbolt, so the values written to
// the "key" bucket since the last commit are also kept in buf until the commit.
type backend struct {
	db *bolt.DB
	tx *bolt.Tx // the open batch; guarded by the store's write lock
	// cur is batchValue's cursor on the batch's "key" bucket, nil until first used in the
	// open batch: a bbolt Get makes a new cursor and grows its stack every time (three of
	// the allocations of each put, for the previous value). Guarded like tx.
	cur     *bolt.Cursor
	changes int // changes in tx since it began; guarded by the store's write lock
	// failCommit, set only by tests, makes the next commits fail as a full disk would.
	failCommit error
	// pending is every change of the open batch, in order, to rebuild it in a new
	// transaction after a commit that failed for lack of space (bbolt rolls the batch
	// back). It holds the very slices given to bbolt, which must stay unchanged for the
	// transaction's life anyway. Guarded by the store's write lock.
	pending []redoOp
	// redo, while a defragmentation copies the file, records every change made since
	// the copy's view began, to replay on the copy; guarded by the store's write lock.
	redo *[]redoOp

	bufMu sync.RWMutex
	buf   map[revision][]byte // uncommitted "key" bucket values, by revision

	size      atomic.Int64
	sizeInUse atomic.Int64
	// lastDrop is when a commit last dropped the map's pages from the resident set;
	// guarded by the store's write lock.
	lastDrop time.Time
}

// residentDropInterval is how often a commit drops every page of bbolt's map from the
// resident set: each write transaction reads the pages on its path to the end of the
// "key" bucket (and bbolt moves them at every commit), so over a long fill the member
// keeps a growing part of the db mapped that nothing reads again. A page dropped and
// read again faults back in from the page cache.
const residentDropInterval = time.Second

// openBackend opens the bbolt file at path. mmapSize is the initial size of its memory
// map (0: bbolt's default, grown as the file grows).
func openBackend(path string, mmapSize int) (*backend, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("mvcc: create backend dir: %w", err)
	}
	// A commit that grows the file past the memory map remaps it, which waits for every
	// open read transaction (a snapshot being sent, a long range) while the store's write
	// lock is held; mapping a large size up front avoids the remap, as etcd does.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 10 * time.Second, InitialMmapSize: mmapSize})
	if err != nil {
		return nil, fmt.Errorf("mvcc: open backend %s: %w", path, err)
	}
	b := &backend{db: db, buf: make(map[revision][]byte)}
	// A commit even of nothing writes pages; a db that has its layout is not written at
	// all, so it opens on a full disk too.
	if hasLayout(db) {
		if err := b.begin(); err != nil {
			db.Close()
			return nil, err
		}
		return b, nil
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %q: %w", name, err)
			}
		}
		if !schemaComplete(tx) {
			return tx.Bucket(bucketMeta).Put(metaStorageVersion, []byte(StorageVersion))
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("mvcc: init backend %s: %w", path, err)
	}
	if err := b.begin(); err != nil {
		db.Close()
		return nil, err
	}
	return b, nil
}

// hasLayout tells whether db has every bucket and the storage version (none in a db of
// cluster version 3.5: etcd 3.5's schema records none).
func hasLayout(db *bolt.DB) bool {
	ok := true
	_ = db.View(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			ok = ok && tx.Bucket(name) != nil
		}
		ok = ok && schemaComplete(tx)
		return nil
	})
	return ok
}

func (b *backend) begin() error {
	tx, err := b.db.Begin(true)
	if err != nil {
		return fmt.Errorf("mvcc: begin batch: %w", err)
	}
	b.tx, b.cur = tx, nil
	b.changes = 0
	b.updateSize(tx)
	return nil
}

func (b *backend) updateSize(tx *bolt.Tx) {
	size := tx.Size()
	st := b.db.Stats()
	inUse := size - int64(st.FreePageN+st.PendingPageN)*int64(b.db.Info().PageSize)
	b.size.Store(size)
	b.sizeInUse.Store(inUse)
	dbTotalSize.Set(float64(size))
	dbInUseSize.Set(float64(inUse))
}

// put writes into the batch. Caller holds the store's write lock.
func (b *backend) put(bucket, key, value []byte) error {
	bk := b.tx.Bucket(bucket)
	if bytes.Equal(bucket, bucketKey) {
		// Revisions only ever go at the end of the "key" bucket: pages split at bbolt's
		// default half would stay half empty, and the db twice the size of its data.
		bk.FillPercent = seqFillPercent
	}
	if err := bk.Put(key, value); err != nil {
		return fmt.Errorf("mvcc: put into bucket %q: %w", bucket, err)
	}
	b.changes++
	b.pending = append(b.pending, redoOp{bucket: bucket, key: key, value: value})
	b.record(bucket, key, value, false)
	return nil
}

// putKV writes a revision into the "key" bucket; live values are buffered for readers.
func (b *backend) putKV(rev revision, tomb bool, value []byte) error {
	if err := b.put(bucketKey, rev.bytes(tomb), value); err != nil {
		return err
	}
	if !tomb {
		b.bufMu.Lock()
		b.buf[rev] = value
		b.bufMu.Unlock()
	}
	return nil
}

// deleteKV takes back a revision putKV wrote in the open batch (a rolled-back txn's).
func (b *backend) deleteKV(rev revision, tomb bool) {
	if !tomb {
		b.bufMu.Lock()
		delete(b.buf, rev)
		b.bufMu.Unlock()
	}
	// The key was written in this very batch, so only a closed batch fails here, and
	// then nothing of it is ever committed.
	_ = b.delete(bucketKey, rev.bytes(tomb))
}

func (b *backend) delete(bucket, key []byte) error {
	if err := b.tx.Bucket(bucket).Delete(key); err != nil {
		return fmt.Errorf("mvcc: delete from bucket %q: %w", bucket, err)
	}
	b.changes++
	b.pending = append(b.pending, redoOp{bucket: bucket, key: key, delete: true})
	b.record(bucket, key, nil, true)
	return nil
}

// commit commits the batch and opens the next one. Caller holds the store's write lock.
//
// Readers keep going during the commit (and its fsync): the buffer still holds the batch's
// values until the commit is complete, and it is cleared only then, so a reader that misses
// the buffer opens its bbolt view after the values are committed.
//
// A commit that fails for lack of space (fsutil.IsNoSpace) leaves the file at its last
// commit, as any failed bbolt commit does; the batch is then rebuilt from pending in a
// new transaction, so the caller may retry the commit later. rebuilt says it was: with
// rebuilt false after an error the backend has no batch and takes no more writes.
func (b *backend) commit() (rebuilt bool, err error) {
	start := time.Now()
	if b.failCommit != nil {
		_ = b.tx.Rollback() // what bbolt does on a failed commit
		err = b.failCommit
	} else {
		err = b.tx.Commit()
	}
	if err != nil {
		b.tx = nil
		err = fmt.Errorf("mvcc: commit batch: %w", err)
		if !fsutil.IsNoSpace(err) {
			return false, err
		}
		if rerr := b.rebuild(); rerr != nil {
			return false, errors.Join(err, rerr)
		}
		return true, err
	}
	commitDuration.Observe(time.Since(start).Seconds())
	b.pending = nil
	b.bufMu.Lock()
	clear(b.buf)
	b.bufMu.Unlock()
	if err := b.begin(); err != nil {
		return false, err
	}
	if time.Since(b.lastDrop) >= residentDropInterval {
		// Between commits, with the store's write lock held, nothing remaps the file.
		b.lastDrop = time.Now()
		dropResident(b.db.Info().Data, uintptr(b.tx.Size()))
	}
	return false, nil
}

// rebuild opens a new batch holding every change of the one a failed commit dropped. It
// only writes memory (bbolt's dirty pages): the disk is needed again at the next commit.
// The buffer still holds the batch's values, which are still uncommitted.
func (b *backend) rebuild() error {
	if err := b.begin(); err != nil {
		return err
	}
	for _, op := range b.pending {
		bk := b.tx.Bucket(op.bucket)
		if bytes.Equal(op.bucket, bucketKey) {
			bk.FillPercent = seqFillPercent
		}
		var err error
		if op.delete {
			err = bk.Delete(op.key)
		} else {
			err = bk.Put(op.key, op.value)
		}
		if err != nil {
			_ = b.tx.Rollback()
			b.tx = nil
			return fmt.Errorf("mvcc: rebuild batch: %q in %q: %w", op.key, op.bucket, err)
		}
	}
	b.changes = len(b.pending)
	return nil
}

// reader reads committed data plus the buffered uncommitted values; it must be closed.
// While it is open the buffer is frozen: no value is added to or cleared from it.
type reader struct {
	b  *backend
	tx *bolt.Tx
}

func (b *backend) reader() *reader {
	b.bufMu.RLock()
	return &reader{b: b}
}

// value returns the stored KeyValue bytes of a live revision.
func (r *reader) value(rev revision) ([]byte, error) {
	if v, ok := r.b.buf[rev]; ok {
		return v, nil
	}
	if r.tx == nil {
		tx, err := r.b.db.Begin(false)
		if err != nil {
			return nil, fmt.Errorf("mvcc: begin read: %w", err)
		}
		r.tx = tx
	}
	v := r.tx.Bucket(bucketKey).Get(rev.bytes(false))
	if v == nil {
		return nil, fmt.Errorf("mvcc: revision {%d %d} missing from the backend", rev.main, rev.sub)
	}
	return v, nil
}

func (r *reader) close() {
	if r.tx != nil {
		_ = r.tx.Rollback()
	}
	r.b.bufMu.RUnlock()
}

// rangeView holds the values of a range read's revisions without holding the buffer: the
// buffered ones picked from the buffer (a buffered value is never modified, clearing the
// buffer only drops it), the others through a bbolt read transaction begun while the
// buffer was held. The buffer is cleared only once its commit is visible to new read
// transactions, so every revision is in one or the other. It must be closed.
type rangeView struct {
	tx   *bolt.Tx // nil if every value was buffered
	vals [][]byte // the buffered value of the i-th revision, or nil
	// mapped are the spans of bbolt's memory map the values read from tx lie in
	// (adjacent ones merged), and mappedBytes their size: a large read drops them from
	// the resident set when it ends (dropResident), so a range over most of the db does
	// not leave the process holding the db's pages.
	mapped      []span
	mappedBytes uintptr
	mapStart    uintptr // tx's view of the map: [mapStart, mapEnd)
	mapEnd      uintptr
}

type span struct{ start, end uintptr }

// dropResidentMin is the least a view must have read from the map for close to drop
// its pages: small reads keep theirs (hot keys stay mapped).
const dropResidentMin = 256 << 10

// noteMapped records that val (read from v.tx) lies in the memory map.
func (v *rangeView) noteMapped(val []byte) {
	if len(val) == 0 {
		return
	}
	s := uintptr(unsafe.Pointer(&val[0]))
	e := s + uintptr(len(val))
	if s < v.mapStart || e > v.mapEnd {
		return // not in the map (never dropped: madvise would zero other memory)
	}
	v.mappedBytes += e - s
	if n := len(v.mapped); n > 0 && v.mapped[n-1].end+osPageSize >= s && s >= v.mapped[n-1].start {
		v.mapped[n-1].end = max(v.mapped[n-1].end, e)
		return
	}
	v.mapped = append(v.mapped, span{s, e})
}

func (b *backend) view(hits []indexHit) (*rangeView, error) {
	v := &rangeView{}
	b.bufMu.RLock()
	defer b.bufMu.RUnlock()
	missing := len(hits)
	if len(b.buf) > 0 {
		v.vals = make([][]byte, len(hits))
		for i, h := range hits {
			if val, ok := b.buf[h.rev]; ok {
				v.vals[i] = val
				missing--
			}
		}
	}
	if missing > 0 {
		tx, err := b.db.Begin(false)
		if err != nil {
			return nil, fmt.Errorf("mvcc: begin read: %w", err)
		}
		v.tx = tx
		v.mapStart = b.db.Info().Data
		v.mapEnd = v.mapStart + uintptr(tx.Size())
	}
	return v, nil
}

// raw is the stored encoding of the i-th revision of the view, rev: the view's memory,
// valid until it is closed.
func (v *rangeView) raw(i int, rev revision) ([]byte, error) {
	var val []byte
	if v.vals != nil {
		val = v.vals[i]
	}
	if val == nil && v.tx != nil {
		val = v.tx.Bucket(bucketKey).Get(rev.bytes(false))
		v.noteMapped(val)
	}
	if val == nil {
		return nil, fmt.Errorf("mvcc: revision {%d %d} missing from the backend", rev.main, rev.sub)
	}
	return val, nil
}

// dropMapped drops the pages the view read so far from the resident set: for a
// reader done with every value it was handed (a page read again faults back in).
func (v *rangeView) dropMapped() {
	for _, sp := range v.mapped {
		dropResident(sp.start, sp.end-sp.start)
	}
	v.mapped, v.mappedBytes = v.mapped[:0], 0
}

// kv decodes the i-th revision of the view, rev.
func (v *rangeView) kv(i int, rev revision) (*mvccpb.KeyValue, error) {
	val, err := v.raw(i, rev)
	if err != nil {
		return nil, err
	}
	return decodeStored(rev, val)
}

// decodeStored decodes val, the stored encoding of revision rev, into a KeyValue of
// its own (no memory shared with val).
func decodeStored(rev revision, val []byte) (*mvccpb.KeyValue, error) {
	kv := &mvccpb.KeyValue{}
	if err := kv.UnmarshalVT(val); err != nil {
		return nil, fmt.Errorf("mvcc: decode revision {%d %d}: %w", rev.main, rev.sub, err)
	}
	return kv, nil
}

func (v *rangeView) close() {
	if v.tx != nil {
		if v.mappedBytes >= dropResidentMin {
			for _, sp := range v.mapped {
				dropResident(sp.start, sp.end-sp.start)
			}
		}
		_ = v.tx.Rollback()
	}
}

// batchValue reads a live revision through the batch (which sees uncommitted writes).
// Caller holds the store's write lock.
func (b *backend) batchValue(rev revision) ([]byte, error) {
	if b.cur == nil {
		b.cur = b.tx.Bucket(bucketKey).Cursor()
	}
	key := rev.bytes(false)
	k, v := b.cur.Seek(key) // Seek repositions, so the cursor sees every write since its last use
	if !bytes.Equal(k, key) || v == nil {
		return nil, fmt.Errorf("mvcc: revision {%d %d} missing from the backend", rev.main, rev.sub)
	}
	return v, nil
}

func (b *backend) close() error {
	var err error
	if b.tx != nil {
		err = b.tx.Rollback()
		b.tx = nil
	}
	if cerr := b.db.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}
