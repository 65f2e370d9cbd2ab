package linearizability

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Recorder collects the operations of concurrent clients, with call and
// return times on one monotonic clock.
type Recorder struct {
	start time.Time

	mu    sync.Mutex
	ops   []porcupine.Operation
	procs int
	// lastWriteCall is the call time of the latest-called write that was
	// acknowledged (see LastAckedWriteCall).
	lastWriteCall int64
}

// NewRecorder returns an empty recorder whose clock starts now.
func NewRecorder() *Recorder {
	return &Recorder{start: time.Now(), lastWriteCall: -1}
}

// Now is the recorder's clock: nanoseconds since NewRecorder (monotonic).
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

// At converts a wall-clock instant to the recorder's clock.
func (r *Recorder) At(t time.Time) int64 { return int64(t.Sub(r.start)) }

// NewProcess returns a fresh porcupine client id. A client takes a new one
// after every operation with an unknown outcome, whose interval never ends
// (as Jepsen does), so the visualization shows no overlapping operations on
// one row.
func (r *Recorder) NewProcess() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.procs
	r.procs++
	return p
}

// Record adds an operation. An Unknown output gets return time Infinity;
// meta (client, endpoint, error) is shown in the visualization.
func (r *Recorder) Record(proc int, in Input, out Output, call, ret int64, meta string) {
	if out.Unknown {
		ret = Infinity
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, porcupine.Operation{ClientId: proc, Input: in, Output: out, Call: call, Return: ret, Metadata: meta})
	if !out.Unknown && in.Kind != Get && call > r.lastWriteCall {
		r.lastWriteCall = call
	}
}

// Operations returns a copy of the recorded history.
func (r *Recorder) Operations() []porcupine.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]porcupine.Operation(nil), r.ops...)
}

// LastAckedWriteCall returns the call time (Now) of the latest-called write
// (Put, CAS or Delete) that got a response, -1 if none: a value after t
// proves the cluster accepted a write issued after t.
func (r *Recorder) LastAckedWriteCall() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastWriteCall
}

// Prepared is a history made ready for checking (see Prepare).
type Prepared struct {
	Ops []porcupine.Operation
	// Recorded is the number of operations recorded; Known those with a
	// response; DroppedReads the failed Gets; DroppedWrites the failed
	// Puts/CASes whose value nothing observed; BoundedWrites the failed
	// Puts/CASes whose value was observed, so their return time is bounded;
	// OpenOps the failed operations left with return time Infinity.
	Recorded, Known, DroppedReads, DroppedWrites, BoundedWrites, OpenOps int
}

func (p Prepared) String() string {
	return fmt.Sprintf("%d operations recorded, %d with a response; of the failed: %d reads dropped, %d unobserved writes dropped, %d observed writes bounded, %d left open",
		p.Recorded, p.Known, p.DroppedReads, p.DroppedWrites, p.BoundedWrites, p.OpenOps)
}

// Prepare shrinks the failed operations of a history without changing
// whether it is linearizable, so that porcupine does not have to consider
// every failed write at every later point (the cost grows exponentially
// with the number of open operations per key):
//
//   - A failed Get says nothing: dropped.
//   - A failed Put or CAS writes a value v no other operation writes. If an
//     operation with a response observed v, the write took effect before
//     that operation returned: its return time becomes the earliest such
//     return (never earlier than its call).
//   - If nothing observed v and no CAS expects v, the failed write is
//     dropped. Why this is sound: every operation with a response observes
//     the key's state before it, so in any linearization the failed write
//     is followed, until the key is next overwritten (by a failed Put or
//     Delete), only by failed CASes expecting another value, which were
//     no-ops there and can be moved to the end (their return time is
//     Infinity and nothing observed their values). Removing the write then
//     leaves a linearization of the rest.
//   - A failed Delete writes nothing recognisable and stays open.
func Prepare(ops []porcupine.Operation) Prepared {
	p := Prepared{Recorded: len(ops)}
	observedBy := map[string]int64{} // value -> earliest return of an operation with a response that saw it
	expected := map[string]bool{}    // values some CAS compares against
	see := func(v string, ret int64) {
		if t, ok := observedBy[v]; !ok || ret < t {
			observedBy[v] = ret
		}
	}
	for _, op := range ops {
		in, out := op.Input.(Input), op.Output.(Output)
		if in.Kind == CAS && !in.ExpectAbsent {
			expected[in.Expect] = true
		}
		if out.Unknown {
			continue
		}
		if in.Kind == CAS && out.Succeeded {
			if !in.ExpectAbsent {
				see(in.Expect, op.Return)
			}
			continue
		}
		if out.Found {
			see(out.Value, op.Return)
		}
	}
	for _, op := range ops {
		in, out := op.Input.(Input), op.Output.(Output)
		if !out.Unknown {
			p.Known++
			p.Ops = append(p.Ops, op)
			continue
		}
		switch in.Kind {
		case Get:
			p.DroppedReads++
		case Put, CAS:
			if t, ok := observedBy[in.Value]; ok {
				op.Return = max(t, op.Call)
				p.BoundedWrites++
				p.Ops = append(p.Ops, op)
			} else if expected[in.Value] {
				p.OpenOps++
				p.Ops = append(p.Ops, op)
			} else {
				p.DroppedWrites++
			}
		default:
			p.OpenOps++
			p.Ops = append(p.Ops, op)
		}
	}
	return p
}

// creates reports whether an operation with a response created a revision:
// a Put, a successful CAS, or a Delete that deleted the key.
func creates(in Input, out Output) bool {
	switch in.Kind {
	case Put:
		return true
	case CAS:
		return out.Succeeded
	case Delete:
		return out.Found
	}
	return false
}

