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
// keyed by identity: the member hands the same event to every watcher it matches.
type eventEncoder struct {
	cache map[*mvccpb.Event][]byte
}

// maxCachedEvents bounds the cache; it is emptied when full (events of past revisions
// are not seen again).
const maxCachedEvents = 4096

func (e *eventEncoder) encode(ev *mvccpb.Event) ([]byte, error) {
	if b, ok := e.cache[ev]; ok {
		return b, nil
	}
	if e.cache == nil || len(e.cache) >= maxCachedEvents {
		e.cache = make(map[*mvccpb.Event][]byte)
	}
	b, err := ev.MarshalVT()
	if err != nil {
		return nil, fmt.Errorf("watch: encode event: %w", err)
	}
	e.cache[ev] = b
	return b, nil
}

// encodeEventResponse writes wr (header, watch id, events; the fields an event response
// has) in field order, as proto.Marshal would, reusing the events' cached encodings.
// Responses with other fields set go through the ordinary path.
func (e *eventEncoder) encodeEventResponse(wr *pb.WatchResponse) (*pbcodec.Encoded, bool, error) {
	if wr.Created || wr.Canceled || wr.CompactRevision != 0 || wr.CancelReason != "" || wr.Fragment || len(wr.Events) == 0 {
		return nil, false, nil
	}
	hdr := encodeHeader(wr.Header)
	var err error
	evs := make([][]byte, len(wr.Events))
	size := protowire.SizeTag(watchResponseHeaderField) + protowire.SizeBytes(len(hdr)) +
		protowire.SizeTag(watchResponseWatchIDField) + protowire.SizeVarint(uint64(wr.WatchId))
	for i, ev := range wr.Events {
		if evs[i], err = e.encode(ev); err != nil {
			return nil, false, err
		}
		size += protowire.SizeTag(watchResponseEventsField) + protowire.SizeBytes(len(evs[i]))
	}
	b := make([]byte, 0, size)
	if wr.Header != nil {
		b = protowire.AppendTag(b, watchResponseHeaderField, protowire.BytesType)
		b = protowire.AppendBytes(b, hdr)
	}
	if wr.WatchId != 0 {
		b = protowire.AppendTag(b, watchResponseWatchIDField, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(wr.WatchId))
	}
	for _, ev := range evs {
		b = protowire.AppendTag(b, watchResponseEventsField, protowire.BytesType)
		b = protowire.AppendBytes(b, ev)
	}
	return pbcodec.EncodedBytes(b), true, nil
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
