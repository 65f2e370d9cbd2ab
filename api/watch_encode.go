package api

import (
	"fmt"

	"github.com/cairn-kv/cairn/internal/pbcodec"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/mvccpb"
	"google.golang.org/protobuf/encoding/protowire"
)

// A watch event usually goes to many watchers: every watcher of a stream that matches
// it gets its own WatchResponse. Marshalling each response whole would encode the same
// event once per watcher, so the send loop encodes each event once (eventEncoder) and
// assembles the response bytes around the shared encodings; pbcodec.Encoded carries them
// through gRPC untouched (the client port's codec is pbcodec's).

// WatchResponse field numbers (rpc.proto).
const (
	watchResponseHeaderField  = 1
	watchResponseWatchIDField = 2
	watchResponseEventsField  = 11
)

// eventEncoder caches the wire form of events for one stream's send loop. Events are
// keyed by identity: the member hands the same event to every watcher it matches. The
// cache holds the events of one revision (the responses of a revision come together)
// and starts over at the next, so it stays small.
type eventEncoder struct {
	cache    map[*mvccpb.Event][]byte
	cacheRev int64
	// The last event encoded, checked before the map: most revisions have one event.
	lastEv  *mvccpb.Event
	lastEnc []byte
	// The last header encoded: responses of one revision share it.
	hdr    *pb.ResponseHeader
	hdrEnc []byte
	evs    [][]byte // scratch
}

// maxCachedEvents bounds the cache within a revision (a revision's events, or a
// catch-up response's, may be many); it is emptied when full.
const maxCachedEvents = 4096

func (e *eventEncoder) encode(ev *mvccpb.Event) ([]byte, error) {
	if ev == e.lastEv {
		return e.lastEnc, nil
	}
	b, ok := e.cache[ev]
	if !ok {
		var err error
		b, err = ev.MarshalVT()
		if err != nil {
			return nil, fmt.Errorf("watch: encode event: %w", err)
		}
		if e.cache == nil || len(e.cache) >= maxCachedEvents {
			e.cache = make(map[*mvccpb.Event][]byte)
		}
		e.cache[ev] = b
	}
	e.lastEv, e.lastEnc = ev, b
	return b, nil
}

// encodeEventResponse writes wr (header, watch id, events; the fields an event response
// has) in field order, as proto.Marshal would, reusing the events' cached encodings.
// Responses with other fields set go through the ordinary path.
func (e *eventEncoder) encodeEventResponse(wr *pb.WatchResponse) (*pbcodec.Encoded, bool, error) {
	if wr.Created || wr.Canceled || wr.CompactRevision != 0 || wr.CancelReason != "" || wr.Fragment || len(wr.Events) == 0 {
		return nil, false, nil
	}
	pe, err := e.encodeEvents(wr.Header, wr.WatchId, wr.Events)
	return pe, err == nil, err
}

// encodeEvents is encodeEventResponse of the response with header hdr (nil: none),
// watch id id and events evs.
func (e *eventEncoder) encodeEvents(hdr *pb.ResponseHeader, id int64, evs []*mvccpb.Event) (*pbcodec.Encoded, error) {
	if rev := hdr.GetRevision(); rev != e.cacheRev {
		e.cacheRev = rev
		if len(e.cache) > 64 {
			e.cache = nil // let a large map go
		} else {
			clear(e.cache)
		}
	}
	if hdr != e.hdr {
		e.hdr, e.hdrEnc = hdr, encodeHeader(hdr)
	}
	var err error
	encs := e.evs[:0]
	size := protowire.SizeTag(watchResponseWatchIDField) + protowire.SizeVarint(uint64(id))
	if hdr != nil {
		size += protowire.SizeTag(watchResponseHeaderField) + protowire.SizeBytes(len(e.hdrEnc))
	}
	for _, ev := range evs {
		b, encErr := e.encode(ev)
		if encErr != nil {
			err = encErr
			break
		}
		encs = append(encs, b)
		size += protowire.SizeTag(watchResponseEventsField) + protowire.SizeBytes(len(b))
	}
	defer func() { clear(encs); e.evs = encs[:0] }()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, size)
	if hdr != nil {
		b = protowire.AppendTag(b, watchResponseHeaderField, protowire.BytesType)
		b = protowire.AppendBytes(b, e.hdrEnc)
	}
	if id != 0 {
		b = protowire.AppendTag(b, watchResponseWatchIDField, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(id))
	}
	for _, ev := range encs {
		b = protowire.AppendTag(b, watchResponseEventsField, protowire.BytesType)
		b = protowire.AppendBytes(b, ev)
	}
	return pbcodec.EncodedBytes(b), nil
}

// encodeHeader is proto.Marshal of a ResponseHeader (cluster_id 1, member_id 2,
// revision 3, raft_term 4, all varints; zero fields omitted), without reflection.
func encodeHeader(h *pb.ResponseHeader) []byte {
	b := make([]byte, 0, 4*(1+binaryMaxVarintLen))
	for _, f := range [...]struct {
		num protowire.Number
		v   uint64
	}{{1, h.GetClusterId()}, {2, h.GetMemberId()}, {3, uint64(h.GetRevision())}, {4, h.GetRaftTerm()}} {
		if f.v != 0 {
			b = protowire.AppendTag(b, f.num, protowire.VarintType)
			b = protowire.AppendVarint(b, f.v)
		}
	}
	return b
}

const binaryMaxVarintLen = 10
