// Package snap stores raft snapshot files (index, term, conf state and whatever data the
// raftpb.Snapshot carries) next to the bbolt database and purges old ones. The member's
// state itself is the bbolt database, which holds its own applied index.
//
// Each snapshot is one file named "%016x-%016x.snap" (term, index) holding a small header
// (magic, CRC32C, length) and the marshalled raftpb.Snapshot. Files are written to a temp
// name, synced and renamed, so a reader never sees a partial file. Load picks the newest
// file that verifies; a corrupt one is renamed to *.broken and the next older one tried.
// Files not named like a snapshot (the "db" file, *.snap.db) are never read or removed.
//
// It must never leave a partially written snapshot file where a reader would load it.
package snap
