package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cairn-kv/cairn/internal/fsutil"
	"github.com/cairn-kv/cairn/internal/raftcodec"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// Snapshot is a snapshot mark recorded in the log: reading can start at it.
type Snapshot struct{ Index, Term uint64 }

var (
	// ErrCorrupt reports damage that is not a torn tail; it is wrapped with file and offset.
	ErrCorrupt = errors.New("wal: corrupt log")
	// ErrSnapshotNotFound means the mark given to Open is not in the log.
	ErrSnapshotNotFound = errors.New("wal: snapshot mark not found")
)

// SegmentSizeBytes is the size past which the current segment is closed and a new one
// started. It is a variable so tests can make segments small.
var SegmentSizeBytes int64 = 64 << 20

// WAL is an open log. Only one goroutine may write at a time; methods are serialised
// by a mutex anyway so misuse cannot corrupt the files.
type WAL struct {
	lg  *zap.Logger
	dir string

	mu    sync.Mutex
	from  Snapshot
	segs  []segment // every segment on disk, oldest first; the last is being written
	start int       // index in segs where reading starts
	f     *os.File  // last segment, open and flocked
	size  int64     // valid bytes in the last segment; appends go here

	crc       uint32            // running CRC of the last record written
	metadata  []byte            // given at Create, repeated in every segment header
	state     *raftpb.HardState // latest hard state, repeated in every segment header
	lastIndex uint64            // index of the last entry or mark; the next segment's name

	appendable bool  // false until ReadAll succeeds on an opened log
	read       bool  // ReadAll was attempted
	unsynced   bool  // the last segment holds appends not yet fdatasync'd
	err        error // sticky: after a failed write or sync the file state is unknown
	cutErr     error // the last cut, failed for lack of space; retried at each append
	closed     bool
	buf        []byte      // reused encode buffer
	zero       *zeroFiller // zeros ahead of the appends; nil until the first append

	hooks *testHooks // nil in production
}

// testHooks let tests observe the log's durability points, e.g. to model a power loss.
type testHooks struct {
	// synced is called after path's contents, as they are now, were made durable.
	synced func(path string)
	// cut is called once a new segment is in place and before anything is written to it.
	cut func()
	// noSpace, when it answers true for op ("append" or "cut"), makes that step fail as
	// a full disk does: an append writes half its bytes, a cut creates nothing.
	noSpace func(op string) bool
}

func (w *WAL) syncedHook() func(string) {
	if w.hooks == nil {
		return nil
	}
	return w.hooks.synced
}

// sync makes the last segment's data durable.
func (w *WAL) sync() error {
	start := time.Now()
	err := fdatasync(w.f)
	fsyncDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		return err
	}
	w.unsynced = false
	if h := w.syncedHook(); h != nil {
		h(w.segs[len(w.segs)-1].path)
	}
	return nil
}

// Exist reports whether dir holds at least one segment file.
func Exist(dir string) bool {
	des, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, de := range des {
		if _, _, ok := parseSegmentName(de.Name()); ok {
			return true
		}
	}
	return false
}

// Create starts a new log in dir (created if missing) recording metadata. It fails if dir
// already holds segments. The returned WAL is ready for appending.
func Create(lg *zap.Logger, dir string, metadata []byte) (*WAL, error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	if Exist(dir) {
		return nil, fmt.Errorf("wal: create %s: %w", dir, os.ErrExist)
	}
	if len(metadata) > maxRecordBytes {
		return nil, fmt.Errorf("wal: create %s: metadata of %d bytes is over the record limit", dir, len(metadata))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", dir, err)
	}
	// The directory entry itself must survive a crash too.
	if err := fsutil.SyncDir(filepath.Dir(filepath.Clean(dir))); err != nil {
		return nil, err
	}
	w := &WAL{
		lg:         lg,
		dir:        dir,
		metadata:   append([]byte(nil), metadata...),
		state:      &raftpb.HardState{},
		appendable: true,
		read:       true,
	}
	seg := segment{seq: 0, index: 0, path: filepath.Join(dir, segmentName(0, 0))}
	hdr, crc := w.segmentHeader(0)
	// The zero mark lets Open(Snapshot{}) find where the log begins.
	hdr, crc = appendRecord(hdr, crc, recSnapshot, encodeMark(Snapshot{}))
	f, err := createSegment(dir, seg, hdr, nil)
	if err != nil {
		return nil, err
	}
	w.segs = []segment{seg}
	w.f, w.size, w.crc = f, int64(len(hdr)), crc
	lg.Info("wal: created", zap.String("dir", dir))
	return w, nil
}

