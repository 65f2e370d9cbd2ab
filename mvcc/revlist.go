package mvcc

import "slices"

// revList is the revisions of one generation, oldest first, with the newest inline: a
// generation usually holds one revision (compaction keeps one per live key), which then
// costs no allocation of its own. It is 24 bytes, the size of a slice header.
type revList struct {
	newest revision    // the zero revision (never a real one) when the list is empty
	older  *[]revision // the revisions before newest, oldest first; nil if none
}

func (l *revList) len() int {
	switch {
	case l.newest.main == 0:
		return 0
	case l.older == nil:
		return 1
	}
	return len(*l.older) + 1
}

// at is the i-th revision, oldest first.
func (l *revList) at(i int) revision {
	if l.older == nil || i == len(*l.older) {
		return l.newest
	}
	return (*l.older)[i]
}

func (l *revList) push(r revision) {
	if l.newest.main != 0 {
		if l.older == nil {
			l.older = &[]revision{}
		}
		*l.older = append(*l.older, l.newest)
	}
	l.newest = r
}

// pop drops the newest revision.
func (l *revList) pop() {
	if l.older == nil {
		l.newest = revision{}
		return
	}
	old := *l.older
	l.newest = old[len(old)-1]
	if len(old) == 1 {
		l.older = nil
	} else {
		*l.older = old[:len(old)-1]
	}
}

// dropFirst drops the n oldest revisions (n < len()), copying the ones kept so the
// dropped ones are freed.
func (l *revList) dropFirst(n int) {
	if n == 0 {
		return
	}
	if n >= len(*l.older) {
		l.older = nil
		return
	}
	kept := slices.Clone((*l.older)[n:])
	l.older = &kept
}
