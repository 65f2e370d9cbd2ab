package server

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/fsutil"
	"github.com/cairn-kv/cairn/mvcc"
)

// Built-in backups (Cairn only; etcd leaves them to a cron of `etcdctl snapshot save`):
// every member saves its own db into BackupDir every BackupInterval, in the format of
// `etcdctl snapshot save` (the db and its SHA-256), so etcdutl and `cairnctl snapshot
// restore` take the files as they are. Each member backs up its own copy, so a backup
// exists as long as any member's disk does.

const backupPartSuffix = ".part"

// backupPrefix starts the name of every backup file of this member; the rest of the
// name is a UTC timestamp, so names sort by age.
func (s *Server) backupPrefix() string { return fmt.Sprintf("cairn-%016x-", s.id) }

// runBackups takes a backup every BackupInterval until the member stops.
func (s *Server) runBackups() {
	dir := s.cfg.BackupDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		s.lg.Error("cannot create the backup directory; no backups", zap.String("dir", dir), zap.Error(err))
		return
	}
	// A backup that a crash interrupted was never renamed into place: drop it.
	if parts, _ := filepath.Glob(filepath.Join(dir, s.backupPrefix()+"*"+backupPartSuffix)); len(parts) > 0 {
		for _, p := range parts {
			_ = os.Remove(p)
		}
		s.lg.Warn("removed unfinished backups", zap.Strings("files", parts))
	}
	t := time.NewTicker(s.cfg.BackupInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.stopping:
			return
		}
		start := time.Now()
		path, err := s.backup(start)
		if err != nil {
			s.metrics.backupFailures.Inc()
			s.lg.Error("backup failed", zap.String("dir", dir), zap.Error(err))
			continue
		}
		s.metrics.backupDuration.Observe(time.Since(start).Seconds())
		s.metrics.backupLastSuccess.Set(float64(time.Now().Unix()))
		s.lg.Info("saved backup", zap.String("path", path), zap.Duration("took", time.Since(start)))
		if err := s.pruneBackups(); err != nil {
			s.lg.Warn("failed to remove old backups", zap.Error(err))
		}
	}
}

// backup saves the db as of now and returns the file's path. The file appears under its
// final name only once it is whole, checked (bbolt's consistency check, and the bytes on
// disk read back against the checksum) and synced.
func (s *Server) backup(now time.Time) (string, error) {
	final := filepath.Join(s.cfg.BackupDir, s.backupPrefix()+now.UTC().Format("20060102T150405.000Z")+".db")
	part := final + backupPartSuffix
	if err := s.writeDBFile(part); err != nil {
		os.Remove(part)
		return "", err
	}
	if _, err := mvcc.ReadSnapshotStatus(part); err != nil {
		os.Remove(part)
		return "", err
	}
	if err := appendChecksum(part); err != nil {
		os.Remove(part)
		return "", err
	}
	if err := os.Rename(part, final); err != nil {
		os.Remove(part)
		return "", err
	}
	return final, fsutil.SyncDir(s.cfg.BackupDir)
}

// writeDBFile writes a consistent copy of the db to path.
func (s *Server) writeDBFile(path string) error {
	sn, err := s.store.Snapshot()
	if err != nil {
		return err
	}
	defer sn.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := sn.WriteTo(f); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// appendChecksum reads the file back, appends the SHA-256 of what it read (etcd's
// snapshot trailer) and syncs it.
func appendChecksum(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("read back %s: %w", path, err)
	}
	if _, err := f.Write(h.Sum(nil)); err != nil {
		return fmt.Errorf("write checksum of %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// pruneBackups keeps the newest BackupRetention backups of this member.
func (s *Server) pruneBackups() error {
	names, err := s.backupFiles()
	if err != nil {
		return err
	}
	for len(names) > s.cfg.BackupRetention {
		if err := os.Remove(filepath.Join(s.cfg.BackupDir, names[0])); err != nil {
			return err
		}
		names = names[1:]
	}
	return nil
}

// backupFiles lists this member's finished backups, oldest first.
func (s *Server) backupFiles() ([]string, error) {
	entries, err := os.ReadDir(s.cfg.BackupDir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, s.backupPrefix()) && strings.HasSuffix(n, ".db") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}
