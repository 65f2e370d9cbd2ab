package server

import (
	"sync"

	"github.com/cairn-kv/cairn/mvcc"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// WatchStream is one client watch stream on the member's store: watchers are created,
// cancelled and asked for progress here, and their responses are taken with Take,
// converted to pb.WatchResponse (WatchId, Events, CompactRevision and Header.Revision
// set; the api fills in the rest of the header and the created/canceled control
// messages) in the caller's goroutine: no goroutine stands between the store's watch hub
// and the stream's sender.
type WatchStream struct {
	ws   *mvcc.WatchStream
	out  []*pb.WatchResponse // Take's result, reused
	once sync.Once
}

// NewWatchStream opens a watch stream. It must be closed.
func (s *Server) NewWatchStream() *WatchStream {
	return &WatchStream{ws: s.store.NewWatchStream()}
}

// Ready is signalled when responses were queued or the stream was closed (by Close, or
// when the member stops) since the last Take.
func (w *WatchStream) Ready() <-chan struct{} { return w.ws.Ready() }

// Take returns every queued response, oldest first; open is false once the stream is
// closed and nothing is left. The returned slice is valid until the next Take; only one
// goroutine may call it.
func (w *WatchStream) Take() (rs []*pb.WatchResponse, open bool) {
	in, open := w.ws.Take()
	clear(w.out)
	out := w.out[:0]
	// Two allocations per take rather than two per response.
	resps := make([]pb.WatchResponse, len(in))
	hdrs := make([]pb.ResponseHeader, len(in))
	n := 0
	for i, r := range in {
		n += len(r.Events)
		hdrs[i].Revision = r.Revision
		resp := &resps[i]
		resp.Header = &hdrs[i]
		resp.WatchId = int64(r.WatchID)
		resp.CompactRevision = r.CompactRevision
		resp.Events = r.Events
		out = append(out, resp)
	}
	if n > 0 {
		mvcc.ReportEventReceived(n)
	}
	w.out = out
	return out, open
}

// Watch creates a watcher (r.WatchId 0 picks the next free id) and returns its id. The
// errors are the mvcc package's (ErrWatcherDuplicateID, ErrEmptyWatcherRange,
// ErrCompacted for a negative start revision), unwrapped.
func (w *WatchStream) Watch(r *pb.WatchCreateRequest) (watchID, rev int64, err error) {
	var filters []mvcc.FilterFunc
	for _, f := range r.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			filters = append(filters, mvcc.FilterNoPut)
		case pb.WatchCreateRequest_NODELETE:
			filters = append(filters, mvcc.FilterNoDelete)
		}
	}
	id, rev, err := w.ws.Watch(mvcc.WatchID(r.WatchId), r.Key, r.RangeEnd, r.StartRevision, r.PrevKv, filters...)
	return int64(id), rev, err
}

// Cancel removes a watcher (mvcc.ErrWatcherNotExist if there is none with that id).
func (w *WatchStream) Cancel(watchID int64) error {
	return w.ws.Cancel(mvcc.WatchID(watchID))
}

// RequestProgress sends a progress response for the watcher if it is synced.
func (w *WatchStream) RequestProgress(watchID int64) {
	w.ws.RequestProgress(mvcc.WatchID(watchID))
}

// RequestProgressAll sends one progress response (WatchId -1) if every watcher of the
// stream is synced, and reports whether they were (a stream without watchers gets no
// response but true, as in etcd).
func (w *WatchStream) RequestProgressAll() bool {
	return w.ws.RequestProgressAll()
}

// Close removes every watcher of the stream; Take then reports it closed once what was
// queued is taken.
func (w *WatchStream) Close() {
	w.once.Do(w.ws.Close)
}
