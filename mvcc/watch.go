package mvcc

import (
	"bytes"
	"errors"
	"sync"

	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// Watch errors, with etcd's texts.
var (
	ErrWatcherNotExist    = errors.New("mvcc: watcher does not exist")
	ErrEmptyWatcherRange  = errors.New("mvcc: watcher range is empty")
	ErrWatcherDuplicateID = errors.New("mvcc: duplicate watch ID provided on the WatchStream")
)

// WatchID identifies a watcher on its stream.
type WatchID int64

const (
	// AutoWatchID asks Watch to pick the next unused id of the stream (the first is 0).
	AutoWatchID WatchID = 0
	// InvalidWatchID is the WatchID of a stream-wide progress response.
	InvalidWatchID WatchID = -1
)

// chanBufLen is how many responses a stream holds before its watchers fall behind
// (etcd's value); a response merged into another counts as one.
const chanBufLen = 128

// WatchResponse is one message of a stream: events of one watcher (whole revisions, in
// revision and txn order), a progress notification (no events), or a compaction notice
// (CompactRevision != 0; the watcher is gone).
type WatchResponse struct {
	WatchID WatchID
	Events  []*mvccpb.Event
	// Revision is the revision the watcher has seen everything up to.
	Revision        int64
	CompactRevision int64

	owned bool // Events was made for this response alone (not a revision's shared slice)
}

// FilterFunc reports whether an event is dropped for a watcher.
type FilterFunc func(e *mvccpb.Event) bool

// FilterNoPut drops PUT events.
func FilterNoPut(e *mvccpb.Event) bool { return e.Type == mvccpb.Event_PUT }

// FilterNoDelete drops DELETE events.
func FilterNoDelete(e *mvccpb.Event) bool { return e.Type == mvccpb.Event_DELETE }

// watcher is one watch. All its mutable fields are guarded by the hub's mutex, except
// that the sync loop may read minRev of a watcher it is catching up while that watcher is
// unsynced (only the sync loop writes it then).
type watcher struct {
	ws       *WatchStream
	id       WatchID
	seq      uint64
	key, end []byte // end is nil for a single key
	fromKey  bool   // [key, ∞)
	startRev int64
	prevKV   bool
	fcs      []FilterFunc

	// minRev is the next revision the watcher must receive.
	minRev int64
	state  watcherState
	slot   int // position in the synced group's key slice

	// The watcher's last live response, queue index lastIdx while its stream's
	// generation is lastGen (guarded by ws.qmu), and whether its Events slice is its own
	// (not the revision's shared one).
	lastGen uint64
	lastIdx int
	ownEvs  bool
}

type watcherState uint8

const (
	stateSynced watcherState = iota
	stateUnsynced
	stateGone
)

func (w *watcher) isRange() bool { return w.fromKey || w.end != nil }

// filtered reports whether the watcher's filters drop e.
func (w *watcher) filtered(e *mvccpb.Event) bool {
	for _, f := range w.fcs {
		if f(e) {
			return true
		}
	}
	return false
}

// WatchStream multiplexes watchers onto one queue of responses. The hub appends to the
// queue (never blocking: a full queue makes the watcher fall behind) and signals ready;
// the stream's consumer takes everything queued at once with Take, in its own
// goroutine, so a response reaches it with no goroutine in between.
type WatchStream struct {
	h        *watchHub
	watchers map[WatchID]*watcher // guarded by h.mu
	nextID   WatchID
	closed   bool // guarded by h.mu

	ready chan struct{} // capacity 1: responses were queued, or the queue closed

	qmu     sync.Mutex // guards the fields below; taken after h.mu, never before
	queue   []WatchResponse
	spare   []WatchResponse // the slice Take handed back last time, reused
	qclosed bool
	// gen counts Takes: a watcher's lastGen/lastIdx name its last live response while
	// that is still in the queue. barrier is the length of the queue after its last
	// response of another kind (progress, catch-up, compaction): nothing merges across.
	gen     uint64
	barrier int
	// used counts the responses queued since the last Take, merged ones included: the
	// queue is full at chanBufLen of them, whether merged or not.
	used int
	// behind: a watcher of this stream fell behind because the queue was full (or
	// skipped a catch-up round for that reason); Take then wakes the sync loop.
	behind bool
}

// NewWatchStream opens a stream of watch responses.
func (s *Store) NewWatchStream() *WatchStream {
	ws := &WatchStream{
		h:        s.hub,
		watchers: make(map[WatchID]*watcher),
		ready:    make(chan struct{}, 1),
		gen:      1, // a new watcher's lastGen (0) names no response
	}
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		ws.closed = true
		ws.closeQueue()
		return ws
	}
	h.streams[ws] = struct{}{}
	watchStreamGauge.Inc()
	return ws
}

