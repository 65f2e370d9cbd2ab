// Package raftnode drives go.etcd.io/raft/v3 for one member: the Ready loop, persistence
// of hard state and entries to the WAL (one fsync per Ready), snapshots, hand-off of
// committed entries to the server's apply loop (those the WAL already holds before the
// Ready's own write, so applying overlaps it; the others after it), and the gRPC peer transport (raft
// messages on long-lived streams; a snapshot with the db it stands for on a stream and
// connection of its own, checked by SHA-256). Every connection to another member is made
// by DialPeer: plaintext for http:// peer URLs, TLS with the member's peer TLS
// configuration for https:// ones. At each snapshot it purges the snapshot files and
// released WAL segments beyond --max-snapshots / --max-wals; ForceNewCluster rewrites a
// restarting member's log for --force-new-cluster.
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
// checked; --peer-skip-member-cert-check turns it off). The peer gRPC server takes the
// handshaken connections of tlsutil.Listener through tlsutil.ServerCredentials.
//
// It must never interpret the entries it carries: applying them is the server's job. It
// must never acknowledge, as a follower, what it has not made durable, and never let the
// Ready loop install a leader's snapshot whose db file is not saved first.
//
// FreezeReadyLoop is a fault hook for tests only (see server's FaultHandler).
package raftnode
