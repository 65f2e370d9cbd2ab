package mvcc

import "fmt"

// The key index as it was before its compact layout (one heap generation slice and one
// modified revision per key): the reference the compact one is checked against in
// index_test.go.

// refGeneration is one life of a key: from its creation to its deletion (the tombstone is the
// last revision of a finished refGeneration). ver is the key's version at the last revision.
type refGeneration struct {
	ver     int64
	created revision
	revs    []revision
}

func (g *refGeneration) isEmpty() bool { return g == nil || len(g.revs) == 0 }

// refKeyIndex holds every indexed revision of one key. The last refGeneration is the current one;
// it is empty when the key is deleted.
type refKeyIndex struct {
	key         []byte
	modified    revision
	generations []refGeneration
}

func (ki *refKeyIndex) isEmpty() bool {
	return len(ki.generations) == 1 && ki.generations[0].isEmpty()
}

// put records a change of the key at rev.
func (ki *refKeyIndex) put(rev revision) {
	if len(ki.generations) == 0 {
		ki.generations = append(ki.generations, refGeneration{})
	}
	g := &ki.generations[len(ki.generations)-1]
	if len(g.revs) == 0 {
		g.created = rev

	}
	g.revs = append(g.revs, rev)
	g.ver++
	ki.modified = rev
}

// undoPut takes back the last put(rev) of the key; prevModified is what modified was.
func (ki *refKeyIndex) undoPut(rev, prevModified revision) {
	g := &ki.generations[len(ki.generations)-1]
	if n := len(g.revs); n == 0 || g.revs[n-1] != rev {
		panic(fmt.Sprintf("mvcc: undo put of %q at %v: not its last revision", ki.key, rev))
	}
	g.revs = g.revs[:len(g.revs)-1]
	g.ver--
	if len(g.revs) == 0 {
		*g = refGeneration{}

	}
	ki.modified = prevModified
}

// undoTombstone takes back tombstone(rev).
func (ki *refKeyIndex) undoTombstone(rev, prevModified revision) {
	ki.generations = ki.generations[:len(ki.generations)-1]
	ki.undoPut(rev, prevModified)
	// the key is live again
}

// restore starts a refGeneration from a stored KeyValue whose earlier history may be compacted.
func (ki *refKeyIndex) restore(created, modified revision, ver int64) {
	if len(ki.generations) == 0 {
		ki.generations = append(ki.generations, refGeneration{})
	}
	g := &ki.generations[len(ki.generations)-1]
	if len(g.revs) == 0 {
		g.created = created

	}
	g.revs = append(g.revs, modified)
	g.ver = ver
	ki.modified = modified
}

// tombstone ends the current refGeneration at rev. It reports false if the key is not live.
func (ki *refKeyIndex) tombstone(rev revision) bool {
	if len(ki.generations) == 0 || ki.generations[len(ki.generations)-1].isEmpty() {
		return false
	}
	ki.put(rev)

	ki.generations = append(ki.generations, refGeneration{})
	return true
}

// findGeneration returns the refGeneration the key was in at rev, or nil if the key did not
// exist (or was deleted) at rev.
func (ki *refKeyIndex) findGeneration(rev int64) *refGeneration {
	last := len(ki.generations) - 1
	for i := last; i >= 0; i-- {
		g := &ki.generations[i]
		if g.isEmpty() {
			continue
		}
		if i != last && g.revs[len(g.revs)-1].main <= rev {
			return nil // deleted at or before rev
		}
		if g.revs[0].main <= rev {
			return g
		}
	}
	return nil
}

// get returns the revision of the key's value visible at atRev, its creation revision and
// version. ok is false if the key was absent at atRev.
func (ki *refKeyIndex) get(atRev int64) (modified, created revision, ver int64, ok bool) {
	g := ki.findGeneration(atRev)
	if g.isEmpty() {
		return revision{}, revision{}, 0, false
	}
	for i := len(g.revs) - 1; i >= 0; i-- {
		if g.revs[i].main <= atRev {
			return g.revs[i], g.created, g.ver - int64(len(g.revs)-1-i), true
		}
	}
	return revision{}, revision{}, 0, false
}

// doCompact finds the refGeneration and revision position that survive a compaction at atRev,
// adding the surviving revision at or below atRev to available.
func (ki *refKeyIndex) doCompact(atRev int64, available map[revision]struct{}) (genIdx, revIdx int) {
	for genIdx < len(ki.generations)-1 {
		g := &ki.generations[genIdx]
		if g.revs[len(g.revs)-1].main >= atRev {
			break
		}
		genIdx++
	}
	g := &ki.generations[genIdx]
	revIdx = -1
	for i := len(g.revs) - 1; i >= 0; i-- {
		if g.revs[i].main <= atRev {
			available[g.revs[i]] = struct{}{}
			revIdx = i
			break
		}
	}
	return genIdx, revIdx
}

// compact drops the revisions a read at atRev or later can never need: every refGeneration
// deleted before atRev, and in the refGeneration alive at atRev everything older than the
// revision visible at atRev.
func (ki *refKeyIndex) compact(atRev int64, available map[revision]struct{}) {
	genIdx, revIdx := ki.doCompact(atRev, available)
	g := &ki.generations[genIdx]
	if !g.isEmpty() && revIdx > 0 {
		g.revs = g.revs[revIdx:]
	}
	ki.generations = ki.generations[genIdx:]
}

// keep adds what compact(atRev) would keep to available, except a tombstone at the compact
// point (which a hash must skip, like etcd).
func (ki *refKeyIndex) keep(atRev int64, available map[revision]struct{}) {
	if ki.isEmpty() {
		return
	}
	genIdx, revIdx := ki.doCompact(atRev, available)
	g := &ki.generations[genIdx]
	if !g.isEmpty() && revIdx == len(g.revs)-1 && genIdx != len(ki.generations)-1 {
		delete(available, g.revs[revIdx])
	}
}
