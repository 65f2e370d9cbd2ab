package server

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"

	"google.golang.org/grpc/mem"

	"github.com/cairn-kv/cairn/mvcc"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// encodedChunkBytes is the size of the buffers RangeEncoded writes the KVs into.
const encodedChunkBytes = 1 << 20

// rangeResponseKvsTag is the tag of RangeResponse.kvs (field 2, length-delimited).
const rangeResponseKvsTag = 2<<3 | 2

// RangeEncoded serves r as Range does, but answers with the kvs field already encoded
// (a run of RangeResponse.kvs entries, in order) instead of decoded KVs: resp carries
// the header, More and Count, and resp's encoding with kvs spliced in after the
// header (fields in ascending order) is byte for byte the encoding of Range's answer.
// The KVs are copied from the store in their stored encoding, never decoded and
// encoded again, so the member holds the answer once (not decoded KVs plus their
// encoding) and spends one copy per value. ok is false, and nothing read, for a
// request this does not serve (sorted other than by key ascending, keys-only or with
// revision filters): use Range.
func (s *Server) RangeEncoded(ctx context.Context, r *pb.RangeRequest) (resp *pb.RangeResponse, kvs mem.BufferSlice, ok bool, err error) {
	if !encodable(r) {
		return nil, nil, false, nil
	}
	err = s.readRange(ctx, r, func(rt *mvcc.ReadTxn) (err error) {
		resp, kvs, err = encodeRange(rt, r)
		return err
	})
	if err != nil {
		return nil, nil, true, err
	}
	s.fillHeader(resp.Header)
	return resp, kvs, true, nil
}

// encodable: r's answer is the store's KVs in the store's order, each whole.
func encodable(r *pb.RangeRequest) bool {
	order := r.SortOrder
	if r.SortTarget != pb.RangeRequest_KEY && order == pb.RangeRequest_NONE {
		order = pb.RangeRequest_ASCEND
	}
	return isDefaultOrdering(r.SortTarget, order) && !hasRevisionFilters(r) && !r.KeysOnly
}

// encodeRange is executeRange for an encodable r, with the KVs encoded (RangeEncoded).
func encodeRange(rt *mvcc.ReadTxn, r *pb.RangeRequest) (*pb.RangeResponse, mem.BufferSlice, error) {
	limit := r.Limit
	if limit > 0 && limit < math.MaxInt64 {
		limit++ // one more than asked tells whether there is more
	}
	var w chunkWriter
	n, more := int64(0), false
	rr, err := rt.RangeEncoded(r.Key, r.RangeEnd, mvcc.RangeOptions{Limit: limit, Rev: r.Revision, CountOnly: r.CountOnly},
		func(val []byte) error {
			if r.Limit > 0 && n >= r.Limit {
				more = true
				return nil
			}
			n++
			if !mvcc.CanonicalKV(val) {
				kv := &mvccpb.KeyValue{}
				if err := kv.UnmarshalVT(val); err != nil {
					return fmt.Errorf("server: decode stored KV: %w", err)
				}
				b, err := kv.MarshalVT()
				if err != nil {
					return err
				}
				val = b
			}
			w.entry(val)
			return nil
		})
	if err != nil {
		return nil, nil, err
	}
	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: rt.Rev()}, Count: int64(rr.Count), More: more}
	return resp, w.done(), nil
}

// chunkWriter writes length-delimited kvs entries into buffers that double from
// firstChunkBytes up to encodedChunkBytes: a one-key Get (most Ranges) must not
// allocate and clear a whole MiB.
type chunkWriter struct {
	bufs mem.BufferSlice
	cur  []byte
	next int // capacity of the next buffer
}

// firstChunkBytes is the first buffer's capacity, unless the first write needs more.
const firstChunkBytes = 512

func (w *chunkWriter) entry(val []byte) {
	var hdr [1 + binary.MaxVarintLen64]byte
	hdr[0] = rangeResponseKvsTag
	h := 1 + binary.PutUvarint(hdr[1:], uint64(len(val)))
	w.write(hdr[:h])
	w.write(val)
}

func (w *chunkWriter) write(b []byte) {
	for len(b) > 0 {
		if len(w.cur) == cap(w.cur) {
			w.flush()
			size := min(encodedChunkBytes, max(w.next, firstChunkBytes, len(b)))
			w.cur = make([]byte, 0, size)
			w.next = min(encodedChunkBytes, 2*size)
		}
		n := min(len(b), cap(w.cur)-len(w.cur))
		w.cur = append(w.cur, b[:n]...)
		b = b[n:]
	}
}

func (w *chunkWriter) flush() {
	if len(w.cur) > 0 {
		w.bufs = append(w.bufs, mem.SliceBuffer(w.cur))
	}
	w.cur = nil
}

// done is everything written.
func (w *chunkWriter) done() mem.BufferSlice {
	w.flush()
	return w.bufs
}
