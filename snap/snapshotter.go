package snap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/cairn-kv/cairn/internal/fsutil"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// ErrNoSnapshot means the directory holds no snapshot file that could be loaded.
var ErrNoSnapshot = errors.New("snap: no available snapshot")

// errCorrupt marks a file whose contents fail verification; such files are set aside as
// *.broken rather than loaded.
var errCorrupt = errors.New("snap: corrupt snapshot file")

const (
	snapExt   = ".snap"
	tmpExt    = ".tmp"
	brokenExt = ".broken"
)

// File layout: magic, CRC32C of the payload, payload length, payload (a marshalled
// raftpb.Snapshot). The length makes a truncated file fail even if its prefix checks out.
var magic = [4]byte{'c', 's', 'n', '1'}

const headerSize = 4 + 4 + 8

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Snapshotter saves, loads and purges snapshot files in one directory. Its methods are
// safe for concurrent use; only one Snapshotter (one process) should use a directory.
type Snapshotter struct {
	lg  *zap.Logger
	dir string
	mu  sync.Mutex
}

// New returns a Snapshotter for dir. It does not touch the disk; Save creates dir if needed.
func New(lg *zap.Logger, dir string) *Snapshotter {
	if lg == nil {
		lg = zap.NewNop()
	}
	return &Snapshotter{lg: lg, dir: dir}
}

// fileName is "%016x-%016x.snap" of term and index, so names sort by term then index.
func fileName(term, index uint64) string {
	return fmt.Sprintf("%016x-%016x%s", term, index, snapExt)
}

// parseName accepts exactly the names fileName produces.
func parseName(name string) (term, index uint64, ok bool) {
	base, found := strings.CutSuffix(name, snapExt)
	if !found || len(base) != 33 || base[16] != '-' {
		return 0, 0, false
	}
	if _, err := fmt.Sscanf(base, "%016x-%016x", &term, &index); err != nil {
		return 0, 0, false
	}
	if fileName(term, index) != name {
		return 0, 0, false
	}
	return term, index, true
}

// Save writes snap durably: a temp file is written and synced, renamed into place, and the
// directory synced, so a reader never sees a partial file. Empty snapshots are skipped.
func (s *Snapshotter) Save(snap *raftpb.Snapshot) error {
	if raft.IsEmptySnap(snap) {
		return nil
	}
	data, err := proto.Marshal(snap)
	if err != nil {
		return fmt.Errorf("snap: marshal snapshot: %w", err)
	}
	buf := make([]byte, headerSize, headerSize+len(data))
	copy(buf, magic[:])
	binary.LittleEndian.PutUint32(buf[4:], crc32.Checksum(data, crcTable))
	binary.LittleEndian.PutUint64(buf[8:], uint64(len(data)))
	buf = append(buf, data...)

	s.mu.Lock()
	defer s.mu.Unlock()
	md := snap.GetMetadata()
	path := filepath.Join(s.dir, fileName(md.GetTerm(), md.GetIndex()))
	if _, err := saveAtomically(s.dir, path, bytes.NewReader(buf)); err != nil {
		return err
	}
	s.lg.Info("snap: saved snapshot", zap.String("file", path),
		zap.Uint64("index", md.GetIndex()), zap.Uint64("term", md.GetTerm()))
	return nil
}

// Load returns the newest snapshot that verifies. Corrupt files are renamed to *.broken
// and older ones tried; ErrNoSnapshot is returned when none is left.
func (s *Snapshotter) Load() (*raftpb.Snapshot, error) {
	return s.LoadNewestAvailable(func(uint64, uint64) bool { return true })
}

// LoadNewestAvailable is Load restricted to snapshots whose index and term ok accepts, e.g.
// those the WAL holds a mark for. Files ok rejects are neither read nor renamed.
func (s *Snapshotter) LoadNewestAvailable(ok func(index, term uint64) bool) (*raftpb.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	files, err := s.list()
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if !ok(f.index, f.term) {
			continue
		}
		snap, err := read(f)
		if err == nil {
			return snap, nil
		}
		if !errors.Is(err, errCorrupt) {
			// An I/O error says nothing about the file's contents: do not set it aside.
			return nil, err
		}
		s.lg.Warn("snap: setting aside corrupt snapshot", zap.String("file", f.path), zap.Error(err))
		if rerr := os.Rename(f.path, f.path+brokenExt); rerr != nil {
			s.lg.Warn("snap: rename corrupt snapshot", zap.String("file", f.path), zap.Error(rerr))
		}
	}
	return nil, ErrNoSnapshot
}

