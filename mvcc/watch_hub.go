package mvcc

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/proto/mvccpb"
)

const (
	// syncInterval is how often the sync loop runs without being woken (etcd: 100ms).
	// It is woken when a watcher starts in the past, after a Restore, and when the
	// consumer of a stream whose watchers fell behind takes its queue, so it never
	// polls for room.
	syncInterval = 100 * time.Millisecond
	// maxWatchersPerSync bounds the watchers caught up in one round (etcd's value).
	maxWatchersPerSync = 512
	// watchBatchMaxRevs bounds the revisions read from the backend in one round.
	watchBatchMaxRevs = 1000
	// watchBatchMaxEvents stops a round's read at the next revision boundary once this
	// many events were read.
	watchBatchMaxEvents = 10000
)

// watchHub routes the events of every write transaction to the watchers of every stream.
//
// Synced watchers have been sent every event up to rev; a write txn's end hands each
// revision's events to notify, which sends them at once without ever blocking: a watcher
// whose stream queue is full becomes unsynced. Unsynced watchers (those that started in
// the past or fell behind) are caught up by the sync loop, which reads history from the
// backend in bounded batches and moves a watcher back to the synced group once it has
// been sent everything up to rev. Nothing is buffered per watcher outside the stream queues.
//
// Locking: a write txn's end calls notify holding the store's write lock, so the order
// is wmu → h.mu → s.mu, and h.mu → ws.qmu; the sync loop reads the backend (which may
// take wmu) without h.mu, and a stream's consumer takes only ws.qmu.
type watchHub struct {
	s  *Store
	lg *zap.Logger

	mu       sync.Mutex
	rev      int64 // the last revision handed to notify
	seq      uint64
	synced   *watcherGroup
	unsynced map[*watcher]struct{}
	streams  map[*WatchStream]struct{}
	stopped  bool
	matched  []*watcher // notify's scratch list, reused
	// prevKVWatchers counts the watchers that want previous values, from their creation
	// to their detach: while there are none, puts do not read them.
	prevKVWatchers atomic.Int64

	kickc chan struct{}
	stopc chan struct{}
	donec chan struct{}
}

func newWatchHub(s *Store) *watchHub {
	return &watchHub{
		s:        s,
		lg:       s.lg,
		rev:      s.currentRev.Load(),
		synced:   newWatcherGroup(),
		unsynced: make(map[*watcher]struct{}),
		streams:  make(map[*WatchStream]struct{}),
		kickc:    make(chan struct{}, 1),
		stopc:    make(chan struct{}),
		donec:    make(chan struct{}),
	}
}

// stop ends the sync loop and closes every open stream.
func (h *watchHub) stop() {
	h.mu.Lock()
	if h.stopped {
		h.mu.Unlock()
		return
	}
	h.stopped = true
	close(h.stopc)
	h.mu.Unlock()
	<-h.donec
	h.mu.Lock()
	defer h.mu.Unlock()
	for ws := range h.streams {
		ws.closeLocked()
	}
}

// kick wakes the sync loop.
func (h *watchHub) kick() {
	select {
	case h.kickc <- struct{}{}:
	default:
	}
}

// addUnsynced puts w in the unsynced set. Caller holds h.mu.
func (h *watchHub) addUnsynced(w *watcher) {
	w.state = stateUnsynced
	h.unsynced[w] = struct{}{}
	slowWatcherGauge.Inc()
}

// remove takes w out of its group and its stream. Caller holds h.mu.
func (h *watchHub) remove(w *watcher) {
	h.detach(w)
	delete(w.ws.watchers, w.id)
}

// detach stops delivering events to w but leaves its id taken on its stream: a watcher
// removed by compaction stays there, as in etcd, until the client cancels it (and the
// cancel is answered).
func (h *watchHub) detach(w *watcher) {
	switch w.state {
	case stateSynced:
		h.synced.delete(w)
	case stateUnsynced:
		delete(h.unsynced, w)
		slowWatcherGauge.Dec()
	case stateGone:
		return
	}
	w.state = stateGone
	watcherGauge.Dec()
	if w.prevKV {
		h.prevKVWatchers.Add(-1)
	}
}

