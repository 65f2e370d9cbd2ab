package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"os"

	bolt "go.etcd.io/bbolt"

	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// SnapshotStatus describes a snapshot's db file as etcdutl snapshot status does.
type SnapshotStatus struct {
	// Hash is a crc32 (Castagnoli) over every bucket's name, keys and values, in order.
	Hash uint32 `json:"hash"`
	// Revision is the main revision of the last entry of the "key" bucket.
	Revision int64 `json:"revision"`
	// TotalKey counts the keys live at that revision.
	TotalKey int `json:"totalKey"`
	// TotalSize is the db's size in bytes.
	TotalSize int64 `json:"totalSize"`
	// Version is the db's storage version ("" when it records none).
	Version string `json:"version"`
}

// ReadSnapshotStatus reads a db file (not the store's own, which is locked while open)
// read-only, after bbolt's consistency check (a file shorter than the db it holds, as a
// copy or save killed midway leaves, is refused with an error), and computes what etcdutl snapshot status
// reports for it, with the same algorithm so both tools print the same numbers.
func ReadSnapshotStatus(path string) (SnapshotStatus, error) {
	var st SnapshotStatus
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true})
	if err != nil {
		return st, fmt.Errorf("mvcc: open snapshot %s: %w", path, err)
	}
	defer db.Close()
	fi, err := os.Stat(path)
	if err != nil {
		return st, fmt.Errorf("mvcc: snapshot %s: %w", path, err)
	}
	err = db.View(func(tx *bolt.Tx) error {
		// A file cut short (a copy or a save killed midway) still opens, but its pages
		// past the end are not there: reading them faults (SIGBUS), so refuse it first.
		if tx.Size() > fi.Size() {
			return fmt.Errorf("truncated: the db needs %d bytes, the file has %d", tx.Size(), fi.Size())
		}
		var problems []error
		for err := range tx.Check() {
			problems = append(problems, err)
		}
		if len(problems) > 0 {
			return fmt.Errorf("integrity check found %d errors: %w", len(problems), errors.Join(problems...))
		}
		st.TotalSize = tx.Size()
		if meta := tx.Bucket(bucketMeta); meta != nil {
			st.Version = string(meta.Get(metaStorageVersion))
		}
		h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
		defer func() { st.Hash = h.Sum32() }()
		live := map[string]struct{}{}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			h.Write(name)
			isKey := bytes.Equal(name, bucketKey)
			return b.ForEach(func(k, v []byte) error {
				h.Write(k)
				h.Write(v)
				if !isKey {
					return nil
				}
				if len(k) != revBytesLen && len(k) != markedRevBytesLen {
					return fmt.Errorf("malformed key bucket key %x", k)
				}
				st.Revision = bytesToRev(k).main
				var kv mvccpb.KeyValue
				if err := kv.UnmarshalVT(v); err != nil {
					return fmt.Errorf("decode key bucket value at %x: %w", k, err)
				}
				if isTombstone(k) {
					delete(live, string(kv.Key))
				} else {
					live[string(kv.Key)] = struct{}{}
				}
				st.TotalKey = len(live)
				return nil
			})
		})
	})
	if err != nil {
		return st, fmt.Errorf("mvcc: snapshot %s: %w", path, err)
	}
	return st, nil
}

// RestoreOptions are etcdutl snapshot restore's edits of the restored data.
type RestoreOptions struct {
	// BumpRevision raises the latest revision by this much (a marker entry in the "key"
	// bucket), so revisions clients saw before never come back; needs MarkCompacted.
	BumpRevision uint64
	// MarkCompacted schedules a compaction at the (bumped) latest revision, so watches
	// and reads from before the restore get ErrCompacted rather than a different history.
	MarkCompacted bool
}

// PrepareRestoredDB makes a db file copied from a snapshot ready to start a new cluster,
// as etcdutl snapshot restore does: the old cluster's members are removed (the new
// cluster's come from its bootstrap), the applied raft index is reset (the new raft log
// starts from nothing), and the revision is bumped and marked compacted if asked.
func PrepareRestoredDB(path string, o RestoreOptions) error {
	if o.BumpRevision > 0 && !o.MarkCompacted {
		return errors.New("mvcc: --bump-revision needs --mark-compacted")
	}
	if o.MarkCompacted && o.BumpRevision == 0 {
		return errors.New("mvcc: --mark-compacted needs --bump-revision")
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return fmt.Errorf("mvcc: open restored db %s: %w", path, err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMembers, bucketMembersRemoved} {
			if tx.Bucket(name) == nil {
				continue
			}
			if err := tx.DeleteBucket(name); err != nil {
				return fmt.Errorf("trim bucket %q: %w", name, err)
			}
		}
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %q: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		for _, k := range [][]byte{metaConsistentIndex, metaTerm} {
			if err := meta.Put(k, uint64Bytes(0)); err != nil {
				return err
			}
		}
		if o.BumpRevision == 0 {
			return nil
		}
		latest := revision{}
		if k, _ := tx.Bucket(bucketKey).Cursor().Last(); k != nil {
			latest = bytesToRev(k)
		}
		bumped := revision{main: latest.main + int64(o.BumpRevision)}
		// An empty value marks a revision with no key (etcd's bump marker).
		if err := tx.Bucket(bucketKey).Put(bumped.bytes(false), []byte{}); err != nil {
			return err
		}
		return meta.Put(metaScheduledCompact, bumped.bytes(false))
	})
	if err != nil {
		return fmt.Errorf("mvcc: prepare restored db %s: %w", path, err)
	}
	return nil
}
