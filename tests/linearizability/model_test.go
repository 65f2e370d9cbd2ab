package linearizability

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// These tests feed hand-made histories (no servers) to the checker, to
// show it tells linearizable histories from violations. Times are in ns.

const k = "k"

func op(client int, call, ret int64, in Input, out Output) porcupine.Operation {
	if in.Key == "" {
		in.Key = k
	}
	if out.Unknown {
		ret = Infinity
	}
	return porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call, Return: ret}
}

func put(v string) Input { return Input{Kind: Put, Value: v} }
func get() Input         { return Input{Kind: Get} }
func del() Input         { return Input{Kind: Delete} }
func cas(expect, v string) Input {
	return Input{Kind: CAS, Expect: expect, Value: v, ExpectAbsent: expect == ""}
}

// seen is an output observing value v at modRev (v "" = absent), with
// header revision rev.
func seen(v string, modRev, rev int64) Output {
	return Output{Found: v != "", Value: v, ModRev: modRev, Rev: rev}
}

func casOK(rev int64) Output { return Output{Succeeded: true, Rev: rev} }

var unknown = Output{Unknown: true}

func check(t *testing.T, h []porcupine.Operation) porcupine.CheckResult {
	t.Helper()
	p := Prepare(h)
	return porcupine.CheckOperationsTimeout(Model, p.Ops, 10*time.Second)
}

func TestModelIllegalHistories(t *testing.T) {
	cases := map[string][]porcupine.Operation{
		// The write was acknowledged before the read started.
		"stale read": {
			op(0, 0, 10, put("a"), seen("", 0, 2)),
			op(1, 20, 30, get(), seen("", 0, 2)),
		},
		// A read saw a value before anyone tried to write it.
		"read from the future": {
			op(1, 0, 10, get(), seen("a", 2, 2)),
			op(0, 20, 30, put("a"), unknown),
		},
		// Two CASes from the same value cannot both succeed.
		"double CAS": {
			op(0, 0, 10, put("a"), seen("", 0, 2)),
			op(1, 20, 30, cas("a", "b"), casOK(3)),
			op(2, 40, 50, cas("a", "c"), casOK(4)),
		},
		// A CAS failed although the key held the expected value (its Else
		// branch read it).
		"CAS failed on a match": {
			op(0, 0, 10, put("a"), seen("", 0, 2)),
			op(1, 20, 30, cas("a", "b"), seen("a", 2, 2)),
		},
		// A value read back with another mod revision than its write got.
		"wrong mod revision": {
			op(0, 0, 10, put("a"), seen("", 0, 5)),
			op(1, 20, 30, get(), seen("a", 6, 6)),
		},
		// Delete's previous KV disagrees with the acknowledged write.
		"delete saw old value": {
			op(0, 0, 10, put("a"), seen("", 0, 2)),
			op(0, 20, 30, put("b"), seen("a", 2, 3)),
			op(1, 40, 50, del(), seen("a", 2, 4)),
		},
		// A deleted key came back.
		"resurrected key": {
			op(0, 0, 10, put("a"), seen("", 0, 2)),
			op(1, 20, 30, del(), seen("a", 2, 3)),
			op(2, 40, 50, get(), seen("a", 2, 3)),
		},
		// A failed write's value was seen, then a later read saw the older
		// value again.
		"failed write seen then lost": {
			op(0, 0, 10, put("a"), seen("", 0, 2)),
			op(1, 20, 0, put("b"), unknown),
			op(2, 40, 50, get(), seen("b", 3, 3)),
			op(2, 60, 70, get(), seen("a", 2, 3)),
		},
		"malformed response": {
			op(0, 0, 10, del(), Output{Bad: "deleted=1 with 0 previous KVs"}),
		},
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			if got := check(t, h); got != porcupine.Illegal {
				t.Fatalf("porcupine says %v, want Illegal", got)
			}
		})
	}
}

func TestModelLegalHistories(t *testing.T) {
	cases := map[string][]porcupine.Operation{
		// A read concurrent with a write may see either value.
		"concurrent read sees old": {
			op(0, 0, 100, put("a"), seen("", 0, 2)),
			op(1, 10, 20, get(), seen("", 0, 1)),
		},
		"concurrent read sees new": {
			op(0, 0, 100, put("a"), seen("", 0, 2)),
			op(1, 10, 20, get(), seen("a", 2, 2)),
		},
		// A failed write may take effect after its client gave up.
		"failed write applied late": {
			op(0, 0, 10, put("a"), unknown),
			op(1, 20, 30, get(), seen("", 0, 1)),
			op(1, 40, 50, get(), seen("a", 2, 2)),
		},
		// Or never.
		"failed write never applied": {
			op(0, 0, 10, put("a"), unknown),
			op(1, 20, 30, get(), seen("", 0, 1)),
		},
		// A failed CAS that did apply; its value is then the expected one.
		"failed CAS applied": {
			op(0, 0, 10, put("a"), seen("", 0, 2)),
			op(1, 20, 30, cas("a", "b"), unknown),
			op(2, 40, 50, cas("b", "c"), casOK(4)),
			op(2, 60, 70, get(), seen("c", 4, 4)),
		},
		"CAS on absent key, delete": {
			op(0, 0, 10, cas("", "a"), casOK(2)),
			op(1, 20, 30, cas("", "b"), seen("a", 2, 2)),
			op(1, 40, 50, del(), seen("a", 2, 3)),
			op(0, 60, 70, del(), seen("", 0, 3)),
			op(0, 80, 90, get(), seen("", 0, 3)),
		},
		"failed delete": {
			op(0, 0, 10, put("a"), seen("", 0, 2)),
			op(1, 20, 30, del(), unknown),
			op(2, 40, 50, get(), seen("a", 2, 2)),
			op(2, 60, 70, get(), seen("", 0, 3)),
		},
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			if got := check(t, h); got != porcupine.Ok {
				t.Fatalf("porcupine says %v, want Ok", got)
			}
		})
	}
}