// CheckRevisions checks what the per-key model cannot see, across keys, for
// the operations with a response (all of them linearizable in etcd, whose
// header revision is the store revision at the operation's linearization
// point):
//
//   - an operation called after another returned has a header revision at
//     least as high, and strictly higher if it created a revision;
//   - no two operations created the same revision;
//   - an observed key's mod revision is not above the header revision.
//
// It returns up to limit descriptions of violations.
func CheckRevisions(ops []porcupine.Operation, limit int) []string {
	var v []string
	add := func(format string, args ...interface{}) {
		if len(v) < limit {
			v = append(v, fmt.Sprintf(format, args...))
		}
	}
	var known []porcupine.Operation
	for _, op := range ops {
		if !op.Output.(Output).Unknown {
			known = append(known, op)
		}
	}
	desc := func(op porcupine.Operation) string {
		return fmt.Sprintf("[%v..%v] %s (%v)", time.Duration(op.Call), time.Duration(op.Return), Describe(op.Input.(Input), op.Output.(Output)), op.Metadata)
	}
	created := map[int64]porcupine.Operation{}
	for _, op := range known {
		in, out := op.Input.(Input), op.Output.(Output)
		if out.Found && out.ModRev > out.Rev {
			add("mod revision above header revision: %s", desc(op))
		}
		if !creates(in, out) {
			continue
		}
		if prev, dup := created[out.Rev]; dup {
			add("revision %d created twice: %s and %s", out.Rev, desc(prev), desc(op))
		}
		created[out.Rev] = op
	}
	byReturn := append([]porcupine.Operation(nil), known...)
	sort.Slice(byReturn, func(i, j int) bool { return byReturn[i].Return < byReturn[j].Return })
	byCall := append([]porcupine.Operation(nil), known...)
	sort.Slice(byCall, func(i, j int) bool { return byCall[i].Call < byCall[j].Call })
	next, maxRev := 0, int64(-1)
	var maxOp porcupine.Operation
	for _, b := range byCall {
		for next < len(byReturn) && byReturn[next].Return < b.Call {
			if r := byReturn[next].Output.(Output).Rev; r > maxRev {
				maxRev, maxOp = r, byReturn[next]
			}
			next++
		}
		if maxRev < 0 {
			continue
		}
		in, out := b.Input.(Input), b.Output.(Output)
		if out.Rev < maxRev || (creates(in, out) && out.Rev == maxRev) {
			add("revision went back in real time: %s returned before %s was called", desc(maxOp), desc(b))
		}
	}
	return v
}

// Report is the outcome of Check.
type Report struct {
	Prepared
	Result    porcupine.CheckResult
	CheckTime time.Duration
	// IllegalKeys are the keys whose own history is not linearizable (or
	// could not be checked in time), when Result is not Ok.
	IllegalKeys []string
	// RevisionViolations are from CheckRevisions.
	RevisionViolations []string
	// Files are the visualization and history dumps written on failure.
	Files []string
}

// Failed reports whether the history was not shown linearizable.
func (r Report) Failed() bool { return r.Result != porcupine.Ok || len(r.RevisionViolations) > 0 }

// Check prepares the history, checks it with porcupine (bounded by timeout)
// and checks its revisions. If it is not shown linearizable, it writes a
// porcupine visualization (with annotations, e.g. the faults injected) and
// a text dump of the failing keys' operations into dir.
func Check(ops []porcupine.Operation, timeout time.Duration, annotations []porcupine.Annotation, dir, name string) Report {
	rep := Report{Prepared: Prepare(ops)}
	begin := time.Now()
	rep.Result = porcupine.CheckOperationsTimeout(Model, rep.Ops, timeout)
	rep.CheckTime = time.Since(begin)
	rep.RevisionViolations = CheckRevisions(rep.Ops, 20)
	if !rep.Failed() {
		return rep
	}
	// Which keys fail, each bounded on its own.
	byKey := partitionByKey(rep.Ops)
	for _, part := range byKey {
		if porcupine.CheckOperationsTimeout(Model, part, timeout) != porcupine.Ok {
			rep.IllegalKeys = append(rep.IllegalKeys, part[0].Input.(Input).Key)
		}
	}
	if dir == "" {
		return rep
	}
	_ = os.MkdirAll(dir, 0o755)
	base := filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(name))
	_, info := porcupine.CheckOperationsVerbose(Model, rep.Ops, timeout)
	info.AddAnnotations(annotations)
	if err := porcupine.VisualizePath(Model, info, base+".html"); err == nil {
		rep.Files = append(rep.Files, base+".html")
	}
	var sb strings.Builder
	for _, part := range byKey {
		key := part[0].Input.(Input).Key
		sort.Slice(part, func(i, j int) bool { return part[i].Call < part[j].Call })
		fmt.Fprintf(&sb, "== key %s: %d operations\n", key, len(part))
		for _, op := range part {
			ret := "inf"
			if op.Return != Infinity {
				ret = time.Duration(op.Return).String()
			}
			fmt.Fprintf(&sb, "%v..%s client=%d %s (%v)\n", time.Duration(op.Call), ret, op.ClientId,
				Describe(op.Input.(Input), op.Output.(Output)), op.Metadata)
		}
	}
	for _, a := range annotations {
		fmt.Fprintf(&sb, "== %s %v..%v %s %s\n", a.Tag, time.Duration(a.Start), time.Duration(a.End), a.Description, a.Details)
	}
	if err := os.WriteFile(base+".history.txt", []byte(sb.String()), 0o644); err == nil {
		rep.Files = append(rep.Files, base+".history.txt")
	}
	return rep
}
