// Package testutil holds helpers shared by the packages' tests. It must never be
// imported by non-test code.
package testutil

import (
	"testing"
	"time"
)

// Eventually waits until cond holds, checking every 10ms, and fails the test after
// timeout naming what it waited for.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
