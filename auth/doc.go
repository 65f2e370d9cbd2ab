// Package auth holds users, roles, permissions and tokens.
// Not implemented yet: the Auth RPCs answer codes.Unimplemented until it is.
package auth
