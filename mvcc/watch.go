package mvcc

import (
	"bytes"
	"errors"

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
// (etcd's value).
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

// WatchStream multiplexes watchers onto one channel.
type WatchStream struct {
	h        *watchHub
	ch       chan WatchResponse
	watchers map[WatchID]*watcher // guarded by h.mu
	nextID   WatchID
	closed   bool
}

// NewWatchStream opens a stream of watch responses.
func (s *Store) NewWatchStream() *WatchStream {
	ws := &WatchStream{
		h:        s.hub,
		ch:       make(chan WatchResponse, chanBufLen),
		watchers: make(map[WatchID]*watcher),
	}
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		ws.closed = true
		close(ws.ch)
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

// Cancel removes a watcher. Responses already queued for it stay in the channel.
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
	select {
	case ws.ch <- WatchResponse{WatchID: id, Revision: h.rev}:
	default:
	}
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
	select {
	case ws.ch <- WatchResponse{WatchID: InvalidWatchID, Revision: h.rev}:
	default:
	}
	return true
}

// Chan is the stream's responses; it is closed by Close.
func (ws *WatchStream) Chan() <-chan WatchResponse { return ws.ch }

// Close removes every watcher of the stream and closes its channel.
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
	close(ws.ch)
	delete(ws.h.streams, ws)
	watchStreamGauge.Dec()
}

// ReportEventReceived records that a stream's consumer took n events off its channel.
func ReportEventReceived(n int) {
	pendingEventsGauge.Sub(float64(n))
	totalEventsCounter.Add(float64(n))
}
