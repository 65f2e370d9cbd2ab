package server

import (
	"context"
	"math"

	"github.com/cairn-kv/cairn/mvcc"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// streamChunkBytes is what a RangeStream chunk's KVs aim at (encoded): under etcd's
// default --max-request-bytes, so a chunk is never much more than the largest KV.
const streamChunkBytes = 1 << 20

// RangeStream serves r as Range does (linearizable unless serializable, the same
// permission check, one read view) but reads the result chunk by chunk from the store
// at one pinned revision (mvcc.RangeIter) and hands each chunk to send as soon as the
// next one is read: the member holds two chunks, never the whole result. Every call of
// send but the last carries only Kvs; the last carries the header (revision set), the
// remaining Kvs, More and Count. r's effective sort order must be by key ascending
// (the caller checks). send is called from this goroutine only, with no lock held.
func (s *Server) RangeStream(ctx context.Context, r *pb.RangeRequest, send func(*pb.RangeResponse) error) error {
	var final *pb.RangeResponse
	err := s.readRange(ctx, r, func(rt *mvcc.ReadTxn) (err error) {
		final, err = streamRange(ctx, rt, r, streamChunkBytes, send)
		return err
	})
	if err != nil {
		return err
	}
	s.fillHeader(final.Header)
	return send(final)
}

// streamRange sends every chunk of r's answer from rt but the last, which it returns
// with the header revision, More and Count set: merged, they are executeRange's answer.
func streamRange(ctx context.Context, rt *mvcc.ReadTxn, r *pb.RangeRequest, chunkBytes int,
	send func(*pb.RangeResponse) error) (*pb.RangeResponse, error) {
	it, err := rt.RangeIter(r.Key, r.RangeEnd, r.Revision)
	if err != nil {
		return nil, err
	}
	final := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: rt.Rev()}}
	o := mvcc.ChunkOptions{MaxBytes: chunkBytes, KeysOnly: r.KeysOnly}
	if hasRevisionFilters(r) {
		o.Keep = func(kv *mvccpb.KeyValue) bool { return len(filterKVs([]*mvccpb.KeyValue{kv}, r)) == 1 }
	}
	limit := int64(math.MaxInt64)
	if r.Limit > 0 {
		limit = r.Limit
	}
	var held []*mvccpb.KeyValue // the chunk read last, sent once the next one is read
	taken := int64(0)
	for !r.CountOnly && taken < limit {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		o.MaxKVs = int(min(limit-taken, math.MaxInt32))
		kvs, err := it.Next(o)
		if err != nil {
			return nil, err
		}
		if len(kvs) == 0 {
			break
		}
		if held != nil {
			if err := send(&pb.RangeResponse{Kvs: held}); err != nil {
				return nil, err
			}
		}
		held = kvs
		taken += int64(len(kvs))
	}
	final.Kvs = held
	if !r.CountOnly && taken == limit {
		// More: another key would match. Without filters the count tells; with them,
		// read on to the next kept KV.
		if o.Keep != nil {
			next, err := it.Next(mvcc.ChunkOptions{MaxBytes: 1, MaxKVs: 1, KeysOnly: true, Keep: o.Keep})
			if err != nil {
				return nil, err
			}
			final.More = len(next) > 0
		}
	}
	n, err := it.Count()
	if err != nil {
		return nil, err
	}
	final.Count = int64(n)
	if !r.CountOnly && taken == limit && o.Keep == nil {
		final.More = int64(n) > limit
	}
	return final, nil
}