// Watch watches key (end nil or empty), [key, end), or every key >= key (end "\x00"),
// from startRev (0: the next revision; at or below the current revision: history is
// replayed first; below the compacted revision: one response with CompactRevision and the
// watcher is removed). id AutoWatchID picks the next unused id. prevKV adds each event's
// previous value; filters drop events. rev is the revision the watch was created at (what
// its created response carries): a watch from startRev 0 gets exactly the events after
// it, taken in the same step, so none at or below it can reach the watcher.
func (ws *WatchStream) Watch(id WatchID, key, end []byte, startRev int64, prevKV bool, filters ...FilterFunc) (_ WatchID, rev int64, _ error) {
	fromKey := len(end) == 1 && end[0] == 0
	if len(end) == 0 {
		end = nil
	}
	if end != nil && !fromKey && bytes.Compare(key, end) >= 0 {
		return -1, 0, ErrEmptyWatcherRange
	}
	if startRev < 0 {
		return -1, 0, ErrCompacted
	}
	h := ws.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if ws.closed {
		return -1, 0, ErrEmptyWatcherRange // etcd's answer on a closed stream
	}
	if id == AutoWatchID {
		for ws.watchers[ws.nextID] != nil {
			ws.nextID++
		}
		id = ws.nextID
		ws.nextID++
	} else if _, ok := ws.watchers[id]; ok {
		return -1, 0, ErrWatcherDuplicateID
	}
	h.seq++
	w := &watcher{
		ws: ws, id: id, seq: h.seq,
		key: bytes.Clone(key), fromKey: fromKey,
		startRev: startRev, prevKV: prevKV,
		fcs: append([]FilterFunc(nil), filters...),
	}
	if fromKey {
		w.end = []byte{0}
	} else if end != nil {
		w.end = bytes.Clone(end)
	}
	if w.key == nil {
		w.key = []byte{}
	}
	ws.watchers[id] = w
	watcherGauge.Inc()
	if prevKV {
		h.prevKVWatchers.Add(1)
	}
	if startRev == 0 || startRev > h.rev {
		w.minRev = max(h.rev+1, startRev)
		w.state = stateSynced
		h.synced.add(w)
		return id, h.rev, nil
	}
	w.minRev = startRev
	h.addUnsynced(w)
	h.kick()
	return id, h.rev, nil
}

// Cancel removes a watcher. Responses already queued for it stay in the queue.
func (ws *WatchStream) Cancel(id WatchID) error {
	h := ws.h
	h.mu.Lock()
	defer h.mu.Unlock()
	w, ok := ws.watchers[id]
	if !ok || ws.closed {
		return ErrWatcherNotExist
	}
	h.remove(w)
	return nil
}

// RequestProgress sends a progress response (no events, the current revision) for the
// watcher if it is synced, i.e. has been sent every event up to that revision.
func (ws *WatchStream) RequestProgress(id WatchID) {
	h := ws.h
	h.mu.Lock()
	defer h.mu.Unlock()
	w, ok := ws.watchers[id]
	if !ok || ws.closed || w.state != stateSynced || h.rev < w.startRev {
		return
	}
	ws.send(WatchResponse{WatchID: id, Revision: h.rev})
}

// RequestProgressAll sends one progress response with WatchID InvalidWatchID and the
// current revision if every watcher of the stream is synced, and reports whether they
// were. Like etcd, a stream without watchers gets no response but true.
func (ws *WatchStream) RequestProgressAll() bool {
	h := ws.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if ws.closed {
		return false
	}
	for _, w := range ws.watchers {
		if w.state != stateSynced || h.rev < w.startRev {
			return false
		}
	}
	if len(ws.watchers) == 0 {
		return true
	}
	ws.send(WatchResponse{WatchID: InvalidWatchID, Revision: h.rev})
	return true
}

// Ready is signalled whenever responses were queued or the stream was closed since the
// last Take; it holds one signal, so one Take answers many signals.
func (ws *WatchStream) Ready() <-chan struct{} { return ws.ready }

