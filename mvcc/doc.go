// Package mvcc is the multi-version key-value store: revisions, an in-memory ordered key
// index, the bbolt backend in etcd's bucket layout, batched commits and compaction.
//
// It must never be written to except from the server's apply loop, and never let a reader
// see a half-applied revision.
package mvcc