// notify sends revision rev's events (prevs[i] is the value events[i] replaced, nil if
// none) to the synced watchers. It never blocks. Called by a write txn's end, under wmu.
func (h *watchHub) notify(rev int64, events []*mvccpb.Event, prevs []*mvccpb.KeyValue) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rev = rev
	if h.synced.size() == 0 {
		return
	}
	n := notification{rev: rev, events: events[:len(events):len(events)], prevs: prevs, s: h.s}
	if len(events) == 1 {
		// Most revisions change one key: its watchers need no lists of event indexes.
		matched := h.matched[:0]
		h.synced.match(events[0].Kv.Key, func(w *watcher) {
			if w.minRev <= rev {
				matched = append(matched, w)
			}
		})
		for _, w := range matched {
			h.deliver(w, n.forWatcher(w, nil))
		}
		clear(matched)
		h.matched = matched[:0]
		return
	}
	batch := make(map[*watcher][]int32)
	for i, e := range events {
		h.synced.match(e.Kv.Key, func(w *watcher) {
			if w.minRev <= rev {
				batch[w] = append(batch[w], int32(i))
			}
		})
	}
	for w, idx := range batch {
		if len(idx) == len(events) {
			idx = nil // every event
		}
		h.deliver(w, n.forWatcher(w, idx))
	}
}

// deliver sends a synced watcher its events of revision r.Revision, or makes it unsynced
// if its stream is full. Caller holds h.mu.
func (h *watchHub) deliver(w *watcher, r WatchResponse) {
	if len(r.Events) > 0 && !w.ws.sendLive(w, r) {
		// The stream is full: the watcher catches up from the backend later.
		h.synced.delete(w)
		w.minRev = r.Revision
		h.addUnsynced(w)
		return
	}
	w.minRev = r.Revision + 1
}

// notification is one revision's events on their way to the synced watchers.
type notification struct {
	rev      int64
	events   []*mvccpb.Event // capacity == length: shared read-only by the responses
	prevs    []*mvccpb.KeyValue
	withPrev []*mvccpb.Event // events with PrevKv set, made on first use
	// s reads a previous value the write did not read (unreadPrev).
	s *Store
}

// forWatcher is w's response: the events at idx (nil: every event), minus those w's
// filters drop, with their previous values if w asked. A watcher taking every event as
// it is shares the revision's slice.
func (n *notification) forWatcher(w *watcher, idx []int32) WatchResponse {
	r := WatchResponse{WatchID: w.id, Revision: n.rev}
	if idx == nil && !w.prevKV && len(w.fcs) == 0 {
		r.Events = n.events
		return r
	}
	count := len(idx)
	if idx == nil {
		count = len(n.events)
	}
	out := make([]*mvccpb.Event, 0, count)
	for j := range count {
		i := j
		if idx != nil {
			i = int(idx[j])
		}
		e := n.events[i]
		if w.filtered(e) {
			continue
		}
		if w.prevKV {
			if n.withPrev == nil {
				n.withPrev = make([]*mvccpb.Event, len(n.events))
			}
			if n.withPrev[i] == nil {
				prev := n.prevs[i]
				if prev == unreadPrev { // the watcher came after the put: read it now
					prev = n.s.kvAt(e.Kv.Key, n.rev-1)
				}
				n.withPrev[i] = &mvccpb.Event{Type: e.Type, Kv: e.Kv, PrevKv: prev}
			}
			e = n.withPrev[i]
		}
		out = append(out, e)
	}
	r.Events, r.owned = out, true
	return r
}

// resync follows a Restore: the store now ends at rev, and the revisions after the last
// one notify handed out were never sent, so every synced watcher catches up from the
// backend like a slow one. Caller holds wmu.
func (h *watchHub) resync(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range h.synced.all() {
		h.synced.delete(w)
		w.minRev = max(w.minRev, h.rev+1)
		h.addUnsynced(w)
	}
	h.rev = rev
	h.kick()
}

