// Package linearizability records concurrent etcd KV histories (Get, Put,
// Txn compare-and-swap, Delete on a small key set) and checks them with
// porcupine against a sequential model of one etcd key.
//
// Every operation observes the key's state before it (Get: the value;
// Put and Delete: the previous KV through WithPrevKV; a failed CAS: the
// value read by its Else branch; a successful CAS: the expected value), and
// every written value is unique, so a stale read, a lost or duplicated
// write or a CAS on a stale value shows up as a history no order of the
// operations explains. Operations touch one key each, so the history is
// checked per key (porcupine's P-compositionality), which keeps checking in
// the order of seconds. Revisions are checked by CheckRevisions, across keys.
package linearizability

import (
	"fmt"
	"hash/fnv"
	"math"
	"sort"

	"github.com/anishathalye/porcupine"
)

// Kind is an operation type.
type Kind uint8

// Operation kinds.
const (
	Get Kind = iota
	Put
	CAS
	Delete
)

func (k Kind) String() string {
	switch k {
	case Get:
		return "get"
	case Put:
		return "put"
	case CAS:
		return "cas"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Infinity is the return time of an operation whose outcome is unknown (its
// request failed or timed out, so it may or may not have been applied, at
// any time after its call): porcupine may then linearize it anywhere after
// its call, including after everything else, which is the same as "never
// applied" for the operations that were observed.
const Infinity = int64(math.MaxInt64)

// Input is what an operation asked for.
type Input struct {
	Kind Kind
	Key  string
	// Value is the value a Put writes, or the value a successful CAS writes.
	// Values are unique across the history.
	Value string
	// Expect is the value a CAS compares against; ExpectAbsent makes it
	// compare "key does not exist" (Version == 0) instead.
	Expect       string
	ExpectAbsent bool
}

// Output is what an operation observed. A zero Output with Unknown set is an
// operation whose request failed: it may or may not have taken effect.
type Output struct {
	Unknown bool
	// Found, Value and ModRev describe the key as the operation saw it: for
	// Get the value read, for Put and Delete the previous KV, for a failed
	// CAS the value read by its Else branch. Unused for a successful CAS.
	Found  bool
	Value  string
	ModRev int64
	// Succeeded is a CAS's Txn.Succeeded.
	Succeeded bool
	// Rev is the response header's revision.
	Rev int64
	// Bad, when non-empty, says the response was malformed in a way the
	// model cannot express (e.g. Delete reporting Deleted=1 without a
	// previous KV); the operation is then illegal in every state.
	Bad string
}

// State is the model's state of one key. ModRev 0 with Exists means the
// value was written by an operation with an unknown outcome, whose revision
// was never seen; the next read of it fixes it.
type State struct {
	Exists bool
	Value  string
	ModRev int64
}

func (s State) String() string {
	if !s.Exists {
		return "<absent>"
	}
	if s.ModRev == 0 {
		return fmt.Sprintf("%q@?", s.Value)
	}
	return fmt.Sprintf("%q@%d", s.Value, s.ModRev)
}

// observes reports whether the observation (found, value, modRev) is the
// key's state s; a state whose revision is unknown accepts any revision.
func observes(s State, found bool, value string, modRev int64) bool {
	if s.Exists != found {
		return false
	}
	if !found {
		return true
	}
	return s.Value == value && (s.ModRev == 0 || s.ModRev == modRev)
}

// casMatches reports whether a CAS compare on in succeeds in state s. A Value
// compare on a missing key fails in etcd.
func casMatches(s State, in Input) bool {
	if in.ExpectAbsent {
		return !s.Exists
	}
	return s.Exists && s.Value == in.Expect
}

// Step is the sequential specification of one key.
func Step(s State, in Input, out Output) (bool, State) {
	if out.Bad != "" {
		return false, s
	}
	if out.Unknown {
		// The operation may have taken effect here; porcupine also
		// considers "later" (its return time is Infinity), which covers
		// "never", so a deterministic step is enough.
		switch in.Kind {
		case Put:
			return true, State{Exists: true, Value: in.Value}
		case Delete:
			return true, State{}
		case CAS:
			if casMatches(s, in) {
				return true, State{Exists: true, Value: in.Value}
			}
			return true, s
		default: // a Get with no result says nothing
			return true, s
		}
	}
	switch in.Kind {
	case Get:
		if !observes(s, out.Found, out.Value, out.ModRev) {
			return false, s
		}
		// Learn the revision of a value written with an unknown outcome.
		return true, State{Exists: out.Found, Value: out.Value, ModRev: out.ModRev}
	case Put:
		if !observes(s, out.Found, out.Value, out.ModRev) {
			return false, s
		}
		return true, State{Exists: true, Value: in.Value, ModRev: out.Rev}
	case Delete:
		if !observes(s, out.Found, out.Value, out.ModRev) {
			return false, s
		}
		return true, State{}
	case CAS:
		if out.Succeeded {
			if !casMatches(s, in) {
				return false, s
			}
			return true, State{Exists: true, Value: in.Value, ModRev: out.Rev}
		}
		if casMatches(s, in) || !observes(s, out.Found, out.Value, out.ModRev) {
			return false, s
		}
		return true, State{Exists: out.Found, Value: out.Value, ModRev: out.ModRev}
	}
	return false, s
}

// Model is the porcupine model of an etcd key space whose operations each
// touch one key, partitioned by key.
var Model = porcupine.Model{
	Partition: partitionByKey,
	Init:      func() interface{} { return State{} },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		ok, next := Step(state.(State), input.(Input), output.(Output))
		return ok, next
	},
	Equal: func(a, b interface{}) bool { return a.(State) == b.(State) },
	Hash: func(state interface{}) uint64 {
		s := state.(State)
		h := fnv.New64a()
		fmt.Fprintf(h, "%t|%s|%d", s.Exists, s.Value, s.ModRev)
		return h.Sum64()
	},
	DescribeOperation: func(input, output interface{}) string {
		return Describe(input.(Input), output.(Output))
	},
	DescribeState: func(state interface{}) string { return state.(State).String() },
}

// partitionByKey splits the history by key: every operation reads and
// writes exactly one key, so the history is linearizable iff each key's is.
func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	for _, op := range history {
		k := op.Input.(Input).Key
		byKey[k] = append(byKey[k], op)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][]porcupine.Operation, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k])
	}
	return out
}

// Describe renders an operation for logs and the visualization.
func Describe(in Input, out Output) string {
	var s string
	switch in.Kind {
	case CAS:
		exp := fmt.Sprintf("%q", in.Expect)
		if in.ExpectAbsent {
			exp = "<absent>"
		}
		s = fmt.Sprintf("cas(%s, %s -> %q)", in.Key, exp, in.Value)
	case Put:
		s = fmt.Sprintf("put(%s, %q)", in.Key, in.Value)
	default:
		s = fmt.Sprintf("%s(%s)", in.Kind, in.Key)
	}
	if out.Unknown {
		return s + " -> unknown"
	}
	seen := "<absent>"
	if out.Found {
		seen = fmt.Sprintf("%q@%d", out.Value, out.ModRev)
	}
	switch {
	case in.Kind == CAS && out.Succeeded:
		s += " -> ok"
	case in.Kind == CAS:
		s += " -> failed, saw " + seen
	case in.Kind == Get:
		s += " -> " + seen
	default:
		s += " prev=" + seen
	}
	s += fmt.Sprintf(" rev=%d", out.Rev)
	if out.Bad != "" {
		s += " BAD: " + out.Bad
	}
	return s
}