// Open opens the log in dir for reading from mark from (the zero Snapshot reads from the
// start of the log). It locks the last segment; ReadAll must be called before appending.
func Open(lg *zap.Logger, dir string, from Snapshot) (*WAL, error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	segs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("wal: open %s: no segments: %w", dir, os.ErrNotExist)
	}
	last := segs[len(segs)-1].path
	f, err := os.OpenFile(last, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("wal: open %s: %w", last, err)
	}
	// Every error from here on must drop the lock, which closing f does: flock locks
	// belong to the open file description, so a leaked f would keep even this process
	// from opening the log again.
	fail := func(err error) (*WAL, error) {
		_ = f.Close()
		return nil, err
	}
	if err := lockFile(f); err != nil {
		return fail(fmt.Errorf("wal: lock %s: %w", last, err))
	}
	// A writer may have cut a new segment (dropping its lock on this one) or released old
	// ones between the listing and the lock, so list again now that the log is ours.
	if segs, err = listSegments(dir); err != nil {
		return fail(err)
	}
	if len(segs) == 0 || segs[len(segs)-1].path != last {
		return fail(fmt.Errorf("wal: lock %s: %w (a new segment appeared while opening)", last, errLocked))
	}
	// Segments named at or below from.Index were cut before the mark was written, and the
	// last of them holds every live entry above from.Index in it or after it.
	start := -1
	for i, s := range segs {
		if s.index <= from.Index {
			start = i
		}
	}
	if start < 0 {
		return fail(fmt.Errorf("wal: open %s at index %d term %d: %w", dir, from.Index, from.Term, ErrSnapshotNotFound))
	}
	// Only now, holding the lock, is it safe to clear another writer's leftovers.
	if err := removeTemps(dir); err != nil {
		return fail(err)
	}
	return &WAL{lg: lg, dir: dir, from: from, segs: segs, start: start, f: f}, nil
}

// ReadAll reads the log from the mark given to Open, verifying every record. It returns the
// metadata given at Create, the last hard state saved, and the live entries above the mark
// (an entry written later at index i replaces all earlier ones at i and above). A torn
// final record is cut off. Afterwards the WAL is ready for appending. On error the WAL
// still holds its lock: the caller must Close it.
func (w *WAL) ReadAll() (metadata []byte, hs *raftpb.HardState, ents []*raftpb.Entry, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, nil, nil, errors.New("wal: read: log is closed")
	}
	if w.read {
		return nil, nil, nil, errors.New("wal: read: ReadAll may be called once, on an opened log")
	}
	w.read = true

	rs := readState{from: w.from, state: &raftpb.HardState{}}
	if first := w.segs[w.start].index; first > 0 {
		rs.lastIndex = first - 1
	}
	var crc uint32
	for i := w.start; i < len(w.segs); i++ {
		isLast := i == len(w.segs)-1
		end, c, err := rs.readSegment(w.lg, w.segs[i].path, crc, i > w.start, isLast)
		if err != nil {
			return nil, nil, nil, err
		}
		crc = c
		if isLast && end >= 0 {
			if err := w.f.Truncate(end); err != nil {
				return nil, nil, nil, fmt.Errorf("wal: truncate torn tail of %s: %w", w.segs[i].path, err)
			}
			// Without the space the segment just grows as it is written: a full disk
			// must not keep the member from starting.
			if err := preallocate(w.f, SegmentSizeBytes); fsutil.IsNoSpace(err) {
				w.lg.Warn("wal: cannot preallocate the last segment for lack of disk space", zap.String("file", w.segs[i].path), zap.Error(err))
			} else if err != nil {
				return nil, nil, nil, fmt.Errorf("wal: preallocate %s: %w", w.segs[i].path, err)
			}
			if err := w.f.Sync(); err != nil {
				return nil, nil, nil, fmt.Errorf("wal: sync %s: %w", w.segs[i].path, err)
			}
			if h := w.syncedHook(); h != nil {
				h(w.segs[i].path)
			}
		}
		if isLast {
			w.size = rs.segEnd
		}
	}
	if !rs.found {
		return nil, nil, nil, fmt.Errorf("wal: read %s at index %d term %d: %w", w.dir, w.from.Index, w.from.Term, ErrSnapshotNotFound)
	}
	w.crc = crc
	w.metadata = rs.metadata
	w.state = rs.state
	w.lastIndex = rs.lastIndex
	w.appendable = true
	return append([]byte(nil), rs.metadata...), proto.Clone(rs.state).(*raftpb.HardState), rs.ents, nil
}