func TestPrepare(t *testing.T) {
	h := []porcupine.Operation{
		op(0, 0, 10, put("a"), seen("", 0, 2)),
		op(1, 5, 0, put("seen"), unknown),     // observed at 50: bounded
		op(2, 6, 0, put("unseen"), unknown),   // nobody saw it: dropped
		op(3, 7, 0, put("expected"), unknown), // a CAS expects it: stays open
		op(4, 8, 0, get(), unknown),           // failed read: dropped
		op(5, 9, 0, del(), unknown),           // stays open
		op(6, 40, 50, get(), seen("seen", 3, 3)),
		op(7, 60, 70, cas("expected", "x"), seen("seen", 3, 3)),
	}
	p := Prepare(h)
	if p.Known != 3 || p.BoundedWrites != 1 || p.DroppedWrites != 1 || p.DroppedReads != 1 || p.OpenOps != 2 || len(p.Ops) != 6 {
		t.Fatalf("Prepare: %v (%d ops)", p, len(p.Ops))
	}
	for _, o := range p.Ops {
		if o.Input.(Input).Value == "seen" && o.Return != 50 {
			t.Fatalf("observed failed write: return %d, want 50", o.Return)
		}
	}
	if r := porcupine.CheckOperationsTimeout(Model, p.Ops, 10*time.Second); r != porcupine.Ok {
		t.Fatalf("prepared history: %v, want Ok", r)
	}
}

func TestCheckRevisions(t *testing.T) {
	ok := []porcupine.Operation{
		op(0, 0, 10, put("a"), seen("", 0, 2)),
		op(1, 20, 30, Input{Kind: Get, Key: "other"}, seen("", 0, 2)),
		op(1, 25, 35, Input{Kind: Put, Key: "other", Value: "b"}, seen("", 0, 3)),
	}
	if v := CheckRevisions(ok, 10); len(v) != 0 {
		t.Fatalf("violations in a good history: %v", v)
	}
	back := []porcupine.Operation{
		op(0, 0, 10, put("a"), seen("", 0, 5)),
		op(1, 20, 30, Input{Kind: Get, Key: "other"}, seen("", 0, 4)),
	}
	if v := CheckRevisions(back, 10); len(v) != 1 || !strings.Contains(v[0], "went back") {
		t.Fatalf("revision going back: got %v", v)
	}
	dup := []porcupine.Operation{
		op(0, 0, 10, put("a"), seen("", 0, 5)),
		op(1, 0, 10, Input{Kind: Put, Key: "other", Value: "b"}, seen("", 0, 5)),
	}
	if v := CheckRevisions(dup, 10); len(v) != 1 || !strings.Contains(v[0], "twice") {
		t.Fatalf("duplicate revision: got %v", v)
	}
}

// TestCheckWritesEvidence checks that a violation is reported with its key
// and that the visualization and history dump are written.
func TestCheckWritesEvidence(t *testing.T) {
	h := []porcupine.Operation{
		op(0, 0, 10, put("a"), seen("", 0, 2)),
		op(1, 20, 30, get(), seen("", 0, 2)),
		op(0, 0, 10, Input{Kind: Put, Key: "fine", Value: "b"}, seen("", 0, 3)),
	}
	dir := t.TempDir()
	rep := Check(h, 10*time.Second, []porcupine.Annotation{{Tag: "nemesis", Start: 5, End: 15, Description: "pause m1"}}, dir, "run/1")
	if rep.Result != porcupine.Illegal || !rep.Failed() || len(rep.IllegalKeys) != 1 || rep.IllegalKeys[0] != k {
		t.Fatalf("report: result %v, illegal keys %v", rep.Result, rep.IllegalKeys)
	}
	if len(rep.Files) != 2 {
		t.Fatalf("files written: %v", rep.Files)
	}
	for _, f := range rep.Files {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Fatalf("%s: %v", f, err)
		}
	}
}
