// Package auth is etcd's authentication and role-based access control: users (bcrypt
// password hashes, or no password), roles, key permissions (READ, WRITE, READWRITE on a
// key, a range [key, range_end) or every key from key on, range_end "\x00"), the root
// user and role, the auth revision, and the tokens clients authenticate with.
//
// It owns the in-memory auth state and the token table, and nothing else. It must never
// import mvcc, raft, server or api, never write storage itself and never change its
// state on its own: the server applies raft-committed auth requests to it in log order
// on every member, each inside the entry's store write transaction (the Tx it is given,
// mvcc.WriteTxn), and calls the returned commit function only once that transaction
// ended without error, so a failed request changes neither the buckets nor the memory.
// Boot and snapshot install hand it the buckets' content (Restore). Given the same
// sequence of requests every member reaches the same users, roles and revision.
//
// Where its data lives: etcd's bbolt buckets with etcd's encodings, so etcd snapshots
// restore into Cairn and back: "auth" ("authEnabled" = 1 or 0, "authRevision" = 8-byte
// big-endian), "authUsers" and "authRoles" (name -> marshalled authpb.User / Role). A
// stored revision of 0 (a db that never saw an auth change) reads as 1, as etcd's
// authStore starts at 1.
//
// Rules, as etcd 3.6's auth store:
//   - The auth revision moves on with every change of users, roles or permissions and
//     with AuthDisable (not with AuthEnable, nor a grant of a role the user already
//     has). A request checked against an older revision fails with ErrAuthOldRevision;
//     the server stamps each proposal with the revision its token was checked at.
//   - AuthEnable needs a user "root" holding the role "root" (which need not exist as a
//     role); while enabled, the root user cannot be deleted nor lose the root role and
//     the root role cannot be deleted. A user with the root role may do everything.
//   - Permission checks: a single key needs one permission interval of the right type
//     containing it; a range needs the union of the user's intervals to cover it without
//     a gap. No token (revision 0) is ErrUserEmpty; an unknown user ErrPermissionDenied.
//   - Passwords are hashed (bcrypt, Config.BcryptCost) by the member that received the
//     request, before it is proposed: the log carries hashes, never passwords, and
//     applying never runs bcrypt.
//
// Tokens (Config.TokenOpts, etcd's --auth-token): "simple" tokens are random strings
// "<16 letters>.<raft index>", assigned when an Authenticate entry is applied, so every
// member knows them; they live in memory only (a restart forgets them and clients
// authenticate again), expire after Config.TokenTTL without use, and die with a password
// change or deletion of their user and with AuthDisable. A token naming an index this
// member has not applied yet waits for it (Config.IndexWaiter). "jwt,..." tokens are
// signed and carry the auth revision; any auth change makes them old. Expiry is checked
// when a token is used, through Config.Now: the package starts no goroutine.
package auth
