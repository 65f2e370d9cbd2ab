package gctune

import (
	"context"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 1600}, {1 << 20, 1600}, {4 << 20, 1600}, {8 << 20, 800}, {32 << 20, 200}, {64 << 20, 100}, {100 << 20, 64},
		{128 << 20, 50}, {1 << 30, 50},
	} {
		if got := Percent(c.live); got != c.want {
			t.Errorf("Percent(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
}

func TestEnabled(t *testing.T) {
	if !Enabled([]string{"HOME=/root", "GOGCX=1"}) {
		t.Error("disabled without GOGC or GOMEMLIMIT")
	}
	if Enabled([]string{"GOGC=200"}) || Enabled([]string{"GOMEMLIMIT=1GiB"}) {
		t.Error("enabled with the operator's GC policy")
	}
}

// Run gives back the GC percentage it found when it ends.
func TestRunRestores(t *testing.T) {
	prev := debug.SetGCPercent(77)
	defer debug.SetGCPercent(prev)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	Run(ctx)
	if p := debug.SetGCPercent(prev); p != 77 {
		t.Fatalf("GC percent %d after Run, want 77", p)
	}
}
