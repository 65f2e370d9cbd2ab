package server

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Requests beginning within one tick share an expiry; it ends, with DeadlineExceeded, no
// sooner than the timeout after each of them began and at most a tick after that.
func TestRequestExpiry(t *testing.T) {
	const timeout = 640 * time.Millisecond // ticks of 10ms
	r := newRequestExpiry(timeout)
	began := time.Now()
	e := r.get()
	if r.get() != e {
		t.Fatal("two requests of the same tick got different expiries")
	}
	if e.Err() != nil {
		t.Fatalf("Err %v before the deadline", e.Err())
	}
	if dl, ok := e.Deadline(); !ok || dl.Before(began.Add(timeout)) {
		t.Fatalf("deadline %v, want at least %v", dl, began.Add(timeout))
	}
	time.Sleep(2 * r.tick)
	if next := r.get(); next == e || !next.deadline.After(e.deadline) {
		t.Fatal("a request two ticks later did not get a later expiry")
	}
	select {
	case <-e.Done():
	case <-time.After(timeout + time.Second):
		t.Fatal("expiry did not end")
	}
	if waited := time.Since(began); waited < timeout || waited > timeout+r.tick+200*time.Millisecond {
		t.Fatalf("expiry ended %v after the request began, want %v to %v", waited, timeout, timeout+r.tick)
	}
	if !errors.Is(e.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err %v after the deadline, want DeadlineExceeded", e.Err())
	}
	// bounded ends with the expiry, or with its parent first.
	ctx, cancel := context.WithCancel(context.Background())
	b, bcancel := r.get().bounded(ctx)
	defer bcancel()
	cancel()
	if !errors.Is(b.Err(), context.Canceled) {
		t.Fatalf("bounded context: Err %v after its parent was cancelled", b.Err())
	}
}
