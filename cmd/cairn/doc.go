// Command cairn is the Cairn server: one member of an etcd-compatible cluster. It takes
// etcd's flags, ETCD_* environment variables and etcd's YAML config file, serves etcd's
// v3 gRPC API and HTTP endpoints on the client URLs, and drains on SIGTERM.
//
// It only parses configuration, wires api to server and handles signals; it must never
// hold request-handling or storage logic of its own.
package main
