package server

import (
	"sync"

	"github.com/cairn-kv/cairn/mvcc"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// WatchStream is one client watch stream on the member's store: watchers are created,
// cancelled and asked for progress here, and their responses come out of Chan converted
// to pb.WatchResponse (WatchId, Events, CompactRevision and Header.Revision set; the api
// fills in the rest of the header and the created/canceled control messages).
type WatchStream struct {
	ws    *mvcc.WatchStream
	out   chan *pb.WatchResponse
	stopc chan struct{}
	once  sync.Once
}

// NewWatchStream opens a watch stream. It must be closed.
func (s *Server) NewWatchStream() *WatchStream {
	w := &WatchStream{
		ws:    s.store.NewWatchStream(),
		out:   make(chan *pb.WatchResponse),
		stopc: make(chan struct{}),
	}
	go w.run()
	return w
}

func (w *WatchStream) run() {
	defer close(w.out)
	for r := range w.ws.Chan() {
		mvcc.ReportEventReceived(len(r.Events))
		resp := &pb.WatchResponse{
			Header:          &pb.ResponseHeader{Revision: r.Revision},
			WatchId:         int64(r.WatchID),
			CompactRevision: r.CompactRevision,
			Events:          r.Events,
		}
		select {
		case w.out <- resp:
		case <-w.stopc:
			return
		}
	}
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

// Chan is the stream's responses; it is closed after Close, or when the member stops.
func (w *WatchStream) Chan() <-chan *pb.WatchResponse { return w.out }

// Close removes every watcher of the stream; Chan is closed soon after.
func (w *WatchStream) Close() {
	w.once.Do(func() {
		close(w.stopc)
		w.ws.Close()
	})
}
