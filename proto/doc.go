// Package proto holds Cairn's .proto files, wire-compatible with etcd's v3 API
// (same package, service, message and field names and numbers), and the Go code
// generated from them by `make proto`. Nothing here is hand-written Go except this
// file; the generated code is committed so a build needs no protoc. The exception to
// etcd compatibility is peerpb, Cairn's own member-to-member raft transport.
package proto

//go:generate sh -c "protoc -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative mvccpb/kv.proto authpb/auth.proto etcdserverpb/rpc.proto etcdserverpb/raft_internal.proto v3lockpb/v3lock.proto v3electionpb/v3election.proto peerpb/peer.proto"
//go:generate sh -c "protoc -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative peerpb/lease.proto peerpb/member.proto peerpb/hash.proto"
