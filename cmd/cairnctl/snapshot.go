package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/cairn-kv/cairn/internal/fsutil"
	"github.com/cairn-kv/cairn/mvcc"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

func newSnapshotCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot <subcommand>",
		Short: "save a member's db, show a snapshot's status, restore one into a new data dir",
	}
	cmd.AddCommand(newSnapshotSaveCommand(stdout, stderr), newSnapshotStatusCommand(stdout), newSnapshotRestoreCommand(stdout, stderr))
	return cmd
}

func newSnapshotSaveCommand(stdout, stderr io.Writer) *cobra.Command {
	var conn connFlags
	var dialTimeout, commandTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "save <filename>",
		Short: "stream a member's db into a file (etcdctl snapshot save)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
			defer cancel()
			return failed(saveSnapshot(ctx, conn, dialTimeout, args[0], stdout, stderr))
		},
	}
	conn.register(cmd.Flags())
	cmd.Flags().DurationVar(&dialTimeout, "dial-timeout", 2*time.Second, "how long to wait for the connection")
	cmd.Flags().DurationVar(&commandTimeout, "command-timeout", time.Hour, "how long the whole save may take")
	return cmd
}

// saveSnapshot writes the member's db and its SHA-256 trailer (as received, so etcdutl
// can verify it) to path: into a temporary file, checked and fsynced before it is
// renamed into place, so a file at path is always a whole snapshot.
func saveSnapshot(ctx context.Context, conn connFlags, dialTimeout time.Duration, path string, stdout, stderr io.Writer) error {
	to, err := conn.members()
	if err != nil {
		return err
	}
	if len(to.addrs) != 1 {
		return fmt.Errorf("snapshot save needs exactly one endpoint, got %d", len(to.addrs))
	}
	eps := to.addrs
	dctx, dcancel := context.WithTimeout(ctx, dialTimeout)
	conns, err := dialAll(dctx, to, 1)
	dcancel()
	for _, cc := range conns {
		defer cc.Close()
	}
	if err != nil {
		return err
	}
	stream, err := pb.NewMaintenanceClient(conns[0]).Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		return fmt.Errorf("snapshot from %s: %w", eps[0], err)
	}
	part := path + ".part"
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(part) // gone once renamed; a failed save leaves nothing behind
	defer f.Close()

	var p *progress
	h := sha256.New()
	var tail []byte // the last bytes received: the trailer once the stream ends
	var total int64
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("snapshot from %s after %d bytes: %w", eps[0], total, err)
		}
		if p == nil {
			p = startProgress(stderr, "saving "+filepath.Base(path), total+int64(len(resp.Blob))+int64(resp.RemainingBytes)+sha256.Size)
		}
		if _, err := f.Write(resp.Blob); err != nil {
			return fmt.Errorf("write %s: %w", part, err)
		}
		// Everything before the last sha256.Size bytes is db: hash it as it goes.
		tail = append(tail, resp.Blob...)
		if n := len(tail) - sha256.Size; n > 0 {
			h.Write(tail[:n])
			tail = append(tail[:0], tail[n:]...)
		}
		total += int64(len(resp.Blob))
		p.set(total)
	}
	p.finish()
	if len(tail) != sha256.Size || !bytes.Equal(h.Sum(nil), tail) {
		return fmt.Errorf("snapshot from %s: the received db does not match its sha256 trailer", eps[0])
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(part, path); err != nil {
		return err
	}
	if err := fsutil.SyncDir(filepath.Dir(path)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Snapshot saved at %s\n", path)
	return nil
}

func newSnapshotStatusCommand(stdout io.Writer) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "status <filename>",
		Short: "show a snapshot's hash, revision, key count, size and version (etcdutl snapshot status)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			st, err := mvcc.ReadSnapshotStatus(args[0])
			if err != nil {
				return failed(err)
			}
			return failed(printSnapshotStatus(stdout, format, st))
		},
	}
	cmd.Flags().StringVarP(&format, "write-out", "w", "simple", "output format: simple, json or table")
	return cmd
}

