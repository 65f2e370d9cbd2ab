package mvcc

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// A key index stays 64 bytes: with many keys it is most of a member's memory.
func TestKeyIndexSize(t *testing.T) {
	if n := unsafe.Sizeof(keyIndex{}); n > 64 {
		t.Fatalf("keyIndex is %d bytes", n)
	}
}

// keyPair is one key in the compact layout and in the reference one, changed alike.
type keyPair struct {
	ki  *keyIndex
	ref *refKeyIndex
}

// live says the key is live (its current generation is not empty).
func (p *keyPair) live() bool {
	g := p.ref.generations
	return len(g) > 0 && !g[len(g)-1].isEmpty()
}

func (p *keyPair) check(t *testing.T, step string, maxRev int64) {
	t.Helper()
	// A fresh reference has no generation at all, and counts as not empty.
	refEmpty := len(p.ref.generations) == 0 || p.ref.isEmpty()
	if p.ki.isEmpty() != refEmpty {
		t.Fatalf("%s: isEmpty %v, reference %v", step, p.ki.isEmpty(), refEmpty)
	}
	if !refEmpty && p.ki.modified() != p.ref.modified {
		t.Fatalf("%s: modified %v, reference %v", step, p.ki.modified(), p.ref.modified)
	}
	if p.ki.ngens() != len(p.ref.generations) && !(p.ki.ngens() == 1 && len(p.ref.generations) == 0) {
		t.Fatalf("%s: %d generations, reference %d", step, p.ki.ngens(), len(p.ref.generations))
	}
	for rev := int64(0); rev <= maxRev+1; rev++ {
		m, c, v, ok := p.ki.get(rev)
		rm, rc, rv, rok := p.ref.get(rev)
		if m != rm || c != rc.main || v != rv || ok != rok {
			t.Fatalf("%s: get(%d) = %v %d %d %v, reference %v %d %d %v", step, rev, m, c, v, ok, rm, rc.main, rv, rok)
		}
		a, ra := map[revision]struct{}{}, map[revision]struct{}{}
		if !p.ki.isEmpty() {
			p.ki.keep(rev, a)
			p.ref.keep(rev, ra)
			if !maps.Equal(a, ra) {
				t.Fatalf("%s: keep(%d) = %v, reference %v", step, rev, a, ra)
			}
		}
	}
}

// The compact key index answers every read, compaction and hash question as the
// reference layout over random histories: restores, puts and deletes in txns (some
// undone), several generations, compactions at random points.
func TestKeyIndexMatchesReference(t *testing.T) {
	for seed := uint64(0); seed < 300; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		p := &keyPair{ki: &keyIndex{key: "k"}, ref: &refKeyIndex{key: []byte("k")}}
		rev := int64(1)
		// A history restored from the backend: revisions of earlier generations may be
		// compacted away, so it starts anywhere.
		for i := rng.IntN(6); i > 0; i-- {
			rev += 1 + rng.Int64N(3)
			r := revision{main: rev}
			if p.live() && rng.IntN(3) == 0 {
				p.ki.tombstone(r)
				p.ref.tombstone(r)
			} else {
				created, ver := rev-rng.Int64N(3), 1+rng.Int64N(5)
				p.ki.restore(created, r, ver)
				p.ref.restore(revision{main: created}, r, ver)
			}
			p.check(t, fmt.Sprintf("seed %d restore at %d", seed, rev), rev)
		}
		for step := 0; step < 60; step++ {
			if p.ki.isEmpty() && step > 0 && rng.IntN(4) == 0 {
				break // the store drops an empty key index
			}
			rev++
			name := fmt.Sprintf("seed %d step %d rev %d", seed, step, rev)
			if rng.IntN(5) == 0 && !p.ki.isEmpty() {
				at := rev - rng.Int64N(rev)
				a, ra := map[revision]struct{}{}, map[revision]struct{}{}
				p.ki.compact(at, a)
				p.ref.compact(at, ra)
				if !maps.Equal(a, ra) {
					t.Fatalf("%s: compact(%d) kept %v, reference %v", name, at, a, ra)
				}
				p.check(t, name+" compact", rev)
				continue
			}
			// One txn: a few changes of the key at rev, undone in reverse order or not.
			type undo struct {
				tomb    bool
				r       revision
				prevMod revision
			}
			var undos []undo
			for sub := int64(0); sub < 1+rng.Int64N(3); sub++ {
				r := revision{main: rev, sub: sub}
				prevMod := p.ref.modified
				if p.live() && rng.IntN(3) == 0 {
					if p.ki.tombstone(r) != p.ref.tombstone(r) {
						t.Fatalf("%s: tombstone answers differ", name)
					}
					undos = append(undos, undo{true, r, prevMod})
				} else {
					p.ki.put(r)
					p.ref.put(r)
					undos = append(undos, undo{false, r, prevMod})
				}
				p.check(t, name+" change", rev)
			}
			if rng.IntN(4) == 0 {
				for i := len(undos) - 1; i >= 0; i-- {
					u := undos[i]
					if u.tomb {
						p.ki.undoTombstone(u.r)
						p.ref.undoTombstone(u.r, u.prevMod)
					} else {
						p.ki.undoPut(u.r)
						p.ref.undoPut(u.r, u.prevMod)
					}
					p.check(t, name+" undo", rev)
				}
				rev--
			}
		}
	}
}
