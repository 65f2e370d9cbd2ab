// Package gctune sizes the Go collector's heap headroom for a server whose live heap is
// mostly long-lived (the key index): GOGC's default lets the heap grow to twice the live
// heap before a collection, so a member holding 100 MiB of index would hold 200 MiB,
// whatever its request load. Tuner keeps the headroom near a fixed size instead: the GC
// percentage is 100 x Headroom / live heap, never above 100 (a small heap behaves as with
// the default) nor below MinPercent (a large heap is collected at most that often).
//
// It must do nothing when the operator chose a GC policy (GOGC or GOMEMLIMIT set in the
// environment), and it only ever calls debug.SetGCPercent.
package gctune