// printSnapshotStatus prints as etcdutl does for each format.
func printSnapshotStatus(w io.Writer, format string, st mvcc.SnapshotStatus) error {
	size := humanize.Bytes(uint64(st.TotalSize))
	switch format {
	case "simple":
		_, err := fmt.Fprintf(w, "%x, %d, %d, %s, %s\n", st.Hash, st.Revision, st.TotalKey, size, st.Version)
		return err
	case "json":
		b, err := json.Marshal(st)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	case "table":
		_, err := io.WriteString(w, borderedTable(
			[]string{"HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE", "VERSION"},
			[]string{fmt.Sprintf("%x", st.Hash), fmt.Sprint(st.Revision), fmt.Sprint(st.TotalKey), size, st.Version}))
		return err
	}
	return fmt.Errorf("unknown output format %q (simple, json or table)", format)
}

// borderedTable lays out one row under its header as etcdutl's tables do: bordered,
// headers centred, cells right-aligned.
func borderedTable(header, row []string) string {
	widths := make([]int, len(header))
	for i := range header {
		widths[i] = max(len(header[i]), len(row[i]))
	}
	var b strings.Builder
	rule := func() {
		for _, w := range widths {
			b.WriteString("+" + strings.Repeat("-", w+2))
		}
		b.WriteString("+\n")
	}
	line := func(cells []string, centre bool) {
		for i, c := range cells {
			gap := widths[i] - len(c)
			left := gap
			if centre {
				left = gap / 2
			}
			b.WriteString("| " + strings.Repeat(" ", left) + c + strings.Repeat(" ", gap-left) + " ")
		}
		b.WriteString("|\n")
	}
	rule()
	line(header, true)
	rule()
	line(row, false)
	rule()
	return b.String()
}

// syncDir is fsutil.SyncDir; the restore's unit test watches which dirs it syncs.
var syncDir = fsutil.SyncDir

// restoreConfig is etcdutl snapshot restore's flags, with its defaults.
type restoreConfig struct {
	name, dataDir, walDir       string
	initialCluster, token       string
	peerURLs                    string
	skipHashCheck, markCompact  bool
	bumpRevision, mmapSizeBytes uint64
}

func newSnapshotRestoreCommand(stdout, stderr io.Writer) *cobra.Command {
	var c restoreConfig
	cmd := &cobra.Command{
		Use:   "restore <filename>",
		Short: "make a new member's data dir from a snapshot (etcdutl snapshot restore); start cairn on it with the same --name, --initial-cluster and --initial-cluster-state=new",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return failed(restoreSnapshot(args[0], c, stdout, stderr))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&c.name, "name", "default", "human-readable name for this member")
	fl.StringVar(&c.dataDir, "data-dir", "", "path to the output data directory (default <name>.etcd, as cairn's)")
	fl.StringVar(&c.walDir, "wal-dir", "", "path to the WAL directory (default <data-dir>/member/wal)")
	fl.StringVar(&c.initialCluster, "initial-cluster", "default=http://localhost:2380", "initial cluster configuration for restore bootstrap")
	fl.StringVar(&c.token, "initial-cluster-token", "etcd-cluster", "initial cluster token for the cluster during restore bootstrap")
	fl.StringVar(&c.peerURLs, "initial-advertise-peer-urls", "http://localhost:2380", "list of this member's peer URLs to advertise to the rest of the cluster")
	fl.BoolVar(&c.skipHashCheck, "skip-hash-check", false, "ignore snapshot integrity hash value (required if copied from data directory)")
	fl.Uint64Var(&c.mmapSizeBytes, "initial-memory-map-size", 0, "accepted for etcdutl compatibility; cairn sizes its mmap from --experimental-initial-mmap-size")
	fl.Uint64Var(&c.bumpRevision, "bump-revision", 0, "how much to increase the latest revision after restore")
	fl.BoolVar(&c.markCompact, "mark-compacted", false, "mark the latest revision after restore as the point of scheduled compaction (required if --bump-revision > 0, disallowed otherwise)")
	return cmd
}

