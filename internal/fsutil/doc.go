// Package fsutil holds the file-system steps the storage packages (wal, snap, mvcc)
// share, so each durability rule is written once.
//
// FreeBytes (statfs) and IsNoSpace (ENOSPC or EDQUOT, matched with errors.Is) are the
// one place that tells how full a file system is and whether a write failed for it.
//
// It must never decide what to write or where: callers own their files and layout.
package fsutil
