// Package snap stores raft snapshot metadata files (index, term, conf state) next to the
// WAL and purges old ones. The member's state itself is the bbolt database, which holds its
// own applied index.
//
// It must never leave a partially written snapshot file where a reader would load it.
package snap
