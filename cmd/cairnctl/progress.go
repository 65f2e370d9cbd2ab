package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cheggaaa/pb/v3"
	"github.com/dustin/go-humanize"
	"golang.org/x/term"
)

// progress reports a byte copy: a bar with bytes/s when w is a terminal (cheggaaa/pb,
// the bar etcd's own benchmark tool uses), plain lines every few seconds and at the end
// otherwise (logs, CI). A nil *progress does nothing.
type progress struct {
	w       io.Writer
	label   string
	total   int64
	done    int64
	start   time.Time
	lastLog time.Time
	bar     *pb.ProgressBar
}

const progressLogEvery = 5 * time.Second

func startProgress(w io.Writer, label string, total int64) *progress {
	p := &progress{w: w, label: label, total: total, start: time.Now()}
	p.lastLog = p.start
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = pb.Full.Start64(total)
		p.bar.SetWriter(w)
		p.bar.Set(pb.Bytes, true)
		p.bar.Set("prefix", label+" ")
	}
	return p
}

// set records that n bytes are done.
func (p *progress) set(n int64) {
	if p == nil {
		return
	}
	p.done = n
	if p.bar != nil {
		p.bar.SetCurrent(n)
		return
	}
	if now := time.Now(); now.Sub(p.lastLog) >= progressLogEvery {
		p.lastLog = now
		p.log("")
	}
}

// Write counts bytes written through it (for io.MultiWriter).
func (p *progress) Write(b []byte) (int, error) {
	p.set(p.done + int64(len(b)))
	return len(b), nil
}

func (p *progress) finish() {
	if p == nil {
		return
	}
	if p.bar != nil {
		p.bar.SetCurrent(p.done)
		p.bar.Finish()
		return
	}
	p.log(" done")
}

func (p *progress) log(suffix string) {
	secs := time.Since(p.start).Seconds()
	rate := float64(p.done)
	if secs > 0 {
		rate /= secs
	}
	fmt.Fprintf(p.w, "%s: %s of %s (%s/s)%s\n", p.label, humanize.Bytes(uint64(p.done)),
		humanize.Bytes(uint64(p.total)), humanize.Bytes(uint64(rate)), suffix)
}