// Purge deletes all but the newest keep snapshot files, plus temp files left by an
// interrupted Save. Other files in the directory (the bbolt "db", *.snap.db, *.broken)
// are left alone.
func (s *Snapshotter) Purge(keep int) error {
	if keep < 0 {
		return fmt.Errorf("snap: purge: negative keep %d", keep)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	files, err := s.list()
	if err != nil {
		return err
	}
	var removed []string
	if len(files) > keep {
		// Oldest first, so a failure part-way leaves the newest files in place.
		for i := len(files) - 1; i >= keep; i-- {
			if err := os.Remove(files[i].path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("snap: purge %s: %w", files[i].path, err)
			}
			removed = append(removed, filepath.Base(files[i].path))
		}
	}
	des, err := os.ReadDir(s.dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("snap: list %s: %w", s.dir, err)
	}
	for _, de := range des {
		base, isTmp := strings.CutSuffix(de.Name(), tmpExt)
		if _, _, ok := parseName(base); !isTmp || !ok || !de.Type().IsRegular() {
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, de.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("snap: purge %s: %w", de.Name(), err)
		}
		removed = append(removed, de.Name())
	}
	if len(removed) == 0 {
		return nil
	}
	if err := fsutil.SyncDir(s.dir); err != nil {
		return err
	}
	s.lg.Info("snap: purged snapshots", zap.String("dir", s.dir), zap.Strings("removed", removed))
	return nil
}

type snapFile struct {
	path        string
	term, index uint64
}

// list returns the snapshot files in dir, newest (highest index, then term) first. A
// missing dir holds none.
func (s *Snapshotter) list() ([]snapFile, error) {
	des, err := os.ReadDir(s.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("snap: list %s: %w", s.dir, err)
	}
	var files []snapFile
	for _, de := range des {
		if !de.Type().IsRegular() {
			continue
		}
		term, index, ok := parseName(de.Name())
		if !ok {
			continue
		}
		files = append(files, snapFile{path: filepath.Join(s.dir, de.Name()), term: term, index: index})
	}
	sort.Slice(files, func(i, j int) bool {
		if files[i].index != files[j].index {
			return files[i].index > files[j].index
		}
		return files[i].term > files[j].term
	})
	return files, nil
}

// read loads and verifies one file. Failures of the contents wrap errCorrupt.
func read(f snapFile) (*raftpb.Snapshot, error) {
	buf, err := os.ReadFile(f.path)
	if err != nil {
		return nil, fmt.Errorf("snap: read %s: %w", f.path, err)
	}
	snap, err := decode(buf)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errCorrupt, f.path, err)
	}
	md := snap.GetMetadata()
	if md.GetIndex() != f.index || md.GetTerm() != f.term {
		return nil, fmt.Errorf("%w: %s: holds index %d term %d", errCorrupt, f.path, md.GetIndex(), md.GetTerm())
	}
	return snap, nil
}

// decode checks the framing and checksum and unmarshals the payload.
func decode(buf []byte) (*raftpb.Snapshot, error) {
	if len(buf) < headerSize {
		return nil, fmt.Errorf("file of %d bytes is shorter than its header", len(buf))
	}
	if !bytes.Equal(buf[:4], magic[:]) {
		return nil, errors.New("bad magic")
	}
	data := buf[headerSize:]
	if n := binary.LittleEndian.Uint64(buf[8:]); n != uint64(len(data)) {
		return nil, fmt.Errorf("header says %d bytes of data, file has %d", n, len(data))
	}
	if want, got := binary.LittleEndian.Uint32(buf[4:]), crc32.Checksum(data, crcTable); want != got {
		return nil, fmt.Errorf("checksum mismatch: stored %08x, computed %08x", want, got)
	}
	snap := &raftpb.Snapshot{}
	if err := proto.Unmarshal(data, snap); err != nil {
		return nil, fmt.Errorf("decode snapshot: %w", err)
	}
	if raft.IsEmptySnap(snap) {
		return nil, errors.New("snapshot has index 0")
	}
	return snap, nil
}

// saveAtomically writes r to path durably: to a temp file in dir (created if needed),
// synced, renamed into place, and dir synced, so path never names a partial file. The
// temp file is removed on failure. It returns the number of bytes written.
func saveAtomically(dir, path string, r io.Reader) (int64, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, fmt.Errorf("snap: create dir %s: %w", dir, err)
	}
	tmp := path + tmpExt
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, fmt.Errorf("snap: create %s: %w", tmp, err)
	}
	n, err := io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return 0, fmt.Errorf("snap: write %s: %w", path, err)
	}
	return n, fsutil.SyncDir(dir)
}
