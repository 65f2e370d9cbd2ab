// Command cairn is the Cairn server: one member of an etcd-compatible cluster. It takes
// etcd's flags, ETCD_* environment variables and etcd's YAML config file, serves etcd's
// v3 gRPC API, its HTTP/JSON gateway (/v3/...) and HTTP endpoints on the client URLs, and drains on SIGTERM. For tests
// only, CAIRN_FAULT_INJECTION=1 in the environment also serves server.FaultHandler
// (under /debug/fault/) on the client and metrics URLs; it is off otherwise.
//
// It only parses configuration, wires api to server, handles signals and starts
// internal/gctune (the collector's headroom sized to the live heap, unless GOGC or
// GOMEMLIMIT is set); it must never hold request-handling or storage logic of its own.
package main
