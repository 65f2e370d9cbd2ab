// Package connutil holds what the member's listeners share: a listener that prepares
// each accepted connection in a goroutine of its own before Accept returns it (a TLS
// handshake, reading the first bytes to tell protocols apart), and a connection that
// replays the bytes read that way.
//
// It never reads a connection itself, and never keeps one past its listener's Close.
package connutil
