// Package pbcodec is the gRPC codec of a member's client and peer ports (and of the raft
// streams it opens to its peers; never process-wide): gRPC's "proto" codec, except
// that a message with vtprotobuf's generated methods (see package proto) is marshalled
// with SizeVT/MarshalToSizedBufferVT and unmarshalled with UnmarshalVT, without
// protobuf-go's reflection. Any other message goes to gRPC's own proto codec.
//
// The bytes on the wire are exactly those of gRPC's codec (a test checks MarshalVT
// against proto.Marshal for every generated message), so clients and members see no
// difference. Like gRPC's codec, a marshalled message of at least gRPC's pooling
// threshold is written into a buffer of gRPC's mem pool, which gRPC returns to the pool
// once the bytes are on the wire; an unmarshalled message shares no memory with the
// received buffers (UnmarshalVT copies bytes fields), which gRPC frees as it does for
// its own codec.
//
// Two kinds of value skip encoding or decoding a whole message: an Encoded is bytes
// already in wire form (a watch response assembled from cached event encodings, a peer
// envelope written in one pass), sent as they are; a RawDecoder decodes itself straight
// from the received bytes (a peer envelope's raft messages, unmarshalled in place).
//
// It must never change what a message encodes to: a message whose generated code could
// differ from proto.Marshal is not given VT methods.
package pbcodec
