package framework

import "fmt"

// rawCodec is a gRPC codec for messages this module has no generated type for (Cairn's
// peer messages, etcd 3.7's RangeStreamResponse): it sends bytes already encoded, or
// etcd's (gogo) messages through their Marshal, and hands every answer over as bytes
// (*[]byte) for the caller to decode.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case []byte:
		return m, nil
	case *[]byte:
		return *m, nil
	case interface{ Marshal() ([]byte, error) }:
		return m.Marshal()
	}
	return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	*p = append([]byte(nil), data...) // a fresh slice: callers keep earlier answers
	return nil
}
