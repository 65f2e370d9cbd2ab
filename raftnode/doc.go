// Package raftnode drives go.etcd.io/raft/v3 for one member: the Ready loop, persistence
// of hard state and entries to the WAL (one fsync per Ready), snapshots, and hand-off of
// committed entries to the server's apply loop.
//
// It must never interpret the entries it carries: applying them is the server's job.
package raftnode
