// Package fsutil holds the file-system steps the storage packages (wal, snap, mvcc)
// share, so each durability rule is written once.
//
// It must never decide what to write or where: callers own their files and layout.
package fsutil
