// Package wal is the write-ahead log: segment files of CRC-protected records holding raft
// hard state, entries and snapshot marks. Open verifies every record, repairs a torn final
// record left by a crash mid-write, and stops with an error naming file and offset on any
// other corruption. Each segment is preallocated to SegmentSizeBytes when created (as
// etcd's are), so an append changes no file size and its fdatasync flushes data only; the
// zeros after the last record of the segment being written mark the end of the log.
//
// It must never return a record whose checksum failed, and never drop a record that was
// synced.
package wal
