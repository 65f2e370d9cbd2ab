// Package lease is the lessor: lease grant, revoke, keep-alive, expiry and checkpoints.
// Not implemented yet: the Lease RPCs answer codes.Unimplemented until it is.
package lease