// Save appends entries and then hard state, and syncs once before returning: this is the
// durability point for everything raft acknowledges. Nothing is written when hs is empty
// and there are no entries.
func (w *WAL) Save(hs *raftpb.HardState, ents []*raftpb.Entry) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.writable(); err != nil {
		return err
	}
	saveState := !isEmptyState(hs)
	if !saveState && len(ents) == 0 {
		return nil
	}
	buf, crc, last := w.buf[:0], w.crc, w.lastIndex
	var err error
	// Entries go first so a torn write can never leave a commit index ahead of the
	// entries it covers.
	for _, e := range ents {
		if e == nil {
			return errors.New("wal: save: nil entry")
		}
		if buf, crc, err = appendEntryRecord(buf, crc, e); err != nil {
			return fmt.Errorf("wal: save entry %d: %w", e.GetIndex(), err)
		}
		last = e.GetIndex()
	}
	if saveState {
		if buf, crc, err = appendProtoRecord(buf, crc, recState, hs); err != nil {
			return fmt.Errorf("wal: save hard state: %w", err)
		}
	}
	w.buf = buf
	// A new commit index alone needs no fsync (raft's MustSync rule): raft can learn it
	// again, while entries, term and vote are promises it must never forget.
	mustSync := len(ents) > 0 || (saveState && (hs.GetTerm() != w.state.GetTerm() || hs.GetVote() != w.state.GetVote()))
	if err := w.append(buf, mustSync); err != nil {
		return err
	}
	w.crc, w.lastIndex = crc, last
	if saveState {
		w.state = proto.Clone(hs).(*raftpb.HardState)
	}
	return w.maybeCut()
}

// SaveSnapshot records the mark s and syncs, so Open(s) can later start reading here.
func (w *WAL) SaveSnapshot(s Snapshot) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.writable(); err != nil {
		return err
	}
	buf, crc := appendRecord(w.buf[:0], w.crc, recSnapshot, encodeMark(s))
	w.buf = buf
	if err := w.append(buf, true); err != nil {
		return err
	}
	w.crc = crc
	// A mark past the last entry (a snapshot received from the leader) moves the log's end.
	w.lastIndex = max(w.lastIndex, s.Index)
	return w.maybeCut()
}

// ReleaseTo deletes the segments that Open(Snapshot{Index: index}) would not read: those
// before the last segment named at or below index. The segment being written is kept.
func (w *WAL) ReleaseTo(index uint64) error { return w.ReleaseToKeep(index, 0) }

