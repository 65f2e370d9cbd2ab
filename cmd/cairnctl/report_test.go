package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{1, 1, 100}, 1}} {
		in := append([]float64(nil), tc.in...)
		if got := median(in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Errorf("median reordered its input: %v", in)
			}
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing should be NaN")
	}
}

func writeResults(t *testing.T, dir, name string, rs ...Result) string {
	t.Helper()
	var buf bytes.Buffer
	for _, r := range rs {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(append(b, '\n'))
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCompare(t *testing.T) {
	res := func(w, tg string, qps, avg, p99 float64) *Result {
		return &Result{Workload: w, Target: tg, QPS: qps, AvgMs: avg, P99Ms: p99}
	}
	rows := compare([]*Result{
		res("zz-custom", "cairn", 1, 1, 1),
		res("put-100", "cairn", 900, 10, 30), res("put-100", "etcd", 1000, 9, 20),
		res("put-100", "cairn", 1100, 8, 20), res("put-100", "etcd", 500, 20, 40),
		res("put-100", "cairn", 2000, 5, 10), res("put-100", "etcd", 2000, 5, 10),
		res("put-1", "cairn", 300, 3, 6), res("put-1", "etcd", 100, 10, 20),
	}, "cairn", "etcd")
	if len(rows) != 3 || rows[0].workload != "put-1" || rows[1].workload != "put-100" || rows[2].workload != "zz-custom" {
		t.Fatalf("row order: %+v", rows)
	}
	p := rows[1]
	if p.num.runs != 3 || p.den.runs != 3 || p.num.qps != 1100 || p.den.qps != 1000 || p.num.avg != 8 || p.den.p99 != 20 {
		t.Errorf("put-100 medians: %+v", p)
	}
	if got := ratio(p.num.qps, p.den.qps); math.Abs(got-1.1) > 1e-9 {
		t.Errorf("qps ratio %v, want 1.1", got)
	}
	if z := rows[2]; z.den.runs != 0 || !math.IsNaN(ratio(z.num.qps, z.den.qps)) {
		t.Errorf("one-sided workload should have no ratio: %+v", z)
	}
}

func TestBenchReportCommand(t *testing.T) {
	dir := t.TempDir()
	var files []string
	for round, f := range []float64{1, 2, 3} {
		files = append(files,
			writeResults(t, dir, "c"+string(rune('0'+round))+".json",
				Result{Workload: "put-1", Target: "cairn", Round: round + 1, Op: "put", QPS: 200 * f, AvgMs: 5, P50Ms: 2, P99Ms: 10},
				Result{Workload: "range-s", Target: "cairn", Round: round + 1, Op: "range", QPS: 1000, AvgMs: 1, P99Ms: 2}),
			writeResults(t, dir, "e"+string(rune('0'+round))+".json",
				Result{Workload: "put-1", Target: "etcd", Round: round + 1, Op: "put", QPS: 100 * f, AvgMs: 10, P50Ms: 8, P99Ms: 40},
				Result{Workload: "range-s", Target: "etcd", Round: round + 1, Op: "range", QPS: 4000, AvgMs: 2, P99Ms: 2}))
	}
	var out, errb bytes.Buffer
	if code := run(append([]string{"bench", "report"}, files...), &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	lines := strings.Split(out.String(), "\n")
	want := map[string][]string{
		"put-1":   {"3/3", "400", "200", "2.00", "0.50", "0.25", "0.25"},
		"range-s": {"3/3", "1000", "4000", "0.25", "0.50", "-", "1.00"},
	}
	for w, cols := range want {
		found := false
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) == 9 && f[0] == w {
				found = true
				if strings.Join(f[1:8], " ") != strings.Join(cols, " ") || f[8] != "0" {
					t.Errorf("%s row %q, want %v", w, l, cols)
				}
			}
		}
		if !found {
			t.Errorf("no %s row in:\n%s", w, out.String())
		}
	}

	// A run with errors still prints the table but fails the command.
	bad := writeResults(t, dir, "bad.json", Result{Workload: "put-1", Target: "etcd", QPS: 1, Errors: 7})
	out.Reset()
	errb.Reset()
	if code := run(append([]string{"bench", "report"}, append(files, bad)...), &out, &errb); code != exitFail {
		t.Errorf("errors in a run: exit %d, want %d", code, exitFail)
	}
	if !strings.Contains(out.String(), "put-1") || !strings.Contains(errb.String(), "errors") {
		t.Errorf("stdout %q stderr %q", out.String(), errb.String())
	}
}

func TestBenchReportBadInput(t *testing.T) {
	dir := t.TempDir()
	unlabelled := writeResults(t, dir, "u.json", Result{Op: "put", QPS: 1})
	garbage := filepath.Join(dir, "g.json")
	os.WriteFile(garbage, []byte("{not json"), 0o644)
	empty := filepath.Join(dir, "e.json")
	os.WriteFile(empty, nil, 0o644)
	for _, tc := range []struct{ file, msg string }{
		{unlabelled, "no workload/target"},
		{garbage, "g.json"},
		{empty, "no results"},
		{filepath.Join(dir, "missing.json"), "missing.json"},
	} {
		var out, errb bytes.Buffer
		if code := run([]string{"bench", "report", tc.file}, &out, &errb); code != exitFail || !strings.Contains(errb.String(), tc.msg) {
			t.Errorf("%s: exit %d stderr %q, want exit 1 mentioning %q", tc.file, code, errb.String(), tc.msg)
		}
	}
}
