package server

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/cairn-kv/cairn/mvcc"
)

// With BackupDir the member saves a backup every interval in etcdctl snapshot save's
// format (db + SHA-256, checked before it gets its name), keeps the newest
// BackupRetention of them, drops a backup a crash left unfinished, and reports the last
// success in cairn_backup_last_success_timestamp_seconds.
func TestBackups(t *testing.T) {
	cfg := testConfig(t)
	cfg.BackupDir = t.TempDir()
	cfg.BackupInterval = 100 * time.Millisecond
	cfg.BackupRetention = 2
	// The member id comes from the name and peer URL, so a first start tells the prefix
	// an unfinished backup of this member has.
	s := startServer(t, cfg)
	stale := filepath.Join(cfg.BackupDir, s.backupPrefix()+"20000101T000000.000Z.db"+backupPartSuffix)
	s.Stop()
	if err := os.WriteFile(stale, []byte("half a backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, cfg)
	for i := 0; i < 20; i++ {
		mustPut(t, s, fmt.Sprintf("k%02d", i), "v")
	}
	rev := s.store.Rev()
	saved := func() uint64 {
		var m dto.Metric
		if err := s.metrics.backupDuration.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetHistogram().GetSampleCount()
	}
	after := saved()
	eventually(t, 10*time.Second, "three backups after the writes", func() bool { return saved() >= after+3 })
	if f := testutil.ToFloat64(s.metrics.backupFailures); f != 0 {
		t.Fatalf("%v backups failed", f)
	}
	if ts := testutil.ToFloat64(s.metrics.backupLastSuccess); time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Fatalf("last success at %v", ts)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("unfinished backup still there: %v", err)
	}
	s.Stop() // no backup changes the directory while it is read
	names, err := s.backupFiles()
	if err != nil || len(names) != 2 {
		t.Fatalf("backups kept: %v, %v; want 2", names, err)
	}
	newest := filepath.Join(cfg.BackupDir, names[1])
	b, err := os.ReadFile(newest)
	if err != nil || len(b) < sha256.Size {
		t.Fatalf("read %s: %d bytes, %v", newest, len(b), err)
	}
	db, trailer := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if sum := sha256.Sum256(db); !bytes.Equal(sum[:], trailer) {
		t.Fatalf("%s: the trailer is not the db's sha256", newest)
	}
	st, err := mvcc.ReadSnapshotStatus(newest)
	if err != nil || st.Revision != rev || st.TotalKey != 20 {
		t.Fatalf("newest backup: %+v, %v; want revision %d with 20 keys", st, err, rev)
	}
}
