package snap

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/cairn-kv/cairn/internal/fsutil"
	"go.uber.org/zap"
)

// ErrNoDB means no received db file exists for a snapshot index.
var ErrNoDB = errors.New("snap: no db file for the snapshot")

const dbExt = ".snap.db"

// dbFileName is "%016x.snap.db" of the index of the raft snapshot the db came with.
func dbFileName(index uint64) string { return fmt.Sprintf("%016x%s", index, dbExt) }

// parseDBName accepts exactly the names dbFileName produces.
func parseDBName(name string) (index uint64, ok bool) {
	base, found := strings.CutSuffix(name, dbExt)
	if !found || len(base) != 16 {
		return 0, false
	}
	if _, err := fmt.Sscanf(base, "%016x", &index); err != nil || dbFileName(index) != name {
		return 0, false
	}
	return index, true
}

// SaveDB writes the db file received with the raft snapshot at index from r: to a temp
// file, synced, then renamed into place and the directory synced, so DBPath never names
// a partial file. r must return an error (not io.EOF) if what it delivers fails its
// checksum. It returns the number of bytes saved.
func (s *Snapshotter) SaveDB(index uint64, r io.Reader) (int64, error) {
	path := filepath.Join(s.dir, dbFileName(index))
	n, err := saveAtomically(s.dir, path, r)
	if err != nil {
		return 0, fmt.Errorf("snap: save db for snapshot %d: %w", index, err)
	}
	s.lg.Info("snap: saved db file", zap.String("path", path), zap.Int64("bytes", n))
	return n, nil
}

// DBPath is the saved db file for the snapshot at index, or ErrNoDB.
func (s *Snapshotter) DBPath(index uint64) (string, error) {
	path := filepath.Join(s.dir, dbFileName(index))
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("%w at index %d (%s)", ErrNoDB, index, path)
	case err != nil:
		return "", fmt.Errorf("snap: stat %s: %w", path, err)
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("snap: %s is not a regular file", path)
	}
	return path, nil
}

// PurgeDBs removes the db files (and temp files of interrupted receives) of snapshots at
// or below index: installed already, or received but never installed because raft had
// what they stood for. A receive in progress for a newer snapshot is left alone.
func (s *Snapshotter) PurgeDBs(index uint64) error {
	des, err := os.ReadDir(s.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("snap: list %s: %w", s.dir, err)
	}
	var removed []string
	for _, de := range des {
		name := de.Name()
		base, _ := strings.CutSuffix(name, tmpExt)
		i, ok := parseDBName(base)
		if !ok || !de.Type().IsRegular() || i > index {
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("snap: purge %s: %w", name, err)
		}
		removed = append(removed, name)
	}
	if len(removed) == 0 {
		return nil
	}
	s.lg.Info("snap: purged db files", zap.String("dir", s.dir), zap.Strings("removed", removed))
	return fsutil.SyncDir(s.dir)
}
