package mvcc

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// taken holds the responses Take returned that a test has not looked at yet.
var (
	takenMu sync.Mutex
	taken   = map[*WatchStream][]WatchResponse{}
)

// next returns the stream's next response, waiting up to d: got is false if none came,
// open false if the stream is closed and empty. One goroutine per stream.
func next(ws *WatchStream, d time.Duration) (r WatchResponse, got, open bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		takenMu.Lock()
		if q := taken[ws]; len(q) > 0 {
			taken[ws] = q[1:]
			takenMu.Unlock()
			return q[0], true, true
		}
		takenMu.Unlock()
		rs, open := ws.Take()
		if len(rs) > 0 {
			takenMu.Lock()
			taken[ws] = append(taken[ws], rs...)
			takenMu.Unlock()
			continue
		}
		if !open {
			return WatchResponse{}, false, false
		}
		select {
		case <-ws.Ready():
		case <-timer.C:
			return WatchResponse{}, false, true
		}
	}
}

func recv(t *testing.T, ws *WatchStream) WatchResponse {
	t.Helper()
	r, got, open := next(ws, 10*time.Second)
	if !open {
		t.Fatal("watch stream closed")
	}
	if !got {
		t.Fatal("no watch response within 10s")
	}
	return r
}

func expectNone(t *testing.T, ws *WatchStream, d time.Duration) {
	t.Helper()
	if r, got, _ := next(ws, d); got {
		t.Fatalf("unexpected response %+v", r)
	}
}

func mustWatch(t *testing.T, ws *WatchStream, id WatchID, key, end string, rev int64, prevKV bool, fs ...FilterFunc) WatchID {
	t.Helper()
	var e []byte
	if end != "" {
		e = []byte(end)
	}
	got, _, err := ws.Watch(id, []byte(key), e, rev, prevKV, fs...)
	if err != nil {
		t.Fatalf("Watch(%q, %q, %d): %v", key, end, rev, err)
	}
	return got
}

// evString renders an event as "PUT k=v@rev" or "DELETE k@rev".
func evString(e *mvccpb.Event) string {
	if e.Type == mvccpb.Event_DELETE {
		return fmt.Sprintf("DELETE %s@%d", e.Kv.Key, e.Kv.ModRevision)
	}
	return fmt.Sprintf("PUT %s=%s@%d", e.Kv.Key, e.Kv.Value, e.Kv.ModRevision)
}

// collectEvents reads responses until n events arrived for the stream, by watch id.
func collectEvents(t *testing.T, ws *WatchStream, n int) map[WatchID][]string {
	t.Helper()
	got := map[WatchID][]string{}
	for c := 0; c < n; {
		r := recv(t, ws)
		for _, e := range r.Events {
			got[r.WatchID] = append(got[r.WatchID], evString(e))
			c++
		}
	}
	return got
}

