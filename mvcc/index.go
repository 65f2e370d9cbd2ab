package mvcc

import (
	"bytes"
	"fmt"

	"github.com/google/btree"
)

// generation is one life of a key: from its creation to its deletion (the tombstone is the
// last revision of a finished generation). ver is the key's version at the last revision.
type generation struct {
	ver     int64
	created revision
	revs    []revision
}

func (g *generation) isEmpty() bool { return g == nil || len(g.revs) == 0 }

// keyIndex holds every indexed revision of one key. The last generation is the current one;
// it is empty when the key is deleted.
type keyIndex struct {
	key         []byte
	modified    revision
	generations []generation
}

func (ki *keyIndex) isEmpty() bool {
	return len(ki.generations) == 1 && ki.generations[0].isEmpty()
}

// put records a change of the key at rev.
func (ki *keyIndex) put(rev revision) {
	if len(ki.generations) == 0 {
		ki.generations = append(ki.generations, generation{})
	}
	g := &ki.generations[len(ki.generations)-1]
	if len(g.revs) == 0 {
		g.created = rev
		keysGauge.Inc()
	}
	g.revs = append(g.revs, rev)
	g.ver++
	ki.modified = rev
}

// undoPut takes back the last put(rev) of the key; prevModified is what modified was.
func (ki *keyIndex) undoPut(rev, prevModified revision) {
	g := &ki.generations[len(ki.generations)-1]
	if n := len(g.revs); n == 0 || g.revs[n-1] != rev {
		panic(fmt.Sprintf("mvcc: undo put of %q at %v: not its last revision", ki.key, rev))
	}
	g.revs = g.revs[:len(g.revs)-1]
	g.ver--
	if len(g.revs) == 0 {
		*g = generation{}
		keysGauge.Dec()
	}
	ki.modified = prevModified
}

// undoTombstone takes back tombstone(rev).
func (ki *keyIndex) undoTombstone(rev, prevModified revision) {
	ki.generations = ki.generations[:len(ki.generations)-1]
	ki.undoPut(rev, prevModified)
	keysGauge.Inc() // the key is live again
}

// restore starts a generation from a stored KeyValue whose earlier history may be compacted.
func (ki *keyIndex) restore(created, modified revision, ver int64) {
	if len(ki.generations) == 0 {
		ki.generations = append(ki.generations, generation{})
	}
	g := &ki.generations[len(ki.generations)-1]
	if len(g.revs) == 0 {
		g.created = created
		keysGauge.Inc()
	}
	g.revs = append(g.revs, modified)
	g.ver = ver
	ki.modified = modified
}

// tombstone ends the current generation at rev. It reports false if the key is not live.
func (ki *keyIndex) tombstone(rev revision) bool {
	if len(ki.generations) == 0 || ki.generations[len(ki.generations)-1].isEmpty() {
		return false
	}
	ki.put(rev)
	keysGauge.Dec() // put counted nothing new; the key stops being live
	ki.generations = append(ki.generations, generation{})
	return true
}