func (h *watchHub) syncLoop() {
	defer close(h.donec)
	t := time.NewTimer(syncInterval)
	defer t.Stop()
	for {
		select {
		case <-h.stopc:
			return
		case <-t.C:
		case <-h.kickc:
			t.Stop() // Go 1.23+ timers: no stale tick can follow Stop, so no draining
		}
		for h.syncOnce() {
			select {
			case <-h.stopc:
				return
			default:
			}
		}
		// A watcher left behind because its stream is full is retried when the stream's
		// consumer takes its queue (Take kicks), not on a timer.
		t.Reset(syncInterval)
	}
}

// syncOnce runs one catch-up round and reports whether another should follow at once
// (it made progress and watchers are still unsynced).
func (h *watchHub) syncOnce() bool {
	chosen, minRev, maxRev := h.choose()
	if len(chosen) == 0 {
		return false
	}
	var (
		evs     []*mvccpb.Event
		readEnd = maxRev
	)
	if minRev <= maxRev {
		var err error
		evs, readEnd, err = h.s.readHistory(minRev, maxRev, watchBatchMaxRevs, watchBatchMaxEvents)
		if err != nil {
			h.lg.Warn("watch: failed to read history", zap.Int64("from-revision", minRev), zap.Error(err))
			return false
		}
	}
	// A compaction that ran during the read may have removed revisions below it.
	compactRev := h.s.CompactedRev()

	// Match the events to the chosen watchers; fetch previous values outside h.mu.
	g := newWatcherGroup()
	for _, w := range chosen {
		g.add(w)
	}
	batch := make(map[*watcher][]*mvccpb.Event, len(chosen))
	prevs := make(map[int]*mvccpb.Event)
	for i, e := range evs {
		rev := e.Kv.ModRevision
		g.match(e.Kv.Key, func(w *watcher) {
			if rev < w.minRev || w.minRev < compactRev || w.filtered(e) {
				return
			}
			out := e
			if w.prevKV {
				pe, ok := prevs[i]
				if !ok {
					pe = &mvccpb.Event{Type: e.Type, Kv: e.Kv, PrevKv: h.s.kvAt(e.Kv.Key, rev-1)}
					prevs[i] = pe
				}
				out = pe
			}
			batch[w] = append(batch[w], out)
		})
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	progress := false
	for _, w := range chosen {
		if w.state != stateUnsynced || w.minRev < compactRev {
			continue // gone, or to be told about the compaction next round
		}
		if out := batch[w]; len(out) > 0 {
			if !w.ws.send(WatchResponse{WatchID: w.id, Events: out, Revision: readEnd}) {
				continue
			}
		}
		progress = true
		w.minRev = max(w.minRev, readEnd+1)
		if w.minRev > h.rev {
			// Everything up to rev is sent; notify takes it from here.
			delete(h.unsynced, w)
			slowWatcherGauge.Dec()
			w.state = stateSynced
			h.synced.add(w)
		}
	}
	return progress && len(h.unsynced) > 0
}

// choose picks up to maxWatchersPerSync unsynced watchers whose stream has room, and
// answers (and removes) those whose next revision is compacted. maxRev is the last
// revision notify has handed out: history is read up to it, never beyond, so a watcher
// that has read it is exactly caught up.
func (h *watchHub) choose() (chosen []*watcher, minRev, maxRev int64) {
	compactRev := h.s.CompactedRev()
	h.mu.Lock()
	defer h.mu.Unlock()
	minRev, maxRev = math.MaxInt64, h.rev
	for w := range h.unsynced {
		if w.ws.full() {
			continue // its stream's next Take wakes the loop
		}
		if w.minRev < compactRev {
			// etcd stamps no revision on this response.
			if w.ws.send(WatchResponse{WatchID: w.id, CompactRevision: compactRev}) {
				h.detach(w)
			}
			continue
		}
		chosen = append(chosen, w)
		minRev = min(minRev, w.minRev)
		if len(chosen) == maxWatchersPerSync {
			break
		}
	}
	return chosen, minRev, maxRev
}
