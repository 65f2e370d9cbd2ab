package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"time"
)

// Result is one load run. Its JSON form is what `bench --json` prints and
// `bench report` reads, so field names are a file format: add, don't rename.
// Latencies are of successful requests only, in milliseconds.
type Result struct {
	Workload string `json:"workload,omitempty"`
	Target   string `json:"target,omitempty"`
	Round    int    `json:"round,omitempty"`
	Op       string `json:"op"`

	Endpoints string `json:"endpoints"`
	Clients   int    `json:"clients"`
	Conns     int    `json:"conns"`

	// watch: Clients is the put clients, Total/OK/Errors count event
	// deliveries (OK ones are in order, without gaps), QPS is delivered events
	// per second, and latency runs from just before the put was sent to the
	// receipt of its event (matched by mod revision).
	Watchers int `json:"watchers,omitempty"`
	Streams  int `json:"streams,omitempty"`
	Puts     int `json:"puts,omitempty"` // puts issued, failed ones included
	// watch: the puts' own latency (sent -> response), so that what the watch
	// path adds to the event latency shows.
	PutAvgMs float64 `json:"put_avg_ms,omitempty"`
	PutP50Ms float64 `json:"put_p50_ms,omitempty"`
	PutP99Ms float64 `json:"put_p99_ms,omitempty"`
	// lease-keepalive: leases granted before the run and revoked after it.
	Leases int `json:"leases,omitempty"`

	Total    int     `json:"total"` // requests issued: ok + errors
	OK       int     `json:"ok"`
	Errors   int     `json:"errors"`
	TimedOut bool    `json:"timed_out,omitempty"`
	Duration float64 `json:"duration_s"`
	QPS      float64 `json:"qps"` // successful requests per second

	AvgMs     float64 `json:"avg_ms"`
	StddevMs  float64 `json:"stddev_ms"`
	FastestMs float64 `json:"fastest_ms"`
	P50Ms     float64 `json:"p50_ms"`
	P90Ms     float64 `json:"p90_ms"`
	P99Ms     float64 `json:"p99_ms"`
	P999Ms    float64 `json:"p99_9_ms"`
	SlowestMs float64 `json:"slowest_ms"`

	ErrorsByMessage map[string]int `json:"errors_by_message,omitempty"`
}

// newResult summarises the latencies of successful requests (sorted in
// place) and the error counts of one run that took elapsed.
func newResult(lat []time.Duration, errs map[string]int, elapsed time.Duration) *Result {
	slices.Sort(lat)
	r := &Result{OK: len(lat), Duration: elapsed.Seconds()}
	for _, n := range errs {
		r.Errors += n
	}
	r.Total = r.OK + r.Errors
	if len(errs) > 0 {
		r.ErrorsByMessage = errs
	}
	if elapsed > 0 {
		r.QPS = float64(r.OK) / elapsed.Seconds()
	}
	if len(lat) == 0 {
		return r
	}
	var sum float64
	for _, d := range lat {
		sum += float64(d)
	}
	mean := sum / float64(len(lat))
	var sq float64
	for _, d := range lat {
		sq += (float64(d) - mean) * (float64(d) - mean)
	}
	r.AvgMs = mean / float64(time.Millisecond)
	r.StddevMs = math.Sqrt(sq/float64(len(lat))) / float64(time.Millisecond)
	r.FastestMs = ms(lat[0])
	r.P50Ms = ms(percentile(lat, 50))
	r.P90Ms = ms(percentile(lat, 90))
	r.P99Ms = ms(percentile(lat, 99))
	r.P999Ms = ms(percentile(lat, 99.9))
	r.SlowestMs = ms(lat[len(lat)-1])
	return r
}

// percentile returns the nearest-rank p-th percentile of sorted: the
// smallest sample that at least p% of samples are <= to. It is always an
// observed latency, never an interpolation.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (r *Result) writeText(w io.Writer) {
	fmt.Fprintf(w, "Summary: bench %s, %d clients, %d conns, %s\n", r.Op, r.Clients, r.Conns, r.Endpoints)
	if r.Watchers > 0 {
		fmt.Fprintf(w, "  Watchers:  %d on %d streams; %d puts; counts are event deliveries, latency is put sent -> event received\n",
			r.Watchers, r.Streams, r.Puts)
		fmt.Fprintf(w, "  Puts:      average %.4f ms, p50 %.4f ms, p99 %.4f ms (sent -> response)\n", r.PutAvgMs, r.PutP50Ms, r.PutP99Ms)
	}
	if r.Leases > 0 {
		fmt.Fprintf(w, "  Leases:    %d\n", r.Leases)
	}
	fmt.Fprintf(w, "  Total:     %d\n", r.Total)
	fmt.Fprintf(w, "  Duration:  %.4f s\n", r.Duration)
	fmt.Fprintf(w, "  QPS:       %.1f\n", r.QPS)
	fmt.Fprintf(w, "  Average:   %.4f ms (stddev %.4f ms)\n", r.AvgMs, r.StddevMs)
	fmt.Fprintf(w, "  Fastest:   %.4f ms\n", r.FastestMs)
	fmt.Fprintf(w, "  p50:       %.4f ms\n", r.P50Ms)
	fmt.Fprintf(w, "  p90:       %.4f ms\n", r.P90Ms)
	fmt.Fprintf(w, "  p99:       %.4f ms\n", r.P99Ms)
	fmt.Fprintf(w, "  p99.9:     %.4f ms\n", r.P999Ms)
	fmt.Fprintf(w, "  Slowest:   %.4f ms\n", r.SlowestMs)
	fmt.Fprintf(w, "  Errors:    %d\n", r.Errors)
	msgs := make([]string, 0, len(r.ErrorsByMessage))
	for m := range r.ErrorsByMessage {
		msgs = append(msgs, m)
	}
	// Most frequent first, so the cause is at the top.
	sort.Slice(msgs, func(i, j int) bool {
		ni, nj := r.ErrorsByMessage[msgs[i]], r.ErrorsByMessage[msgs[j]]
		return ni > nj || ni == nj && msgs[i] < msgs[j]
	})
	for _, m := range msgs {
		fmt.Fprintf(w, "    %7d  %s\n", r.ErrorsByMessage[m], m)
	}
	if r.TimedOut {
		fmt.Fprintln(w, "  TIMED OUT: --timeout expired before --total requests completed")
	}
}