func eq(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestWatchKeyPrefixFromKeyAll(t *testing.T) {
	s, _ := newStore(t)
	ws := s.NewWatchStream()
	defer ws.Close()
	idKey := mustWatch(t, ws, AutoWatchID, "a", "", 0, false)
	idPrefix := mustWatch(t, ws, AutoWatchID, "a", "b", 0, false)
	idFrom := mustWatch(t, ws, AutoWatchID, "b", "\x00", 0, false)
	idAll := mustWatch(t, ws, AutoWatchID, "", "\x00", 0, false)
	if idKey != 0 || idPrefix != 1 || idFrom != 2 || idAll != 3 {
		t.Fatalf("auto ids = %d %d %d %d, want 0 1 2 3", idKey, idPrefix, idFrom, idAll)
	}
	put(t, s, "a", "1")  // 2
	put(t, s, "ab", "2") // 3
	put(t, s, "b", "3")  // 4
	put(t, s, "zz", "4") // 5
	del(t, s, "a", "")   // 6
	got := collectEvents(t, ws, 2+3+2+5)
	want := map[WatchID][]string{
		idKey:    {"PUT a=1@2", "DELETE a@6"},
		idPrefix: {"PUT a=1@2", "PUT ab=2@3", "DELETE a@6"},
		idFrom:   {"PUT b=3@4", "PUT zz=4@5"},
		idAll:    {"PUT a=1@2", "PUT ab=2@3", "PUT b=3@4", "PUT zz=4@5", "DELETE a@6"},
	}
	for id, w := range want {
		if !eq(got[id], w) {
			t.Errorf("watch %d got %v, want %v", id, got[id], w)
		}
	}
	expectNone(t, ws, 50*time.Millisecond)
}

func TestWatchInvalidRangeAndIDs(t *testing.T) {
	s, _ := newStore(t)
	ws := s.NewWatchStream()
	defer ws.Close()
	if _, _, err := ws.Watch(AutoWatchID, []byte("b"), []byte("a"), 0, false); !errors.Is(err, ErrEmptyWatcherRange) {
		t.Fatalf("key > end: err = %v", err)
	}
	if _, _, err := ws.Watch(AutoWatchID, []byte("a"), []byte("a"), 0, false); !errors.Is(err, ErrEmptyWatcherRange) {
		t.Fatalf("key == end: err = %v", err)
	}
	if id := mustWatch(t, ws, 7, "x", "", 0, false); id != 7 {
		t.Fatalf("id = %d, want 7", id)
	}
	if _, _, err := ws.Watch(7, []byte("y"), nil, 0, false); err != ErrWatcherDuplicateID || err.Error() != "mvcc: duplicate watch ID provided on the WatchStream" {
		t.Fatalf("duplicate: err = %v", err)
	}
	mustWatch(t, ws, 1, "x", "", 0, false)
	if id := mustWatch(t, ws, AutoWatchID, "x", "", 0, false); id != 0 {
		t.Fatalf("auto id = %d, want 0", id)
	}
	if id := mustWatch(t, ws, AutoWatchID, "x", "", 0, false); id != 2 {
		t.Fatalf("auto id = %d, want 2 (1 is taken)", id)
	}
}

func TestWatchCancelAndClose(t *testing.T) {
	s, _ := newStore(t)
	ws := s.NewWatchStream()
	a := mustWatch(t, ws, AutoWatchID, "a", "", 0, false)
	b := mustWatch(t, ws, AutoWatchID, "a", "", 0, false)
	if err := ws.Cancel(a); err != nil {
		t.Fatal(err)
	}
	if err := ws.Cancel(a); err != ErrWatcherNotExist || err.Error() != "mvcc: watcher does not exist" {
		t.Fatalf("cancel twice: %v", err)
	}
	put(t, s, "a", "1")
	if r := recv(t, ws); r.WatchID != b || len(r.Events) != 1 {
		t.Fatalf("got %+v", r)
	}
	expectNone(t, ws, 50*time.Millisecond)
	ws.Close()
	ws.Close()
	put(t, s, "a", "2")
	if _, _, open := next(ws, time.Second); open {
		t.Fatal("queue not closed after Close")
	}
	if _, _, err := ws.Watch(AutoWatchID, []byte("a"), nil, 0, false); err == nil {
		t.Fatal("Watch on a closed stream succeeded")
	}
	if s.hub.synced.size() != 0 || len(s.hub.unsynced) != 0 {
		t.Fatalf("watchers left after Close: %d synced, %d unsynced", s.hub.synced.size(), len(s.hub.unsynced))
	}
}

func TestWatchTxnOneResponse(t *testing.T) {
	s, _ := newStore(t)
	put(t, s, "c", "0") // 2
	ws := s.NewWatchStream()
	defer ws.Close()
	live := mustWatch(t, ws, AutoWatchID, "", "\x00", 0, false)
	tw := s.Write()
	tw.Put([]byte("c"), []byte("1"), 0)
	tw.Put([]byte("a"), []byte("2"), 0)
	tw.DeleteRange([]byte("c"), nil)
	tw.Put([]byte("b"), []byte("3"), 0)
	tw.End(0, 0) // 3
	want := []string{"PUT c=1@3", "PUT a=2@3", "DELETE c@3", "PUT b=3@3"}
	r := recv(t, ws)
	if r.WatchID != live || r.Revision != 3 || len(r.Events) != 4 {
		t.Fatalf("live: %+v", r)
	}
	for i, e := range r.Events {
		if evString(e) != want[i] {
			t.Fatalf("live event %d = %s, want %s", i, evString(e), want[i])
		}
	}
	hist := mustWatch(t, ws, AutoWatchID, "", "\x00", 3, false)
	r = recv(t, ws)
	if r.WatchID != hist || len(r.Events) != 4 {
		t.Fatalf("replay: %+v", r)
	}
	for i, e := range r.Events {
		if evString(e) != want[i] {
			t.Fatalf("replay event %d = %s, want %s", i, evString(e), want[i])
		}
	}
}

func TestWatchFilters(t *testing.T) {
	s, _ := newStore(t)
	ws := s.NewWatchStream()
	defer ws.Close()
	noPut := mustWatch(t, ws, AutoWatchID, "k", "", 0, false, FilterNoPut)
	noDel := mustWatch(t, ws, AutoWatchID, "k", "", 0, false, FilterNoDelete)
	put(t, s, "k", "1")
	del(t, s, "k", "")
	put(t, s, "k", "2")
	got := collectEvents(t, ws, 3)
	if !eq(got[noPut], []string{"DELETE k@3"}) || !eq(got[noDel], []string{"PUT k=1@2", "PUT k=2@4"}) {
		t.Fatalf("live: %v", got)
	}
	// The same through replay.
	hp := mustWatch(t, ws, AutoWatchID, "k", "", 1, false, FilterNoPut)
	hd := mustWatch(t, ws, AutoWatchID, "k", "", 1, false, FilterNoDelete)
	got = collectEvents(t, ws, 3)
	if !eq(got[hp], []string{"DELETE k@3"}) || !eq(got[hd], []string{"PUT k=1@2", "PUT k=2@4"}) {
		t.Fatalf("replay: %v", got)
	}
}

func prevString(e *mvccpb.Event) string {
	if e.PrevKv == nil {
		return "-"
	}
	return fmt.Sprintf("%s=%s@%d", e.PrevKv.Key, e.PrevKv.Value, e.PrevKv.ModRevision)
}

func TestWatchPrevKV(t *testing.T) {
	s, _ := newStore(t)
	ws := s.NewWatchStream()
	defer ws.Close()
	withPrev := mustWatch(t, ws, AutoWatchID, "k", "", 0, true)
	without := mustWatch(t, ws, AutoWatchID, "k", "", 0, false)
	put(t, s, "k", "1") // 2
	put(t, s, "k", "2") // 3
	del(t, s, "k", "")  // 4
	put(t, s, "k", "3") // 5
	want := []string{"-", "k=1@2", "k=2@3", "-"}
	check := func(name string, id WatchID, wantPrev bool) {
		t.Helper()
		var prevs []string
		for len(prevs) < 4 {
			r := recv(t, ws)
			if r.WatchID != id {
				t.Fatalf("%s: response for watch %d, want %d", name, r.WatchID, id)
			}
			for _, e := range r.Events {
				prevs = append(prevs, prevString(e))
			}
		}
		if wantPrev && !eq(prevs, want) {
			t.Fatalf("%s: prev kvs %v, want %v", name, prevs, want)
		}
		if !wantPrev && !eq(prevs, []string{"-", "-", "-", "-"}) {
			t.Fatalf("%s: prev kvs %v without prevKV", name, prevs)
		}
	}
	// Live responses alternate between the two watchers per revision.
	got := map[WatchID][]string{}
	for n := 0; n < 8; {
		r := recv(t, ws)
		for _, e := range r.Events {
			got[r.WatchID] = append(got[r.WatchID], prevString(e))
			n++
		}
	}
	if !eq(got[withPrev], want) || !eq(got[without], []string{"-", "-", "-", "-"}) {
		t.Fatalf("live prev kvs: %v", got)
	}
	h := mustWatch(t, ws, AutoWatchID, "k", "", 2, true)
	check("replay", h, true)
	h2 := mustWatch(t, ws, AutoWatchID, "k", "", 2, false)
	check("replay without prevKV", h2, false)
}

// TestWatchPrevKVUnread: puts read a key's previous value only while some watcher wants
// previous values. A watcher with prevKV that starts after a put, while its transaction is
// still open, still gets the value the put replaced; one without gets none; and once the
// last prevKV watcher is gone, puts stop reading them again.
func TestWatchPrevKVUnread(t *testing.T) {
	s, _ := newStore(t)
	put(t, s, "k", "1") // 2, no watcher at all
	ws := s.NewWatchStream()
	defer ws.Close()
	without := mustWatch(t, ws, AutoWatchID, "k", "", 0, false)
	if n := s.hub.prevKVWatchers.Load(); n != 0 {
		t.Fatalf("prevKV watchers = %d without any", n)
	}

	tw := s.Write()
	tw.Put([]byte("k"), []byte("2"), 0) // 3: no prevKV watcher yet, so k=1 is not read
	if tw.prevs[0] != unreadPrev {
		t.Errorf("put with no prevKV watcher read the previous value: %v", tw.prevs[0])
	}
	// (No Fatal while the txn holds the write lock.)
	withPrev, _, err := ws.Watch(AutoWatchID, []byte("k"), nil, 0, true)
	tw.End(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	collect := func() map[WatchID][]string {
		t.Helper()
		got := map[WatchID][]string{}
		for c := 0; c < 2; {
			r := recv(t, ws)
			for _, e := range r.Events {
				got[r.WatchID] = append(got[r.WatchID], fmt.Sprintf("%s=%s@%d prev %s", e.Kv.Key, e.Kv.Value, e.Kv.ModRevision, prevString(e)))
				c++
			}
		}
		return got
	}
	got := collect()
	if !eq(got[withPrev], []string{"k=2@3 prev k=1@2"}) || !eq(got[without], []string{"k=2@3 prev -"}) {
		t.Fatalf("events of the put before the prevKV watcher: %v", got)
	}

	put(t, s, "k", "3") // 4: read now
	got = collect()
	if !eq(got[withPrev], []string{"k=3@4 prev k=2@3"}) || !eq(got[without], []string{"k=3@4 prev -"}) {
		t.Fatalf("events with a prevKV watcher: %v", got)
	}

	if err := ws.Cancel(withPrev); err != nil {
		t.Fatal(err)
	}
	if n := s.hub.prevKVWatchers.Load(); n != 0 {
		t.Fatalf("prevKV watchers = %d after the only one was cancelled", n)
	}
	tw = s.Write()
	tw.Put([]byte("k"), []byte("4"), 0)
	unread := tw.prevs[0] == unreadPrev
	tw.End(0, 0)
	if !unread {
		t.Fatal("put read the previous value after the last prevKV watcher was cancelled")
	}
}

func TestWatchCompactedStart(t *testing.T) {
	s, _ := newStore(t)
	for i := 0; i < 10; i++ {
		put(t, s, "k", fmt.Sprint(i)) // 2..11
	}
	done, err := s.Compact(6)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, done)
	ws := s.NewWatchStream()
	defer ws.Close()
	id := mustWatch(t, ws, AutoWatchID, "k", "", 3, false)
	r := recv(t, ws)
	if r.WatchID != id || r.CompactRevision != 6 || len(r.Events) != 0 || r.Revision != 0 {
		t.Fatalf("got %+v, want CompactRevision 6", r)
	}
	// As in etcd, the compacted watcher keeps its id until the client cancels it.
	if err := ws.Cancel(id); err != nil {
		t.Fatalf("cancel of a compacted watcher: %v", err)
	}
	if err := ws.Cancel(id); err != ErrWatcherNotExist {
		t.Fatalf("second cancel: %v, want ErrWatcherNotExist", err)
	}
	// From the compacted revision itself history is intact.
	id = mustWatch(t, ws, AutoWatchID, "k", "", 6, false)
	got := collectEvents(t, ws, 6)
	if !eq(got[id], []string{"PUT k=4@6", "PUT k=5@7", "PUT k=6@8", "PUT k=7@9", "PUT k=8@10", "PUT k=9@11"}) {
		t.Fatalf("from compact rev: %v", got[id])
	}
}

func TestWatchFutureStart(t *testing.T) {
	s, _ := newStore(t)
	ws := s.NewWatchStream()
	defer ws.Close()
	id := mustWatch(t, ws, AutoWatchID, "k", "", 4, false)
	if ws.RequestProgressAll() {
		t.Fatal("progress for a watcher that starts in the future")
	}
	put(t, s, "k", "a") // 2
	put(t, s, "k", "b") // 3
	expectNone(t, ws, 50*time.Millisecond)
	put(t, s, "k", "c") // 4
	r := recv(t, ws)
	if r.WatchID != id || len(r.Events) != 1 || evString(r.Events[0]) != "PUT k=c@4" {
		t.Fatalf("got %+v", r)
	}
}

func TestWatchProgress(t *testing.T) {
	s, _ := newStore(t)
	put(t, s, "a", "1") // 2
	ws := s.NewWatchStream()
	defer ws.Close()
	id := mustWatch(t, ws, AutoWatchID, "k", "", 0, false)
	if !ws.RequestProgressAll() {
		t.Fatal("RequestProgressAll = false with every watcher synced")
	}
	if r := recv(t, ws); r.WatchID != InvalidWatchID || r.Revision != 2 || len(r.Events) != 0 {
		t.Fatalf("progress all: %+v", r)
	}
	ws.RequestProgress(id)
	if r := recv(t, ws); r.WatchID != id || r.Revision != 2 || len(r.Events) != 0 {
		t.Fatalf("progress: %+v", r)
	}
	// Fill the channel so the watcher falls behind.
	for i := 0; i < chanBufLen+5; i++ {
		put(t, s, "k", fmt.Sprint(i))
	}
	if ws.RequestProgressAll() {
		t.Fatal("RequestProgressAll = true with an unsynced watcher")
	}
	ws.RequestProgress(id)
	next := int64(3)
	for next <= s.Rev() {
		r := recv(t, ws)
		if len(r.Events) == 0 {
			t.Fatalf("progress response while unsynced: %+v", r)
		}
		for _, e := range r.Events {
			if e.Kv.ModRevision != next {
				t.Fatalf("event rev %d, want %d", e.Kv.ModRevision, next)
			}
			next++
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for !ws.RequestProgressAll() {
		if time.Now().After(deadline) {
			t.Fatal("watcher never synced again")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r := recv(t, ws); r.WatchID != InvalidWatchID || r.Revision != s.Rev() {
		t.Fatalf("progress all after catching up: %+v (rev %d)", r, s.Rev())
	}
}

func TestWatchHistoryAcrossBatches(t *testing.T) {
	s, _ := newStore(t)
	const n = 2*watchBatchMaxRevs + 300
	for i := 0; i < n; i++ {
		if i%3 == 2 {
			del(t, s, fmt.Sprintf("k%d", i-1), "")
		} else {
			put(t, s, fmt.Sprintf("k%d", i), "v")
		}
		if i == n/2 {
			if err := s.Commit(); err != nil { // half committed, half in the open batch
				t.Fatal(err)
			}
		}
	}
	ws := s.NewWatchStream()
	defer ws.Close()
	id := mustWatch(t, ws, AutoWatchID, "k", "l", 2, false)
	next, responses := int64(2), 0
	for next <= s.Rev() {
		r := recv(t, ws)
		responses++
		if r.WatchID != id {
			t.Fatalf("response for %d", r.WatchID)
		}
		for _, e := range r.Events {
			i := int(e.Kv.ModRevision - 2)
			want := fmt.Sprintf("PUT k%d=v@%d", i, e.Kv.ModRevision)
			if i%3 == 2 {
				want = fmt.Sprintf("DELETE k%d@%d", i-1, e.Kv.ModRevision)
			}
			if e.Kv.ModRevision != next || evString(e) != want {
				t.Fatalf("event %s, want %s at rev %d", evString(e), want, next)
			}
			next++
		}
	}
	if responses < 3 {
		t.Fatalf("%d responses for %d revisions: not batched", responses, n)
	}
	put(t, s, "k", "live")
	if r := recv(t, ws); len(r.Events) != 1 || r.Events[0].Kv.ModRevision != s.Rev() {
		t.Fatalf("live after replay: %+v", r)
	}
}

// TestWatchStalledStream: a stream nobody reads never slows writes, and once read it
// delivers every revision once, in order.
func TestWatchStalledStream(t *testing.T) {
	s, _ := newStore(t)
	ws := s.NewWatchStream()
	defer ws.Close()
	id := mustWatch(t, ws, AutoWatchID, "k", "l", 0, true)
	other := s.NewWatchStream()
	defer other.Close()
	mustWatch(t, other, AutoWatchID, "k", "l", 0, false)
	const n = 10000
	start := time.Now()
	for i := 0; i < n; i++ {
		put(t, s, fmt.Sprintf("k%d", i%100), fmt.Sprint(i))
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("%d writes took %v with a stalled watch stream", n, d)
	}
	time.Sleep(3 * syncInterval) // the sync loop must skip, not spin on, the full stream
	next := int64(2)
	for next <= s.Rev() {
		r := recv(t, ws)
		if r.WatchID != id {
			t.Fatalf("response for %d", r.WatchID)
		}
		for _, e := range r.Events {
			if e.Kv.ModRevision != next {
				t.Fatalf("event at rev %d, want %d", e.Kv.ModRevision, next)
			}
			i := next - 2
			if string(e.Kv.Value) != fmt.Sprint(i) {
				t.Fatalf("rev %d value %s", next, e.Kv.Value)
			}
			if i >= 100 && (e.PrevKv == nil || string(e.PrevKv.Value) != fmt.Sprint(i-100)) {
				t.Fatalf("rev %d prev kv %v", next, e.PrevKv)
			}
			next++
		}
	}
	expectNone(t, ws, 50*time.Millisecond)
	put(t, s, "k0", "live")
	if r := recv(t, ws); len(r.Events) != 1 || r.Events[0].Kv.ModRevision != s.Rev() {
		t.Fatalf("live after catching up: %+v", r)
	}
}

func TestWatchCompactionWhileUnsynced(t *testing.T) {
	s, _ := newStore(t)
	ws := s.NewWatchStream()
	defer ws.Close()
	id := mustWatch(t, ws, AutoWatchID, "k", "", 0, false)
	for i := 0; i < chanBufLen+50; i++ {
		put(t, s, "k", fmt.Sprint(i))
	}
	if _, err := s.Compact(s.Rev()); err != nil {
		t.Fatal(err)
	}
	next := int64(2)
	for {
		r := recv(t, ws)
		if r.CompactRevision != 0 {
			if r.WatchID != id || r.CompactRevision != s.Rev() || next != chanBufLen+2 {
				t.Fatalf("compaction response %+v after rev %d", r, next-1)
			}
			break
		}
		for _, e := range r.Events {
			if e.Kv.ModRevision != next {
				t.Fatalf("event rev %d, want %d", e.Kv.ModRevision, next)
			}
			next++
		}
	}
	// As in etcd, the compacted watcher keeps its id until the client cancels it.
	if err := ws.Cancel(id); err != nil {
		t.Fatalf("cancel of a compacted watcher: %v", err)
	}
	if err := ws.Cancel(id); err != ErrWatcherNotExist {
		t.Fatalf("second cancel: %v, want ErrWatcherNotExist", err)
	}
}
