// Package gctune sizes the Go collector's heap headroom to a fixed amount instead of
// GOGC's default, which lets the heap grow by the live heap between collections. Both
// ends of that default hurt a member: a large live heap (the key index) is held twice
// over, 100 MiB of index holding 200 MiB whatever the load; a small one is collected
// after every few MiB allocated (the collector took 11% of a fresh member's CPU under
// put-100). Run keeps the headroom near Headroom: the GC percentage is 100 x Headroom /
// live heap, between MinPercent (a large heap is collected at most that often) and
// MaxPercent (the live heap of a new member is only a few MiB).
//
// It must do nothing when the operator chose a GC policy (GOGC or GOMEMLIMIT set in the
// environment), and it only ever calls debug.SetGCPercent.
package gctune