// ReleaseToKeep is ReleaseTo deleting, oldest first, only as many of those segments as
// leave at least keep segments in all (etcd's --max-wals; 0 deletes all it may). A
// segment Open(Snapshot{Index: index}) needs is never deleted, however many there are.
func (w *WAL) ReleaseToKeep(index uint64, keep int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errors.New("wal: release: log is closed")
	}
	release := 0
	for i, s := range w.segs {
		if s.index <= index {
			release = i
		}
	}
	if keep > 0 {
		release = min(release, len(w.segs)-keep)
	}
	if release <= 0 {
		return nil
	}
	// Oldest first, so a crash part-way still leaves a contiguous run of segments.
	for i, s := range w.segs[:release] {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			w.dropSegments(i)
			return fmt.Errorf("wal: release %s: %w", s.path, err)
		}
	}
	w.dropSegments(release)
	if err := fsutil.SyncDir(w.dir); err != nil {
		return err
	}
	w.lg.Info("wal: released segments", zap.String("dir", w.dir), zap.Uint64("index", index), zap.Int("removed", release))
	return nil
}

// Close releases the lock and the file. Everything saved was already synced.
func (w *WAL) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	if w.zero != nil {
		w.zero.stop()
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("wal: close %s: %w", w.segs[len(w.segs)-1].path, err)
	}
	return nil
}

func (w *WAL) dropSegments(n int) {
	w.segs = w.segs[n:]
	w.start = max(0, w.start-n)
}

func (w *WAL) writable() error {
	switch {
	case w.closed:
		return errors.New("wal: write: log is closed")
	case w.err != nil:
		return w.err
	case !w.appendable:
		return errors.New("wal: write: ReadAll must succeed before appending")
	}
	return nil
}

// segmentHeader encodes what starts every segment: the running CRC so the chain continues,
// the metadata and the latest hard state, so a segment can be read on its own.
func (w *WAL) segmentHeader(prev uint32) ([]byte, uint32) {
	var seed [4]byte
	binary.LittleEndian.PutUint32(seed[:], prev)
	buf, crc := appendRecord(nil, prev, recCRC, seed[:])
	buf, crc = appendRecord(buf, crc, recMetadata, w.metadata)
	if !isEmptyState(w.state) {
		// Marshalling a HardState cannot fail; a failure would only drop the copy.
		if b, c, err := appendProtoRecord(buf, crc, recState, w.state); err == nil {
			buf, crc = b, c
		}
	}
	return buf, crc
}

func isEmptyState(hs *raftpb.HardState) bool {
	return hs.GetTerm() == 0 && hs.GetVote() == 0 && hs.GetCommit() == 0
}

// appendProtoRecord marshals m straight into buf behind a reserved header.
func appendProtoRecord(buf []byte, prev uint32, t recordType, m proto.Message) ([]byte, uint32, error) {
	return appendEncodedRecord(buf, prev, t, func(b []byte) ([]byte, error) { return proto.MarshalOptions{}.MarshalAppend(b, m) })
}

// appendEntryRecord is appendProtoRecord for an entry, every record but a few, written
// without protobuf-go's reflection (the same bytes: raftcodec).
func appendEntryRecord(buf []byte, prev uint32, e *raftpb.Entry) ([]byte, uint32, error) {
	return appendEncodedRecord(buf, prev, recEntry, func(b []byte) ([]byte, error) { return raftcodec.AppendEntry(b, e), nil })
}

// appendEncodedRecord appends a record of type t whose data encode appends straight
// into buf behind a reserved header.
func appendEncodedRecord(buf []byte, prev uint32, t recordType, encode func([]byte) ([]byte, error)) ([]byte, uint32, error) {
	start := len(buf)
	buf = append(buf, make([]byte, headerSize)...)
	buf, err := encode(buf)
	if err != nil {
		return buf[:start], prev, err
	}
	data := buf[start+headerSize:]
	if len(data) > maxRecordBytes {
		return buf[:start], prev, fmt.Errorf("record of %d bytes is over the %d byte limit", len(data), maxRecordBytes)
	}
	c := recordCRC(prev, t, data)
	buf[start] = byte(t)
	binary.LittleEndian.PutUint32(buf[start+1:], c)
	binary.LittleEndian.PutUint32(buf[start+5:], uint32(len(data)))
	return buf, c, nil
}

func encodeMark(s Snapshot) []byte {
	b := binary.LittleEndian.AppendUint64(nil, s.Index)
	return binary.LittleEndian.AppendUint64(b, s.Term)
}
