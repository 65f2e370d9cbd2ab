package mvcc

import (
	"bytes"
	"fmt"
	"slices"
	"unsafe"

	"github.com/google/btree"
)

// generation is one life of a key: from its creation to its deletion (the tombstone is the
// last revision of a finished generation). ver is the key's version at the last revision,
// created the main revision of its creation (40 bytes).
type generation struct {
	ver     int64
	created int64
	revs    revList
}

func (g *generation) isEmpty() bool { return g == nil || g.revs.len() == 0 }

// keyIndex holds every indexed revision of one key, laid out for the common key that
// lives in one generation holding one revision: the current (last) generation inline
// (its newest revision too, see revList), the finished ones, if any, behind a pointer,
// and the key a string. The struct is 64 bytes, and such a key costs it and its key's
// bytes: about 100 bytes with the btree's share, against 160 for a slice of generations
// each with a slice of revisions (the key index is most of a member's memory with many
// keys). cur is empty while the key is deleted. The key's modified revision is not
// stored: it is the last revision of the last non-empty generation.
type keyIndex struct {
	key string
	cur generation
	old *[]generation // finished generations, oldest first; nil if none
}

// keyBytes is the key as a byte slice that must not be written to (it shares the
// string's memory).
func (ki *keyIndex) keyBytes() []byte { return unsafe.Slice(unsafe.StringData(ki.key), len(ki.key)) }

// ngens is the number of generations, the current one included.
func (ki *keyIndex) ngens() int {
	if ki.old == nil {
		return 1
	}
	return len(*ki.old) + 1
}

// gen is the i-th generation, oldest first; gen(ngens()-1) is the current one.
func (ki *keyIndex) gen(i int) *generation {
	if ki.old == nil || i == len(*ki.old) {
		return &ki.cur
	}
	return &(*ki.old)[i]
}

// dropGens drops the n oldest generations (n < ngens()), copying the ones kept so the
// dropped ones' revisions are freed.
func (ki *keyIndex) dropGens(n int) {
	if n == 0 {
		return
	}
	if n >= len(*ki.old) {
		ki.old = nil
		return
	}
	kept := slices.Clone((*ki.old)[n:])
	ki.old = &kept
}

func (ki *keyIndex) isEmpty() bool { return ki.old == nil && ki.cur.isEmpty() }

// modified is the key's last revision: the current generation's, or the tombstone ending
// the last finished one.
func (ki *keyIndex) modified() revision {
	if ki.cur.revs.len() > 0 {
		return ki.cur.revs.newest
	}
	if ki.old != nil {
		g := &(*ki.old)[len(*ki.old)-1]
		return g.revs.newest
	}
	return revision{}
}

// put records a change of the key at rev.
func (ki *keyIndex) put(rev revision) {
	g := &ki.cur
	if g.revs.len() == 0 {
		g.created = rev.main
		keysGauge.Inc()
	}
	g.revs.push(rev)
	g.ver++
}

// undoPut takes back the last put(rev) of the key.
func (ki *keyIndex) undoPut(rev revision) {
	g := &ki.cur
	if g.revs.len() == 0 || g.revs.newest != rev {
		panic(fmt.Sprintf("mvcc: undo put of %q at %v: not its last revision", ki.key, rev))
	}
	g.revs.pop()
	g.ver--
	if g.revs.len() == 0 {
		*g = generation{}
		keysGauge.Dec()
	}
}

// undoTombstone takes back tombstone(rev).
func (ki *keyIndex) undoTombstone(rev revision) {
	old := *ki.old
	ki.cur = old[len(old)-1]
	if len(old) == 1 {
		ki.old = nil
	} else {
		old = old[:len(old)-1]
		ki.old = &old
	}
	ki.undoPut(rev)
	keysGauge.Inc() // the key is live again
}

// restore starts a generation from a stored KeyValue whose earlier history may be compacted.
func (ki *keyIndex) restore(created int64, modified revision, ver int64) {
	g := &ki.cur
	if g.revs.len() == 0 {
		g.created = created
		keysGauge.Inc()
	}
	g.revs.push(modified)
	g.ver = ver
}

// tombstone ends the current generation at rev. It reports false if the key is not live.
func (ki *keyIndex) tombstone(rev revision) bool {
	if ki.cur.isEmpty() {
		return false
	}
	ki.put(rev)
	keysGauge.Dec() // put counted nothing new; the key stops being live
	var old []generation
	if ki.old != nil {
		old = *ki.old
	}
	old = append(old, ki.cur)
	ki.old = &old
	ki.cur = generation{}
	return true
}

// findGeneration returns the generation the key was in at rev, or nil if the key did not
// exist (or was deleted) at rev.
func (ki *keyIndex) findGeneration(rev int64) *generation {
	last := ki.ngens() - 1
	for i := last; i >= 0; i-- {
		g := ki.gen(i)
		if g.isEmpty() {
			continue
		}
		if i != last && g.revs.newest.main <= rev {
			return nil // deleted at or before rev
		}
		if g.revs.at(0).main <= rev {
			return g
		}
	}
	return nil
}