// Take returns every queued response, oldest first, and empties the queue; open is
// false once the stream is closed and nothing is left. The returned slice is valid
// until the next Take. Only one goroutine may call it.
func (ws *WatchStream) Take() (rs []WatchResponse, open bool) {
	ws.qmu.Lock()
	clear(ws.spare[:cap(ws.spare)]) // the consumer is done with it: drop its events
	rs, ws.queue = ws.queue, ws.spare[:0]
	ws.spare = rs
	ws.gen++
	ws.barrier, ws.used = 0, 0
	open = !ws.qclosed || len(rs) > 0
	wake := ws.behind && len(rs) > 0
	if wake {
		ws.behind = false
	}
	ws.qmu.Unlock()
	if wake {
		// The queue has room again: catch up this stream's watchers now rather than at
		// the sync loop's next tick.
		ws.h.kick()
	}
	return rs, open
}

// maxMergedEvents bounds the events of a response that later revisions are merged into.
const maxMergedEvents = 256

// send queues r unless the queue is full. Caller holds h.mu.
func (ws *WatchStream) send(r WatchResponse) bool {
	ws.qmu.Lock()
	if ws.qclosed || ws.used >= chanBufLen {
		ws.behind = !ws.qclosed
		ws.qmu.Unlock()
		return false
	}
	ws.queue = append(ws.queue, r)
	ws.used++
	ws.barrier = len(ws.queue)
	ws.qmu.Unlock()
	pendingEventsGauge.Add(float64(len(r.Events)))
	ws.signal()
	return true
}

// sendLive queues r, the events of one revision for synced watcher w, unless the queue
// is full. While w's last live response is still queued (its consumer has not taken the
// queue since) and nothing but other live responses came after it, r's events are
// appended to it instead: a busy consumer then sends one response where it would have
// sent several, with no wait added (the consumer takes whatever is queued when it is
// ready). Whole revisions, in order, as etcd's catch-up responses. Caller holds h.mu.
func (ws *WatchStream) sendLive(w *watcher, r WatchResponse) bool {
	ws.qmu.Lock()
	if ws.qclosed || ws.used >= chanBufLen {
		ws.behind = !ws.qclosed
		ws.qmu.Unlock()
		return false
	}
	ws.used++
	if w.lastGen == ws.gen && w.lastIdx >= ws.barrier && w.lastIdx < len(ws.queue) {
		if last := &ws.queue[w.lastIdx]; last.WatchID == w.id && len(last.Events)+len(r.Events) <= maxMergedEvents {
			if !w.ownEvs {
				last.Events = append(make([]*mvccpb.Event, 0, 2*(len(last.Events)+len(r.Events))), last.Events...)
				w.ownEvs = true
			}
			last.Events = append(last.Events, r.Events...)
			last.Revision = r.Revision
			ws.qmu.Unlock()
			pendingEventsGauge.Add(float64(len(r.Events)))
			return true
		}
	}
	ws.queue = append(ws.queue, r)
	w.lastGen, w.lastIdx, w.ownEvs = ws.gen, len(ws.queue)-1, r.owned
	ws.qmu.Unlock()
	pendingEventsGauge.Add(float64(len(r.Events)))
	ws.signal()
	return true
}

func (ws *WatchStream) signal() {
	select {
	case ws.ready <- struct{}{}:
	default:
	}
}

// full reports whether the queue has no room, and if so marks the stream for a wake-up
// when its consumer takes the queue. Caller holds h.mu.
func (ws *WatchStream) full() bool {
	ws.qmu.Lock()
	defer ws.qmu.Unlock()
	if ws.used < chanBufLen {
		return false
	}
	ws.behind = true
	return true
}

// closeQueue closes the queue; responses still in it are taken before Take reports
// the end. Caller holds h.mu (or owns ws alone).
func (ws *WatchStream) closeQueue() {
	ws.qmu.Lock()
	ws.qclosed = true
	ws.qmu.Unlock()
	ws.signal()
}

// Close removes every watcher of the stream and closes its queue (what is in it can
// still be taken). It never waits for the consumer.
func (ws *WatchStream) Close() {
	ws.h.mu.Lock()
	defer ws.h.mu.Unlock()
	ws.closeLocked()
}

// closeLocked is Close; caller holds h.mu.
func (ws *WatchStream) closeLocked() {
	if ws.closed {
		return
	}
	for _, w := range ws.watchers {
		ws.h.remove(w)
	}
	ws.closed = true
	ws.closeQueue()
	delete(ws.h.streams, ws)
	watchStreamGauge.Dec()
}

// ReportEventReceived records that a stream's consumer took n events off its queue.
func ReportEventReceived(n int) {
	pendingEventsGauge.Sub(float64(n))
	totalEventsCounter.Add(float64(n))
}
