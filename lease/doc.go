// Package lease is the lessor: the in-memory state of every lease (ID, granted TTL,
// checkpointed remaining TTL, attached keys) and, on the leader only, lease expiry,
// keep-alive and checkpoint scheduling.
//
// It owns no storage and no goroutines. It must never import mvcc, raft or server, never
// do I/O, never read the wall clock except through Config.Now, and never decide anything on
// its own: the server applies raft-committed operations (Grant, Revoke, Attach, Detach,
// Checkpoint, Restore) to it in log order on every member, persists lease records itself
// (the bbolt "lease" bucket via mvcc), and, while this member leads, polls Expired and
// CheckpointDue and proposes the revokes and checkpoints they name. Given the same
// sequence of calls and clock readings it always reaches the same state.
//
// Primary (leader) state, set by Promote and dropped by Demote, is an expiry per lease:
//   - Promote: expiry = now + (RemainingTTL if checkpointed, else TTL) + extend.
//   - Grant / Renew: expiry = now + TTL. Renew is leader-only (ErrNotPrimary otherwise) and
//     answers ErrLeaseNotFound for a lease already past its expiry (its revoke is pending).
//   - Expired: a min-heap ordered by expiry; a lease it returns is held back for
//     Config.ExpiredRetryInterval (default 3s) so a slow revoke is not proposed twice.
//   - CheckpointDue: a second min-heap ordered by when each lease's remaining TTL was last
//     known to the cluster (grant, promote, renew, applied checkpoint); a lease is due once
//     that is at least interval ago. A Renew that clears a checkpointed RemainingTTL makes
//     the lease due at once with Remaining = TTL, so followers forget the stale value.
//
// Followers keep no expiry and never expire leases. A checkpoint with Remaining <= 0 or
// >= TTL clears RemainingTTL (0 means "none: use the full TTL"). Applying a checkpoint
// never moves a primary's expiry (as in etcd): RemainingTTL only matters to the next
// Promote or Restore, after a leader change or a restart.
//
// A key belongs to at most one lease: attaching it to a lease detaches it from any other.
//
// Metrics use etcd's names (etcd_debugging_lease_{granted,revoked,renewed,ttl}_total);
// Collectors returns them for registration.
package lease