// findGeneration returns the generation the key was in at rev, or nil if the key did not
// exist (or was deleted) at rev.
func (ki *keyIndex) findGeneration(rev int64) *generation {
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
func (ki *keyIndex) get(atRev int64) (modified, created revision, ver int64, ok bool) {
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

// doCompact finds the generation and revision position that survive a compaction at atRev,
// adding the surviving revision at or below atRev to available.
func (ki *keyIndex) doCompact(atRev int64, available map[revision]struct{}) (genIdx, revIdx int) {
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

// compact drops the revisions a read at atRev or later can never need: every generation
// deleted before atRev, and in the generation alive at atRev everything older than the
// revision visible at atRev.
func (ki *keyIndex) compact(atRev int64, available map[revision]struct{}) {
	genIdx, revIdx := ki.doCompact(atRev, available)
	g := &ki.generations[genIdx]
	if !g.isEmpty() && revIdx > 0 {
		g.revs = g.revs[revIdx:]
	}
	ki.generations = ki.generations[genIdx:]
}

// keep adds what compact(atRev) would keep to available, except a tombstone at the compact
// point (which a hash must skip, like etcd).
func (ki *keyIndex) keep(atRev int64, available map[revision]struct{}) {
	if ki.isEmpty() {
		return
	}
	genIdx, revIdx := ki.doCompact(atRev, available)
	g := &ki.generations[genIdx]
	if !g.isEmpty() && revIdx == len(g.revs)-1 && genIdx != len(ki.generations)-1 {
		delete(available, g.revs[revIdx])
	}
}

func keyIndexLess(a, b *keyIndex) bool { return bytes.Compare(a.key, b.key) < 0 }

// treeIndex is the ordered key → keyIndex map. It is not safe for concurrent use on its own;
// the store guards it.
type treeIndex struct {
	tree *btree.BTreeG[*keyIndex]
}

func newTreeIndex() *treeIndex {
	return &treeIndex{tree: btree.NewG(32, keyIndexLess)}
}

func (ti *treeIndex) keyIndex(key []byte) *keyIndex {
	ki, ok := ti.tree.Get(&keyIndex{key: key})
	if !ok {
		return nil
	}
	return ki
}

func (ti *treeIndex) getOrCreate(key []byte) *keyIndex {
	if ki := ti.keyIndex(key); ki != nil {
		return ki
	}
	ki := &keyIndex{key: bytes.Clone(key)}
	ti.tree.ReplaceOrInsert(ki)
	return ki
}

// put records a change of key at rev and returns the key's previous modified revision,
// for undoPut.
func (ti *treeIndex) put(key []byte, rev revision) (prevModified revision) {
	ki := ti.getOrCreate(key)
	prevModified = ki.modified
	ki.put(rev)
	return prevModified
}

// undoPut takes back put(key, rev), dropping a key index that put created.
func (ti *treeIndex) undoPut(key []byte, rev, prevModified revision) {
	ki := ti.keyIndex(key)
	ki.undoPut(rev, prevModified)
	if ki.isEmpty() {
		ti.tree.Delete(ki)
	}
}

// undoTombstone takes back tombstone(key, rev).
func (ti *treeIndex) undoTombstone(key []byte, rev, prevModified revision) {
	ti.keyIndex(key).undoTombstone(rev, prevModified)
}

func (ti *treeIndex) restore(key []byte, created, modified revision, ver int64) {
	ti.getOrCreate(key).restore(created, modified, ver)
}

// tombstone ends key's current generation at rev; false if the key is not live.
func (ti *treeIndex) tombstone(key []byte, rev revision) (prevModified revision, ok bool) {
	ki := ti.keyIndex(key)
	if ki == nil {
		return revision{}, false
	}
	prevModified = ki.modified
	return prevModified, ki.tombstone(rev)
}

func (ti *treeIndex) get(key []byte, atRev int64) (modified, created revision, ver int64, ok bool) {
	ki := ti.keyIndex(key)
	if ki == nil {
		return revision{}, revision{}, 0, false
	}
	return ki.get(atRev)
}

// indexHit is one key visible at the read revision.
type indexHit struct {
	key []byte
	rev revision
}

// visit calls f for every key index in the range (see Range for the end encodings).
func (ti *treeIndex) visit(key, end []byte, f func(ki *keyIndex) bool) {
	switch {
	case len(end) == 0:
		if ki := ti.keyIndex(key); ki != nil {
			f(ki)
		}
	case len(end) == 1 && end[0] == 0:
		ti.tree.AscendGreaterOrEqual(&keyIndex{key: key}, f)
	default:
		if bytes.Compare(key, end) >= 0 {
			return
		}
		ti.tree.AscendRange(&keyIndex{key: key}, &keyIndex{key: end}, f)
	}
}

// rangeAt returns the keys in the range that are live at atRev, in key order.
func (ti *treeIndex) rangeAt(key, end []byte, atRev int64) []indexHit {
	hits, _ := ti.rangeLimit(key, end, atRev, -1)
	return hits
}

// rangeLimit returns the first limit keys in the range that are live at atRev, in key
// order (all of them if limit < 0), and how many keys in the range are live at atRev. Only
// the returned hits are allocated: past the limit the walk just counts.
func (ti *treeIndex) rangeLimit(key, end []byte, atRev int64, limit int) (hits []indexHit, count int) {
	if limit > 0 {
		hits = make([]indexHit, 0, min(limit, 64))
	}
	ti.visit(key, end, func(ki *keyIndex) bool {
		if rev, _, _, ok := ki.get(atRev); ok {
			if limit < 0 || len(hits) < limit {
				hits = append(hits, indexHit{key: ki.key, rev: rev})
			}
			count++
		}
		return true
	})
	return hits, count
}

// compact compacts every key index at rev, dropping keys with nothing left, and returns the
// set of revisions at or below rev that must stay in the backend.
func (ti *treeIndex) compact(rev int64) map[revision]struct{} {
	available := make(map[revision]struct{})
	var empty []*keyIndex
	ti.tree.Ascend(func(ki *keyIndex) bool {
		ki.compact(rev, available)
		if ki.isEmpty() {
			empty = append(empty, ki)
		}
		return true
	})
	for _, ki := range empty {
		ti.tree.Delete(ki)
	}
	return available
}

// keep returns the revisions at or below rev that a compaction at rev would keep.
func (ti *treeIndex) keep(rev int64) map[revision]struct{} {
	available := make(map[revision]struct{})
	ti.tree.Ascend(func(ki *keyIndex) bool {
		ki.keep(rev, available)
		return true
	})
	return available
}
