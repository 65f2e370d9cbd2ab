// Package wal is the write-ahead log: segment files of CRC-protected records holding raft
// hard state, entries and snapshot marks. Open verifies every record, repairs a torn final
// record left by a crash mid-write (one cut short by the end of the file, or ending in
// zeros from a sector boundary on: a crash loses whole sectors), and stops with an error
// naming file and offset on any other corruption, a complete final record that fails its
// checksum included. Only the last segment can end in a torn write: a segment is synced
// before the next one is created. Each segment is preallocated to SegmentSizeBytes when
// created (as etcd's are), so an append changes no file size, and a background filler
// writes and syncs zeros a few MiB ahead of the appends (zero.go), so an append's
// fdatasync flushes data only, with no preallocated block to convert in the file system's
// journal; the zeros after the last record of the segment being written mark the end of
// the log.
//
// Out of space (ENOSPC or EDQUOT, see fsutil.IsNoSpace): an append whose write fails so
// is cut off again and returned without making the log unusable, so the caller may retry
// the same Save or SaveSnapshot once there is space; a cut that fails so before its new
// segment appeared leaves the synced segment the last one, taking appends past
// SegmentSizeBytes, and is retried at each append (logged once); a torn last segment that
// cannot be preallocated again at Open just grows as written. Any other failure, and
// every failed fsync, still makes the log refuse all later appends: the file's contents
// are then unknown.
//
// It must never return a record whose checksum failed, and never drop a record that was
// synced.
package wal
