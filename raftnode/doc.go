// Package raftnode drives go.etcd.io/raft/v3 for one member: the Ready loop, persistence
// of hard state and entries to the WAL (one fsync per Ready), snapshots, hand-off of
// committed entries to the server's apply loop (those the WAL already holds before the
// Ready's own write, so applying overlaps it; the others after it), and the peer
// transport: raft messages on one long-lived direct stream per peer (a connection of its
// own to the peer URL, outside gRPC, direct_stream.go; the peer service's gRPC stream
// towards a member without those), a snapshot with the db it stands for on a gRPC stream
// and connection of its own, checked by SHA-256, and the other peer RPCs over gRPC.
// Every connection to another member is plaintext for http:// peer URLs, TLS with the
// member's peer TLS configuration for https:// ones (DialPeer for gRPC). At each snapshot it purges the snapshot files and
// released WAL segments beyond --max-snapshots / --max-wals; ForceNewCluster rewrites a
// restarting member's log for --force-new-cluster.
// The Ready loop yields after handing messages to the per-peer senders, so a leader's
// appends leave before its own fsync holds the thread, not after it.
// raft is a RawNode under a mutex (rawnode.go): the goroutines that propose, read or
// receive peer messages step it themselves and wake the Ready loop, which alone takes,
// handles and advances its Readies; raft.Node's goroutine in between cost a switch per
// step. As with raft.Node, a proposal waits while no leader is known.
// Config.SyncWrite hears when each fsynced write starts and ends (the server holds client
// writes meanwhile to propose them as one entry).
// A member that is the only voter campaigns as soon as its configuration is applied
// (campaign.go) instead of waiting out an election timeout.
//
// A Ready whose WAL or snapshot write fails for lack of space (ENOSPC, EDQUOT) is not
// fatal: the Ready loop waits and writes the same Ready again, with backoff (100ms
// doubling to 5s, each retry logged), until it succeeds or the node stops, and DiskFull
// reports it meanwhile; nothing of that Ready is acknowledged or applied before. A
// snapshot the apply loop asks for (Snapshot) that fails so just returns the error.
//
// The peer port takes raft messages, snapshots and forwarded requests only from a current
// member of this cluster other than itself (PermissionDenied otherwise, logged; another
// cluster's is FailedPrecondition), and, when peer client certificate auth verified the
// connection's certificate, only if that certificate is valid for a host of one of the
// claimed member's peer URLs (CheckMemberCert; a certificate without IP or DNS SANs is not
// checked; --peer-skip-member-cert-check turns it off): on direct streams and gRPC alike.
// The peer port's listener (tlsutil.Listener's handshaken connections for https://) goes
// through SplitListener, which serves the direct streams and hands the rest to the peer
// gRPC server, which takes them through tlsutil.ServerCredentials.
//
// It must never interpret the entries it carries: applying them is the server's job. It
// must never acknowledge, as a follower, what it has not made durable, and never let the
// Ready loop install a leader's snapshot whose db file is not saved first.
//
// FreezeReadyLoop is a fault hook for tests only (see server's FaultHandler).
package raftnode
