// Package api is the client-facing edge of a member: the gRPC services of etcd's v3 API,
// the HTTP endpoints (/health, /livez, /readyz, /version, /metrics) that share the
// client port (ServeClient: one port, plaintext or TLS, sniffed or ALPN-routed into gRPC
// and HTTP/1.1, an HTTP/2 connection over TLS by its first request; or HTTP only, or gRPC only, as etcd's --listen-client-http-urls splits
// them), and etcd's HTTP/JSON gateway under /v3/ (Gateway), which only forwards to the
// member's own gRPC server over an in-process connection, so every gateway request
// passes the same checks as a gRPC one. It validates requests (sizes, op counts, key ranges), routes them to the
// server and maps every error to etcd's gRPC code and exact message.
//
// Auth (auth.go): the Auth service and the checks etcd makes at its edge (Maintenance and
// KV.Compact by method, Cluster changes, watch ranges) go through AuthBackend; a Backend
// without it has no auth.
//
// It must never touch storage or raft directly, and never invent a success for an RPC the
// server does not implement: those answer codes.Unimplemented.
package api
