package main

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	// 1..100 ms: the p-th percentile is exactly p ms.
	var lat []time.Duration
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	r := newResult(lat, nil, time.Second) // sorts lat
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0, 1}, {1, 1}, {50, 50}, {90, 90}, {99, 99}, {99.5, 100}, {100, 100}} {
		if got := percentile(lat, tc.p); got != tc.want*time.Millisecond {
			t.Errorf("p%v = %v, want %v", tc.p, got, tc.want*time.Millisecond)
		}
	}
	if r.P50Ms != 50 || r.P90Ms != 90 || r.P99Ms != 99 || r.P999Ms != 100 || r.FastestMs != 1 || r.SlowestMs != 100 {
		t.Errorf("result percentiles: %+v", r)
	}
	if r.AvgMs != 50.5 || r.QPS != 100 || r.OK != 100 || r.Total != 100 {
		t.Errorf("avg/qps/ok/total = %v/%v/%d/%d, want 50.5/100/100/100", r.AvgMs, r.QPS, r.OK, r.Total)
	}
}

func TestPercentileSmallSamples(t *testing.T) {
	if got := percentile(nil, 99); got != 0 {
		t.Errorf("empty: %v", got)
	}
	one := []time.Duration{7}
	for _, p := range []float64{0, 50, 99, 100} {
		if got := percentile(one, p); got != 7 {
			t.Errorf("single sample p%v = %v", p, got)
		}
	}
	// With 10 samples p99 must be the slowest, not an interpolated value.
	ten := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if got := percentile(ten, 99); got != 10 {
		t.Errorf("p99 of 10 = %v, want 10", got)
	}
	if got := percentile(ten, 50); got != 5 {
		t.Errorf("p50 of 10 = %v, want 5", got)
	}
}

func TestPercentileShuffled(t *testing.T) {
	lat := make([]time.Duration, 10000)
	for i := range lat {
		lat[i] = time.Duration(i+1) * time.Microsecond
	}
	rand.Shuffle(len(lat), func(i, j int) { lat[i], lat[j] = lat[j], lat[i] })
	r := newResult(lat, nil, 2*time.Second)
	if r.P50Ms != 5 || r.P90Ms != 9 || r.P99Ms != 9.9 || r.SlowestMs != 10 || r.QPS != 5000 {
		t.Errorf("got p50 %v p90 %v p99 %v slowest %v qps %v", r.P50Ms, r.P90Ms, r.P99Ms, r.SlowestMs, r.QPS)
	}
}

func TestResultErrors(t *testing.T) {
	r := newResult([]time.Duration{time.Millisecond}, map[string]int{"a": 3, "b": 2}, time.Second)
	if r.Total != 6 || r.OK != 1 || r.Errors != 5 || r.QPS != 1 || len(r.ErrorsByMessage) != 2 {
		t.Errorf("got %+v", r)
	}
	empty := newResult(nil, map[string]int{"x": 4}, time.Second)
	if empty.Total != 4 || empty.OK != 0 || empty.AvgMs != 0 || empty.P99Ms != 0 || empty.QPS != 0 {
		t.Errorf("all-errors run: %+v", empty)
	}
	if none := newResult(nil, nil, time.Second); none.ErrorsByMessage != nil {
		t.Errorf("no errors should omit errors_by_message: %+v", none)
	}
}
