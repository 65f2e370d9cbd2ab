package api

import (
	"google.golang.org/protobuf/encoding/protowire"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// The send loop's side of a response: what the client gets for each response of the
// member's stream.

// sendWatchResponse sends one response of the member's stream: events filtered and
// stripped of prev_kv as the watcher asked, a compacted watcher canceled, fragmented if
// asked and too large. False if the stream broke.
func (sws *watchStream) sendWatchResponse(resp *pb.WatchResponse) bool {
	id := resp.GetWatchId()
	var o watchOpts
	if id != invalidWatchID {
		sws.mu.Lock()
		p, ok := sws.opts[id]
		if ok {
			o = *p
			if len(resp.GetEvents()) > 0 {
				p.progressDue = false // an event was sent: elide the next progress response
			}
		}
		sws.mu.Unlock()
		if !ok {
			return true // canceled meanwhile
		}
	}
	var err error
	if evs := resp.GetEvents(); len(evs) > 0 && !o.fragment && resp.GetCompactRevision() == 0 && !resp.GetCanceled() &&
		passThrough(o, evs) {
		// The common case: every event as the member sent it, encoded around the
		// shared encodings of its events.
		pe, encErr := sws.enc.encodeEvents(sws.headerAt(resp.GetHeader().GetRevision()), id, evs)
		if err = encErr; err == nil {
			err = sws.gs.SendMsg(pe)
		}
		if err != nil {
			sws.sendFailed(err)
			return false
		}
		return true
	}
	wr, send := buildWatchResponse(resp, o)
	if !send {
		return true
	}
	wr.Header = sws.headerAt(resp.GetHeader().GetRevision())
	if o.fragment {
		err = sendFragments(wr, sws.s.maxResponseBytes, sws.gs.Send)
	} else if pe, ok, encErr := sws.enc.encodeEventResponse(wr); encErr != nil {
		err = encErr
	} else if ok {
		err = sws.gs.SendMsg(pe)
	} else {
		err = sws.gs.Send(wr)
	}
	if err != nil {
		sws.sendFailed(err)
		return false
	}
	return true
}

// buildWatchResponse makes the response the client gets for one of the member's,
// without changing it or its events (the member may share them between streams). It
// reports false when filters removed every event of a response that had some (etcd
// then sends nothing).
func buildWatchResponse(resp *pb.WatchResponse, o watchOpts) (*pb.WatchResponse, bool) {
	evs := resp.GetEvents()
	if passThrough(o, evs) {
		// Every event as it is: the member's slice, shared read-only.
		if len(evs) == 0 {
			evs = nil
		}
		return &pb.WatchResponse{
			WatchId:         resp.GetWatchId(),
			Events:          evs,
			CompactRevision: resp.GetCompactRevision(),
			Canceled:        resp.GetCompactRevision() > 0 || resp.GetCanceled(),
			CancelReason:    resp.GetCancelReason(),
		}, true
	}
	out := make([]*mvccpb.Event, 0, len(evs))
	for _, ev := range evs {
		if (o.noPut && ev.GetType() == mvccpb.Event_PUT) || (o.noDelete && ev.GetType() == mvccpb.Event_DELETE) {
			continue
		}
		if ev.GetPrevKv() != nil && !o.prevKV {
			ev = &mvccpb.Event{Type: ev.GetType(), Kv: ev.GetKv()}
		}
		out = append(out, ev)
	}
	if len(evs) > 0 && len(out) == 0 {
		return nil, false
	}
	if len(out) == 0 {
		out = nil
	}
	return &pb.WatchResponse{
		WatchId:         resp.GetWatchId(),
		Events:          out,
		CompactRevision: resp.GetCompactRevision(),
		Canceled:        resp.GetCompactRevision() > 0 || resp.GetCanceled(),
		CancelReason:    resp.GetCancelReason(),
	}, true
}

// passThrough reports whether the watcher takes evs as they are: no filter, and no
// previous value to strip.
func passThrough(o watchOpts, evs []*mvccpb.Event) bool {
	if o.noPut || o.noDelete {
		return false
	}
	if !o.prevKV {
		for _, ev := range evs {
			if ev.GetPrevKv() != nil {
				return false
			}
		}
	}
	return true
}

// sendFragments sends wr whole if it is smaller than maxBytes or has fewer than two
// events; otherwise in several responses, each with as many events as keep it below
// maxBytes (at least one), all but the last marked fragment (etcd's sendFragments).
func sendFragments(wr *pb.WatchResponse, maxBytes int, send func(*pb.WatchResponse) error) error {
	if wr.SizeVT() < maxBytes || len(wr.Events) < 2 {
		return send(wr)
	}
	evs := wr.Events
	base := func() *pb.WatchResponse {
		return &pb.WatchResponse{
			Header:          wr.Header,
			WatchId:         wr.WatchId,
			CompactRevision: wr.CompactRevision,
			Canceled:        wr.Canceled,
			CancelReason:    wr.CancelReason,
			Fragment:        true,
		}
	}
	baseSize := base().SizeVT()
	for i := 0; i < len(evs); {
		cur := base()
		size := baseSize
		for ; i < len(evs); i++ {
			n := protowire.SizeTag(watchResponseEventsField) + protowire.SizeBytes(evs[i].SizeVT())
			if len(cur.Events) > 0 && size+n >= maxBytes {
				break
			}
			cur.Events = append(cur.Events, evs[i])
			size += n
		}
		if i == len(evs) {
			cur.Fragment = false
		}
		if err := send(cur); err != nil {
			return err
		}
	}
	return nil
}
