package mvcc

import (
	"testing"

	"github.com/cairn-kv/cairn/proto/mvccpb"
)

func TestCanonicalKV(t *testing.T) {
	for _, kv := range []*mvccpb.KeyValue{
		{Key: []byte("k")},
		{Key: []byte("k"), CreateRevision: 1, ModRevision: 300, Version: 1 << 40, Value: make([]byte, 10240), Lease: -1},
		{Key: []byte("k"), ModRevision: 2, Lease: 7},
	} {
		b, err := kv.MarshalVT()
		if err != nil {
			t.Fatal(err)
		}
		if !CanonicalKV(b) {
			t.Errorf("MarshalVT of %v: not canonical", kv)
		}
	}
	for name, b := range map[string][]byte{
		"reordered":      {0x10, 0x01, 0x0a, 0x01, 'k'},
		"repeated":       {0x0a, 0x01, 'k', 0x0a, 0x01, 'k'},
		"zero varint":    {0x0a, 0x01, 'k', 0x10, 0x00},
		"empty value":    {0x0a, 0x01, 'k', 0x2a, 0x00},
		"long varint":    {0x0a, 0x01, 'k', 0x10, 0x81, 0x00},
		"unknown field":  {0x0a, 0x01, 'k', 0x38, 0x01},
		"wrong wiretype": {0x0a, 0x01, 'k', 0x12, 0x01, 'x'},
		"short":          {0x0a, 0x05, 'k'},
		"truncated tag":  {0x0a, 0x01, 'k', 0x80},
	} {
		if CanonicalKV(b) {
			t.Errorf("%s: canonical", name)
		}
	}
}
