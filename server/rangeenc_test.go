package server

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// encodeRange's answer, the kvs spliced between the header and More as the api layer
// does, is byte for byte executeRange's answer encoded, for every request it serves;
// the others (sorted, keys-only, filtered) it declines.
func TestEncodeRangeMatchesRange(t *testing.T) {
	s, mid := streamStore(t)
	k := func(s string) []byte { return []byte(s) }
	reqs := rangeRequestShapes(mid)
	for name, r := range map[string]*pb.RangeRequest{ // declined, with keys-only and min-mod
		"descend":       {Key: k("\x00"), RangeEnd: k("\x00"), SortOrder: pb.RangeRequest_DESCEND},
		"by-value":      {Key: k("\x00"), RangeEnd: k("\x00"), SortTarget: pb.RangeRequest_VALUE},
		"by-mod-ascend": {Key: k("\x00"), RangeEnd: k("\x00"), SortTarget: pb.RangeRequest_MOD, SortOrder: pb.RangeRequest_ASCEND},
	} {
		reqs[name] = r
	}
	declined := map[string]bool{"keys-only": true, "min-mod": true, "descend": true, "by-value": true, "by-mod-ascend": true}
	for name, r := range reqs {
		t.Run(name, func(t *testing.T) {
			if got := encodable(r); got == declined[name] {
				t.Fatalf("encodable = %v", got)
			}
			if declined[name] {
				return
			}
			rt := s.Read()
			want, err := executeRange(readView{rt}, proto.Clone(r).(*pb.RangeRequest))
			if err != nil {
				t.Fatal(err)
			}
			wantB, err := want.MarshalVT()
			if err != nil {
				t.Fatal(err)
			}
			resp, kvs, err := encodeRange(rt, r)
			if err != nil {
				t.Fatal(err)
			}
			head, _ := (&pb.RangeResponse{Header: resp.Header}).MarshalVT()
			tail, _ := (&pb.RangeResponse{More: resp.More, Count: resp.Count}).MarshalVT()
			got := append(append(head, kvs.Materialize()...), tail...)
			if !bytes.Equal(got, wantB) {
				dec := &pb.RangeResponse{}
				err := dec.UnmarshalVT(got)
				t.Fatalf("%d bytes, want %d (decoded: %v, %d KVs more %v count %d; want %d KVs more %v count %d)",
					len(got), len(wantB), err, len(dec.Kvs), dec.More, dec.Count, len(want.Kvs), want.More, want.Count)
			}
		})
	}
}

// The KVs are written in chunks that double from firstChunkBytes to
// encodedChunkBytes, an entry split across chunks where it falls.
func TestChunkWriter(t *testing.T) {
	var w chunkWriter
	var want []byte
	for i := 0; i < 300; i++ {
		v := bytes.Repeat([]byte{byte(i)}, i*97)
		w.entry(v)
		want = append(want, rangeResponseKvsTag)
		want = appendVarint(want, uint64(len(v)))
		want = append(want, v...)
	}
	bufs := w.done()
	size := firstChunkBytes
	for i, b := range bufs {
		if i < len(bufs)-1 && b.Len() != size {
			t.Fatalf("chunk %d of %d: %d bytes, want %d", i, len(bufs), b.Len(), size)
		}
		size = min(2*size, encodedChunkBytes)
	}
	if size != encodedChunkBytes {
		t.Fatalf("%d chunks never reached %d bytes", len(bufs), encodedChunkBytes)
	}
	if !bytes.Equal(bufs.Materialize(), want) {
		t.Fatal("chunks differ from the entries")
	}
}

func appendVarint(b []byte, x uint64) []byte {
	for x >= 0x80 {
		b = append(b, byte(x)|0x80)
		x >>= 7
	}
	return append(b, byte(x))
}
