// Package errs holds the errors a member returns to the client-facing edge, one
// definition each. Their texts are etcd's server-side texts (etcdserver/errors, its
// membership, lease and mvcc packages). Package api maps each to etcd's gRPC code and
// client message by value (errors.Is), never by text; server, lease and mvcc keep their
// names for them as aliases of these values. A new error goes in All too (a test checks).
//
// It must import nothing of the project, so every package may use it without a cycle.
package errs
