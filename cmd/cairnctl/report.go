package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"text/tabwriter"
)

// workloadOrder is docs/benchmarks.md's table order; the report follows it so
// tables from different runs line up. Unknown workloads follow, as first seen.
var workloadOrder = []string{"put-1", "put-100", "put-500", "range-l", "range-s", "txn-put", "watch", "watch-latency", "watch-10k", "lease", "footprint"}

func runBenchReport(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cairnctl bench report", flag.ContinueOnError)
	num := fs.String("num", "cairn", "target label in the numerator of the ratios")
	den := fs.String("den", "etcd", "target label in the denominator of the ratios")
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "Usage: cairnctl bench report [flags] <result.json>...")
		fmt.Fprintln(w, "\nReads `cairnctl bench ... --json --workload W --target T` outputs (one or more")
		fmt.Fprintln(w, "objects per file), takes medians over rounds per workload and target, and prints")
		fmt.Fprintln(w, "num/den ratios. Exits 1 if a run had errors or timed out, or a side is missing.")
		fmt.Fprintln(w, "\nFlags:")
		fs.PrintDefaults()
	}
	if ok, code := parseFlags(fs, args, usage, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "cairnctl bench report: no result files given")
		return exitUsage
	}
	var results []*Result
	for _, path := range fs.Args() {
		rs, err := readResults(path)
		if err != nil {
			fmt.Fprintf(stderr, "cairnctl bench report: %v\n", err)
			return exitFail
		}
		results = append(results, rs...)
	}
	rows := compare(results, *num, *den)
	writeComparison(stdout, rows, *num, *den)
	for _, r := range rows {
		if r.num.errors+r.den.errors+r.num.timeouts+r.den.timeouts > 0 || r.num.runs == 0 || r.den.runs == 0 {
			fmt.Fprintln(stderr, "cairnctl bench report: some runs had errors, timed out, or are missing; see the table")
			return exitFail
		}
	}
	return exitOK
}

// readResults decodes every JSON object in the file at path.
func readResults(path string) ([]*Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []*Result
	dec := json.NewDecoder(f)
	for {
		r := new(Result)
		if err := dec.Decode(r); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s: result %d: %w", path, len(out)+1, err)
		}
		if r.Workload == "" || r.Target == "" {
			return nil, fmt.Errorf("%s: result %d has no workload/target label (run bench with --workload and --target)", path, len(out)+1)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no results", path)
	}
	return out, nil
}

// sideSummary is one target's runs of one workload, reduced to medians.
type sideSummary struct {
	runs, errors, timeouts  int
	qps, avg, p50, p99, p90 float64 // medians over runs; NaN if no runs
}

type comparisonRow struct {
	workload string
	num, den sideSummary
}

func compare(results []*Result, num, den string) []comparisonRow {
	type key struct{ workload, target string }
	groups := map[key][]*Result{}
	var seen []string
	for _, r := range results {
		k := key{r.Workload, r.Target}
		if !slices.Contains(seen, r.Workload) {
			seen = append(seen, r.Workload)
		}
		groups[k] = append(groups[k], r)
	}
	var order []string
	for _, w := range workloadOrder {
		if slices.Contains(seen, w) {
			order = append(order, w)
		}
	}
	for _, w := range seen {
		if !slices.Contains(order, w) {
			order = append(order, w)
		}
	}
	rows := make([]comparisonRow, 0, len(order))
	for _, w := range order {
		rows = append(rows, comparisonRow{
			workload: w,
			num:      summarise(groups[key{w, num}]),
			den:      summarise(groups[key{w, den}]),
		})
	}
	return rows
}

func summarise(rs []*Result) sideSummary {
	s := sideSummary{runs: len(rs)}
	pick := func(f func(*Result) float64) float64 {
		vals := make([]float64, len(rs))
		for i, r := range rs {
			vals[i] = f(r)
		}
		return median(vals)
	}
	for _, r := range rs {
		s.errors += r.Errors
		if r.TimedOut {
			s.timeouts++
		}
	}
	s.qps = pick(func(r *Result) float64 { return r.QPS })
	s.avg = pick(func(r *Result) float64 { return r.AvgMs })
	s.p50 = pick(func(r *Result) float64 { return r.P50Ms })
	s.p90 = pick(func(r *Result) float64 { return r.P90Ms })
	s.p99 = pick(func(r *Result) float64 { return r.P99Ms })
	return s
}

// median returns the middle value (mean of the two middle ones for an even
// count), or NaN for no values.
func median(vals []float64) float64 {
	n := len(vals)
	if n == 0 {
		return math.NaN()
	}
	s := slices.Clone(vals)
	slices.Sort(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// ratio is num/den, or NaN when either side is missing or den is zero.
func ratio(num, den float64) float64 {
	if math.IsNaN(num) || math.IsNaN(den) || den == 0 {
		return math.NaN()
	}
	return num / den
}

func fmtNum(v float64, format string) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

func writeComparison(w io.Writer, rows []comparisonRow, num, den string) {
	fmt.Fprintf(w, "%s vs %s, medians over rounds; ratios are %s/%s (QPS > 1 and latency < 1 favour %s)\n",
		num, den, num, den, num)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "workload\trounds\t%s QPS\t%s QPS\tQPS ratio\tavg ratio\tp50 ratio\tp99 ratio\terrors\t\n", num, den)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", r.workload, r.num.runs, r.den.runs,
			fmtNum(r.num.qps, "%.0f"), fmtNum(r.den.qps, "%.0f"),
			fmtNum(ratio(r.num.qps, r.den.qps), "%.2f"),
			fmtNum(ratio(r.num.avg, r.den.avg), "%.2f"),
			fmtNum(ratio(r.num.p50, r.den.p50), "%.2f"),
			fmtNum(ratio(r.num.p99, r.den.p99), "%.2f"),
			r.num.errors+r.den.errors)
	}
	tw.Flush()

	fmt.Fprintln(w)
	fmt.Fprintln(w, "Medians per target (latencies in ms):")
	tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "workload\ttarget\truns\tQPS\tavg\tp50\tp90\tp99\terrors\ttimeouts\t\n")
	for _, r := range rows {
		for _, side := range []struct {
			name string
			s    sideSummary
		}{{num, r.num}, {den, r.den}} {
			s := side.s
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t\n", r.workload, side.name, s.runs,
				fmtNum(s.qps, "%.0f"), fmtNum(s.avg, "%.3f"), fmtNum(s.p50, "%.3f"),
				fmtNum(s.p90, "%.3f"), fmtNum(s.p99, "%.3f"), s.errors, s.timeouts)
		}
	}
	tw.Flush()
}