// restoreSnapshot lays out a data dir that cairn starts from as a member of a new
// cluster: the snapshot's db (checked against its sha256 trailer unless skipped), with
// the old membership trimmed and the raft index reset; the new cluster's membership
// comes from the bootstrap of its --initial-cluster, on every member alike. The dir is
// built under a temporary name and renamed into place once complete, so an interrupted
// restore never leaves a data dir a member would start from.
func restoreSnapshot(src string, c restoreConfig, stdout, stderr io.Writer) error {
	if err := checkRestoreBootstrap(c); err != nil {
		return err
	}
	if c.dataDir == "" {
		c.dataDir = c.name + ".etcd"
	}
	if entries, err := os.ReadDir(c.dataDir); err == nil && len(entries) > 0 || err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("data-dir %q not empty or could not be read", c.dataDir)
	}
	if c.walDir != "" {
		if _, err := os.Stat(c.walDir); err == nil {
			return fmt.Errorf("wal-dir %q exists", c.walDir)
		}
	}
	tmp := filepath.Clean(c.dataDir) + ".restoring"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // gone once renamed
	snapDir := filepath.Join(tmp, "member", "snap")
	if err := os.MkdirAll(snapDir, 0o700); err != nil {
		return err
	}
	db := filepath.Join(snapDir, "db")
	if err := copySnapshotDB(src, db, c.skipHashCheck, stderr); err != nil {
		return err
	}
	if _, err := mvcc.ReadSnapshotStatus(db); err != nil { // bbolt's own check
		return err
	}
	if err := mvcc.PrepareRestoredDB(db, mvcc.RestoreOptions{BumpRevision: c.bumpRevision, MarkCompacted: c.markCompact}); err != nil {
		return err
	}
	// Every level's new entry is made durable before the rename publishes the dir: db in
	// snap, snap in member, member in the temporary dir.
	for _, d := range []string{snapDir, filepath.Dir(snapDir), tmp} {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	if err := os.Remove(c.dataDir); err != nil && !errors.Is(err, os.ErrNotExist) { // empty, checked above
		return err
	}
	if err := os.Rename(tmp, c.dataDir); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(filepath.Clean(c.dataDir))); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored snapshot %s into %s as member %q; start it with --name=%s --initial-cluster=%s --initial-cluster-state=new\n",
		src, c.dataDir, c.name, c.name, c.initialCluster)
	return nil
}

// checkRestoreBootstrap is etcd's bootstrap check of the flags: the member is in
// --initial-cluster with exactly its --initial-advertise-peer-urls.
func checkRestoreBootstrap(c restoreConfig) error {
	if c.bumpRevision > 0 && !c.markCompact {
		return errors.New("--mark-compacted required if --bump-revision > 0")
	}
	if c.markCompact && c.bumpRevision == 0 {
		return errors.New("--bump-revision > 0 required if --mark-compacted")
	}
	var mine []string
	found := false
	for _, kv := range strings.Split(c.initialCluster, ",") {
		name, u, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("--initial-cluster %q: %q is not name=url", c.initialCluster, kv)
		}
		if name == c.name {
			found = true
			mine = append(mine, u)
		}
	}
	if !found {
		return fmt.Errorf("couldn't find local name %q in the initial cluster configuration", c.name)
	}
	if strings.Join(mine, ",") != c.peerURLs {
		return fmt.Errorf("--initial-cluster has %s=%s but missing from --initial-advertise-peer-urls=%s", c.name, strings.Join(mine, ","), c.peerURLs)
	}
	return nil
}

// copySnapshotDB copies a snapshot file's db to dst, without the sha256 trailer that a
// saved snapshot carries (a file whose size is 32 past a 512-byte multiple, as etcd
// decides it), which it checks unless skipHash; a file without one needs skipHash.
func copySnapshotDB(src, dst string, skipHash bool, stderr io.Writer) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	hasHash := size%512 == sha256.Size
	if !hasHash && !skipHash {
		return errors.New("snapshot missing hash but --skip-hash-check=false")
	}
	dbSize := size
	if hasHash {
		dbSize -= sha256.Size
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	p := startProgress(stderr, "restoring "+filepath.Base(src), dbSize)
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(out, h, p), io.LimitReader(in, dbSize)); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	p.finish()
	if hasHash && !skipHash {
		want := make([]byte, sha256.Size)
		if _, err := io.ReadFull(in, want); err != nil {
			return fmt.Errorf("read %s's sha256: %w", src, err)
		}
		if got := h.Sum(nil); !bytes.Equal(got, want) {
			return fmt.Errorf("expected sha256 %x, got %x", want, got)
		}
	}
	if err := out.Sync(); err != nil {
		return err
	}
	return out.Close()
}
