package mvcc

import (
	"bytes"
	"math/rand/v2"
)

// watcherGroup finds the watchers whose range holds a key: single-key watchers in a map
// by key, range and from-key watchers in an interval treap ordered by start key and
// augmented with the largest end in each subtree. A lookup costs O(log n + matches).
//
// A watcher is in at most one group at a time; w.slot is its position in its key's slice.
type watcherGroup struct {
	keys   map[string][]*watcher
	ranges *ivNode
	n      int
}

func newWatcherGroup() *watcherGroup {
	return &watcherGroup{keys: make(map[string][]*watcher)}
}

func (g *watcherGroup) size() int { return g.n }

func (g *watcherGroup) add(w *watcher) {
	g.n++
	if w.isRange() {
		g.ranges = ivInsert(g.ranges, &ivNode{w: w, prio: rand.Uint32()})
		return
	}
	k := string(w.key)
	ws := g.keys[k]
	w.slot = len(ws)
	g.keys[k] = append(ws, w)
}

func (g *watcherGroup) delete(w *watcher) {
	g.n--
	if w.isRange() {
		g.ranges = ivDelete(g.ranges, w)
		return
	}
	k := string(w.key)
	ws := g.keys[k]
	last := len(ws) - 1
	if w.slot > last || ws[w.slot] != w {
		panic("mvcc: watcher not in its group")
	}
	ws[w.slot] = ws[last]
	ws[w.slot].slot = w.slot
	ws[last] = nil
	if last == 0 {
		delete(g.keys, k)
	} else {
		g.keys[k] = ws[:last]
	}
}

// match calls f for every watcher whose range holds key.
func (g *watcherGroup) match(key []byte, f func(w *watcher)) {
	for _, w := range g.keys[string(key)] {
		f(w)
	}
	ivStab(g.ranges, key, f)
}

// all returns every watcher in the group.
func (g *watcherGroup) all() []*watcher {
	out := make([]*watcher, 0, g.n)
	for _, ws := range g.keys {
		out = append(out, ws...)
	}
	var walk func(n *ivNode)
	walk = func(n *ivNode) {
		for n != nil {
			walk(n.left)
			out = append(out, n.w)
			n = n.right
		}
	}
	walk(g.ranges)
	return out
}

// ivNode is a treap node holding one range watcher ([key, end), or [key, ∞) for from-key).
type ivNode struct {
	w           *watcher
	prio        uint32
	left, right *ivNode
	maxEnd      []byte // largest end in the subtree; ignored when maxInf
	maxInf      bool
}

// ivLess orders nodes by start key, then by watcher sequence number.
func ivLess(a, b *watcher) bool {
	if c := bytes.Compare(a.key, b.key); c != 0 {
		return c < 0
	}
	return a.seq < b.seq
}

func (n *ivNode) update() {
	n.maxEnd, n.maxInf = n.w.end, n.w.fromKey
	for _, c := range [2]*ivNode{n.left, n.right} {
		if c == nil || n.maxInf {
			continue
		}
		if c.maxInf {
			n.maxInf = true
		} else if bytes.Compare(c.maxEnd, n.maxEnd) > 0 {
			n.maxEnd = c.maxEnd
		}
	}
}

func rotateRight(n *ivNode) *ivNode {
	l := n.left
	n.left = l.right
	l.right = n
	n.update()
	l.update()
	return l
}

func rotateLeft(n *ivNode) *ivNode {
	r := n.right
	n.right = r.left
	r.left = n
	n.update()
	r.update()
	return r
}

func ivInsert(n, x *ivNode) *ivNode {
	if n == nil {
		x.update()
		return x
	}
	if ivLess(x.w, n.w) {
		n.left = ivInsert(n.left, x)
		if n.left.prio > n.prio {
			return rotateRight(n)
		}
	} else {
		n.right = ivInsert(n.right, x)
		if n.right.prio > n.prio {
			return rotateLeft(n)
		}
	}
	n.update()
	return n
}

func ivDelete(n *ivNode, w *watcher) *ivNode {
	if n == nil {
		panic("mvcc: range watcher not in its group")
	}
	switch {
	case n.w == w:
		return ivMerge(n.left, n.right)
	case ivLess(w, n.w):
		n.left = ivDelete(n.left, w)
	default:
		n.right = ivDelete(n.right, w)
	}
	n.update()
	return n
}

// ivMerge joins two treaps where every node of a sorts before every node of b.
func ivMerge(a, b *ivNode) *ivNode {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case a.prio > b.prio:
		a.right = ivMerge(a.right, b)
		a.update()
		return a
	default:
		b.left = ivMerge(a, b.left)
		b.update()
		return b
	}
}

// ivStab calls f for every range in the subtree that holds key.
func ivStab(n *ivNode, key []byte, f func(w *watcher)) {
	for n != nil {
		if !n.maxInf && bytes.Compare(n.maxEnd, key) <= 0 {
			return // every range here ends at or before key
		}
		ivStab(n.left, key, f)
		if bytes.Compare(n.w.key, key) > 0 {
			return // this node and its right subtree start after key
		}
		if n.w.fromKey || bytes.Compare(key, n.w.end) < 0 {
			f(n.w)
		}
		n = n.right
	}
}
