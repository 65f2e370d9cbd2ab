package auth

import (
	"testing"
	"time"
)

func TestFailureLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := NewFailureLimiter(3, time.Second, func() time.Time { return now })
	for i := 0; i < 3; i++ {
		if !l.Allow("a") {
			t.Fatalf("attempt %d refused within the burst", i)
		}
		l.Failed("a")
	}
	if l.Allow("a") {
		t.Fatal("a 4th attempt right after 3 failures allowed")
	}
	if !l.Allow("b") {
		t.Fatal("another source refused")
	}
	now = now.Add(time.Second)
	if !l.Allow("a") {
		t.Fatal("refused after one refill period")
	}
	l.Failed("a")
	if l.Allow("a") {
		t.Fatal("allowed again right after the refilled attempt failed")
	}
	now = now.Add(time.Hour)
	for i := 0; i < 3; i++ {
		if !l.Allow("a") {
			t.Fatalf("after an hour, attempt %d refused (the burst refills, capped)", i)
		}
		l.Failed("a")
	}
	if l.Allow("a") {
		t.Fatal("the burst refilled past its cap")
	}
}
