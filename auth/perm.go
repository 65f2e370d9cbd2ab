package auth

import (
	"bytes"
	"slices"

	"github.com/cairn-kv/cairn/proto/authpb"
)

// Key intervals compare keys "affinely", as etcd's adt.BytesAffineComparable: the empty
// key is greater than every other, so an interval ending in it runs to the end of the
// key space.
func affineCmp(a, b []byte) int {
	switch {
	case len(a) == 0 && len(b) == 0:
		return 0
	case len(a) == 0:
		return 1
	case len(b) == 0:
		return -1
	}
	return bytes.Compare(a, b)
}

// interval is [begin, end) under affineCmp.
type interval struct{ begin, end []byte }

func point(key []byte) interval { return interval{key, append(bytes.Clone(key), 0)} }

// overlaps is etcd's interval comparison returning "equal": q is neither wholly before
// n nor at or after n's end.
func (q interval) overlaps(n interval) bool {
	before := affineCmp(q.begin, n.begin) < 0 && affineCmp(q.end, n.begin) <= 0
	after := affineCmp(q.begin, n.end) >= 0
	return !before && !after
}

// userPerms is the union of a user's roles' permissions.
type userPerms struct{ read, write []interval }

func isOpenEnded(rangeEnd []byte) bool { return len(rangeEnd) == 1 && rangeEnd[0] == 0 }

// permInterval is the keys a stored permission covers: one key (no range end), every key
// from Key on (range end "\x00"), or [Key, RangeEnd).
func permInterval(p *authpb.Permission) interval {
	if len(p.RangeEnd) == 0 {
		return point(p.Key)
	}
	if isOpenEnded(p.RangeEnd) {
		return interval{p.Key, nil}
	}
	return interval{p.Key, p.RangeEnd}
}

func buildPerms(st *state) map[string]*userPerms {
	out := make(map[string]*userPerms, len(st.users))
	for name, u := range st.users {
		up := &userPerms{}
		for _, rn := range u.Roles {
			role := st.roles[rn]
			if role == nil {
				continue
			}
			for _, p := range role.KeyPermission {
				ivl := permInterval(p)
				switch p.PermType {
				case authpb.Permission_READWRITE:
					up.read = append(up.read, ivl)
					up.write = append(up.write, ivl)
				case authpb.Permission_READ:
					up.read = append(up.read, ivl)
				case authpb.Permission_WRITE:
					up.write = append(up.write, ivl)
				}
			}
		}
		sortIntervals(up.read)
		sortIntervals(up.write)
		out[name] = up
	}
	return out
}

func sortIntervals(ivs []interval) {
	slices.SortStableFunc(ivs, func(a, b interval) int { return affineCmp(a.begin, b.begin) })
}

// permitted: a single key (empty rangeEnd) needs one interval overlapping it; a range
// needs the intervals overlapping it to cover it from its start to its end without a
// gap (etcd's IntervalTree.Intersects and Contains).
func (up *userPerms) permitted(key, rangeEnd []byte, typ authpb.Permission_Type) bool {
	ivs := up.read
	if typ == authpb.Permission_WRITE {
		ivs = up.write
	}
	if len(rangeEnd) == 0 {
		q := point(key)
		for _, n := range ivs {
			if q.overlaps(n) {
				return true
			}
		}
		return false
	}
	if isOpenEnded(rangeEnd) {
		rangeEnd = nil
	}
	q := interval{key, rangeEnd}
	var minBegin, maxEnd []byte
	found := false
	for _, n := range ivs { // sorted by begin, as the tree visits them
		if !q.overlaps(n) {
			continue
		}
		if !found {
			found, minBegin, maxEnd = true, n.begin, n.end
			continue
		}
		if affineCmp(maxEnd, n.begin) < 0 {
			return false
		}
		if affineCmp(n.end, maxEnd) > 0 {
			maxEnd = n.end
		}
	}
	return found && affineCmp(maxEnd, q.end) >= 0 && affineCmp(minBegin, q.begin) <= 0
}

// validPermissionRange: a key is required; a range end must be past it, or "\x00".
func validPermissionRange(key, rangeEnd []byte) bool {
	if len(key) == 0 {
		return false
	}
	if len(rangeEnd) == 0 {
		return true
	}
	return affineCmp(key, rangeEnd) < 0 || isOpenEnded(rangeEnd)
}