// get returns the revision of the key's value visible at atRev, its creation revision and
// version. ok is false if the key was absent at atRev.
func (ki *keyIndex) get(atRev int64) (modified revision, created, ver int64, ok bool) {
	g := ki.findGeneration(atRev)
	if g.isEmpty() {
		return revision{}, 0, 0, false
	}
	n := g.revs.len()
	for i := n - 1; i >= 0; i-- {
		if r := g.revs.at(i); r.main <= atRev {
			return r, g.created, g.ver - int64(n-1-i), true
		}
	}
	return revision{}, 0, 0, false
}

// doCompact finds the generation and revision position that survive a compaction at atRev,
// adding the surviving revision at or below atRev to available.
func (ki *keyIndex) doCompact(atRev int64, available map[revision]struct{}) (genIdx, revIdx int) {
	for genIdx < ki.ngens()-1 {
		g := ki.gen(genIdx)
		if g.revs.newest.main >= atRev {
			break
		}
		genIdx++
	}
	g := ki.gen(genIdx)
	revIdx = -1
	for i := g.revs.len() - 1; i >= 0; i-- {
		if r := g.revs.at(i); r.main <= atRev {
			available[r] = struct{}{}
			revIdx = i
			break
		}
	}
	return genIdx, revIdx
}

// compact drops the revisions a read at atRev or later can never need: every generation
// deleted before atRev, and in the generation alive at atRev everything older than the
// revision visible at atRev. The revisions kept are copied, so those dropped are freed.
func (ki *keyIndex) compact(atRev int64, available map[revision]struct{}) {
	genIdx, revIdx := ki.doCompact(atRev, available)
	g := ki.gen(genIdx)
	if !g.isEmpty() && revIdx > 0 {
		g.revs.dropFirst(revIdx)
	}
	ki.dropGens(genIdx)
}

// keep adds what compact(atRev) would keep to available, except a tombstone at the compact
// point (which a hash must skip, like etcd).
func (ki *keyIndex) keep(atRev int64, available map[revision]struct{}) {
	if ki.isEmpty() {
		return
	}
	genIdx, revIdx := ki.doCompact(atRev, available)
	g := ki.gen(genIdx)
	if !g.isEmpty() && revIdx == g.revs.len()-1 && genIdx != ki.ngens()-1 {
		delete(available, g.revs.at(revIdx))
	}
}

func keyIndexLess(a, b *keyIndex) bool { return a.key < b.key }

// treeIndex is the ordered key → keyIndex map. It is not safe for concurrent use on its own;
// the store guards it.
type treeIndex struct {
	tree *btree.BTreeG[*keyIndex]
}

func newTreeIndex() *treeIndex {
	return &treeIndex{tree: btree.NewG(32, keyIndexLess)}
}

// probe is a key index to look key up with, sharing key's memory: it must not be kept.
func probe(key []byte) *keyIndex {
	return &keyIndex{key: unsafe.String(unsafe.SliceData(key), len(key))}
}

func (ti *treeIndex) keyIndex(key []byte) *keyIndex {
	ki, ok := ti.tree.Get(probe(key))
	if !ok {
		return nil
	}
	return ki
}

func (ti *treeIndex) getOrCreate(key []byte) *keyIndex {
	if ki := ti.keyIndex(key); ki != nil {
		return ki
	}
	ki := &keyIndex{key: string(key)}
	ti.tree.ReplaceOrInsert(ki)
	return ki
}

// put records a change of key at rev.
func (ti *treeIndex) put(key []byte, rev revision) { ti.getOrCreate(key).put(rev) }

// undoPut takes back put(key, rev), dropping a key index that put created.
func (ti *treeIndex) undoPut(key []byte, rev revision) {
	ki := ti.keyIndex(key)
	ki.undoPut(rev)
	if ki.isEmpty() {
		ti.tree.Delete(ki)
	}
}

// undoTombstone takes back tombstone(key, rev).
func (ti *treeIndex) undoTombstone(key []byte, rev revision) {
	ti.keyIndex(key).undoTombstone(rev)
}

func (ti *treeIndex) restore(key []byte, created int64, modified revision, ver int64) {
	ti.getOrCreate(key).restore(created, modified, ver)
}

// tombstone ends key's current generation at rev; false if the key is not live.
func (ti *treeIndex) tombstone(key []byte, rev revision) bool {
	ki := ti.keyIndex(key)
	return ki != nil && ki.tombstone(rev)
}

func (ti *treeIndex) get(key []byte, atRev int64) (modified revision, created, ver int64, ok bool) {
	ki := ti.keyIndex(key)
	if ki == nil {
		return revision{}, 0, 0, false
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
		ti.tree.AscendGreaterOrEqual(probe(key), f)
	default:
		if bytes.Compare(key, end) >= 0 {
			return
		}
		ti.tree.AscendRange(probe(key), probe(end), f)
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
				hits = append(hits, indexHit{key: ki.keyBytes(), rev: rev})
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
