package snap

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"
)

// failingReader delivers some bytes and then fails, like a stream whose checksum failed.
type failingReader struct{ left int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, errors.New("checksum mismatch")
	}
	n := min(len(p), r.left)
	r.left -= n
	return n, nil
}

func TestSaveDB(t *testing.T) {
	dir := t.TempDir()
	s := New(zaptest.NewLogger(t), dir)
	if _, err := s.DBPath(5); !errors.Is(err, ErrNoDB) {
		t.Fatalf("DBPath before save = %v, want ErrNoDB", err)
	}
	n, err := s.SaveDB(5, strings.NewReader("db-at-5"))
	if err != nil || n != 7 {
		t.Fatalf("SaveDB = %d, %v", n, err)
	}
	path, err := s.DBPath(5)
	if err != nil {
		t.Fatalf("DBPath: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "db-at-5" || filepath.Base(path) != "0000000000000005.snap.db" {
		t.Fatalf("%s holds %q", path, b)
	}

	// A receive that fails leaves nothing a reader could take for a db.
	if _, err := s.SaveDB(9, &failingReader{left: 100}); err == nil {
		t.Fatal("SaveDB of a failing reader succeeded")
	}
	if _, err := s.DBPath(9); !errors.Is(err, ErrNoDB) {
		t.Fatalf("DBPath after a failed save = %v, want ErrNoDB", err)
	}
	assertFiles(t, dir, "0000000000000005.snap.db")

	// Purge keeps newer db files and everything that is not one.
	for _, name := range []string{"db", "0000000000000003.snap.db.tmp", "0000000000000008.snap.db", "0000000000000001-0000000000000005.snap"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PurgeDBs(5); err != nil {
		t.Fatal(err)
	}
	assertFiles(t, dir, "0000000000000001-0000000000000005.snap", "0000000000000008.snap.db", "db")
}

func assertFiles(t *testing.T, dir string, want ...string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, de := range des {
		got = append(got, de.Name())
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("files = %v, want %v", got, want)
	}
}
