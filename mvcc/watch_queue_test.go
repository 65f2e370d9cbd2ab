package mvcc

import (
	"fmt"
	"testing"
)

// A busy consumer gets a watcher's live revisions merged into its response still in the
// queue, whole and in order; nothing merges across a progress response.
func TestWatchMergesWhileQueued(t *testing.T) {
	s, _ := newStore(t)
	ws := s.NewWatchStream()
	a := mustWatch(t, ws, AutoWatchID, "k", "", 0, false)
	b := mustWatch(t, ws, AutoWatchID, "k", "", 0, false)
	var revs []int64
	for range 3 {
		revs = append(revs, put(t, s, "k", "v"))
	}
	rs, open := ws.Take()
	if !open || len(rs) != 2 {
		t.Fatalf("took %d responses (open %v), want one per watcher: %+v", len(rs), open, rs)
	}
	if ids := [2]WatchID{rs[0].WatchID, rs[1].WatchID}; ids != [2]WatchID{a, b} && ids != [2]WatchID{b, a} {
		t.Fatalf("responses for watchers %v, want %d and %d", ids, a, b)
	}
	for _, r := range rs {
		if r.Revision != revs[2] || len(r.Events) != 3 {
			t.Fatalf("response %+v, want revisions %v in one", r, revs)
		}
		for i, e := range r.Events {
			if e.Kv.ModRevision != revs[i] {
				t.Fatalf("watcher %d: event %d at revision %d, want %d", r.WatchID, i, e.Kv.ModRevision, revs[i])
			}
		}
	}

	r4 := put(t, s, "k", "v")
	ws.RequestProgress(a)
	r5 := put(t, s, "k", "v")
	rs, _ = ws.Take()
	var got []string
	for _, r := range rs {
		var evs []int64
		for _, e := range r.Events {
			evs = append(evs, e.Kv.ModRevision)
		}
		got = append(got, fmt.Sprintf("%d@%d%v", r.WatchID, r.Revision, evs))
	}
	want := fmt.Sprintf("%d@%d[%d]", a, r5, r5)
	if len(rs) != 5 || got[2] != fmt.Sprintf("%d@%d[]", a, r4) || (got[3] != want && got[4] != want) {
		t.Fatalf("took %v; want responses at %d for both, %d's progress at %d, then each at %d", got, r4, a, r4, r5)
	}
}
