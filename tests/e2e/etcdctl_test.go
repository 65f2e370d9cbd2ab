package e2e

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/cairn-kv/cairn/tests/framework"
)

// ctlOut is what an etcdctl run printed, normalized for comparison between
// servers: endpoint URLs and member ids replaced, "took" durations and
// etcdctl's own retry warnings removed, JSON response headers stripped of
// cluster_id/member_id/raft_term.
type ctlOut struct {
	Stdout string
	Errors string // the "Error: ..." lines of stderr
	OK     bool   // exit status 0
}

func runCtl(t *testing.T, m *framework.Member, stdin string, args ...string) ctlOut {
	t.Helper()
	stdout, stderr, err := m.EtcdctlStdin(stdin, args...)
	var errs []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "Error:") {
			errs = append(errs, l)
		}
	}
	return ctlOut{Stdout: normCtl(m, stdout), Errors: strings.Join(errs, "\n"), OK: err == nil}
}

var (
	hexIDRe  = regexp.MustCompile(`\b[0-9a-f]{14,16}\b`)
	tookRe   = regexp.MustCompile(`took = [0-9.]+[µnm]?s`)
	tookJSON = regexp.MustCompile(`"took":"[^"]*"`)
	fieldsID = regexp.MustCompile(`(?m)^"(ClusterID|MemberID|RaftTerm)" : [0-9]+$`)
)

func normCtl(m *framework.Member, s string) string {
	s = strings.ReplaceAll(s, m.ClientURL, "<client-url>")
	s = strings.ReplaceAll(s, m.PeerURL, "<peer-url>")
	s = tookRe.ReplaceAllString(s, "took = <d>")
	s = tookJSON.ReplaceAllString(s, `"took":"<d>"`)
	s = fieldsID.ReplaceAllString(s, `"$1" : <id>`)
	// JSON documents: strip identity fields from headers.
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "{") || strings.HasPrefix(l, "[") {
			var v any
			if json.Unmarshal([]byte(l), &v) == nil {
				stripIdentity(v)
				b, _ := json.Marshal(v)
				l = string(b)
			}
		}
		lines = append(lines, l)
	}
	return hexIDRe.ReplaceAllString(strings.Join(lines, "\n"), "<id>")
}

// stripIdentity replaces server-identity values (ids, terms) in decoded
// JSON with placeholders, keeping the keys.
func stripIdentity(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			switch k {
			case "cluster_id", "member_id", "raft_term", "ID", "leader", "raftTerm":
				x[k] = "<id>"
			default:
				stripIdentity(val)
			}
		}
	case []any:
		for _, e := range x {
			stripIdentity(e)
		}
	}
}

// jsonShape returns the sorted key paths of a JSON document, with leaf
// types: what must match for clients that parse etcdctl -w json output.
func jsonShape(t *testing.T, doc string) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, doc)
	}
	var out []string
	var walk func(p string, v any)
	walk = func(p string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				walk(p+"."+k, e)
			}
		case []any:
			for _, e := range x {
				walk(p+"[]", e)
			}
		default:
			out = append(out, fmt.Sprintf("%s:%T", p, v))
		}
	}
	walk("", v)
	sort.Strings(out)
	// Deduplicate array elements.
	uniq := out[:0]
	for i, s := range out {
		if i == 0 || s != out[i-1] {
			uniq = append(uniq, s)
		}
	}
	return uniq
}

// TestEtcdctlDifferential runs the same etcdctl commands against the server
// under test and the reference etcd and requires identical normalized
// output (stdout, "Error:" lines, exit status).
func TestEtcdctlDifferential(t *testing.T) {
	t.Parallel()
	p := framework.StartPair(t)
	const txnScript = `mod("t1") = "0"
value("nokey") = "x"

put t1 created
get t1

put t2 failed
get t1 --prefix

`
	const txnScript2 = `mod("t1") > "0"

del t1 --prev-kv
put t3 "with space"

get nokey

`
	cmds := []struct {
		stdin string
		args  []string
	}{
		{"", []string{"put", "foo", "bar"}},
		{"", []string{"put", "foo", "bar2", "--prev-kv"}},
		{"", []string{"put", "foo/a", "1"}},
		{"", []string{"put", "foo/b", "2"}},
		{"", []string{"get", "foo"}},
		{"", []string{"get", "foo", "-w", "json"}},
		{"", []string{"get", "foo", "--prefix", "--keys-only"}},
		{"", []string{"get", "foo", "--prefix", "--limit", "1", "-w", "json"}},
		{"", []string{"get", "foo", "--prefix", "--count-only", "-w", "json"}},
		{"", []string{"get", "foo", "--prefix", "--count-only", "-w", "fields"}},
		{"", []string{"get", "foo/", "--from-key", "--print-value-only"}},
		{"", []string{"get", "foo", "--prefix", "--sort-by", "MODIFY", "--order", "DESCEND"}},
		{"", []string{"get", "foo", "--rev", "2"}},
		{"", []string{"get", "foo", "-w", "fields"}},
		{"", []string{"get", "foo", "--consistency", "s"}},
		{"", []string{"get", "missing"}},
		{"", []string{"get", "foo", "--rev", "1000"}},
		{"", []string{"put", "foo", "x", "--ignore-value"}},
		{"", []string{"put", "nokey", "--ignore-value"}},
		{"", []string{"del", "foo/a"}},
		{"", []string{"del", "foo", "--prefix", "--prev-kv"}},
		{"", []string{"del", "nothing"}},
		{"", []string{"put", "t1", "0"}},
		{txnScript, []string{"txn", "-i"}},
		{txnScript, []string{"txn", "-i", "-w", "json"}},
		{txnScript2, []string{"txn", "-i"}},
		{"", []string{"get", "", "--prefix", "-w", "json"}},
		{"", []string{"compaction", "5"}},
		{"", []string{"compaction", "3"}},
		{"", []string{"compaction", "1000"}},
		{"", []string{"get", "t1", "--rev", "4"}},
		{"", []string{"compaction", "--physical", "7"}},
		{"", []string{"get", "", "--from-key", "-w", "json"}},
		{"", []string{"member", "list"}},
		{"", []string{"member", "list", "-w", "json"}},
		{"", []string{"endpoint", "health"}},
		{"", []string{"endpoint", "health", "-w", "json"}},
		{"", []string{"version"}},
	}
	for i, c := range cmds {
		got := runCtl(t, p.Cairn, c.stdin, c.args...)
		want := runCtl(t, p.Etcd, c.stdin, c.args...)
		t.Logf("etcdctl %v -> ok=%v\n%s%s", c.args, want.OK, want.Stdout, want.Errors)
		if got != want {
			t.Errorf("command %d `etcdctl %s` differs:\n--- %s:\nok=%v\n%s\n%s\n--- etcd:\nok=%v\n%s\n%s", i, strings.Join(c.args, " "),
				binName(p.Cairn), got.OK, got.Stdout, got.Errors, want.OK, want.Stdout, want.Errors)
		}
	}
}

// TestEtcdctlShapes checks the commands whose output is server-specific
// (sizes, indexes, ids): same shape as the reference, plausible values.
func TestEtcdctlShapes(t *testing.T) {
	t.Parallel()
	p := framework.StartPair(t, framework.Options{Flags: []string{"--quota-backend-bytes=1073741824"}})
	for _, m := range p.Members() {
		if _, _, err := m.Etcdctl("put", "k", "v"); err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	ctl := func(m *framework.Member, args ...string) string {
		t.Helper()
		out, stderr, err := m.Etcdctl(args...)
		if err != nil {
			t.Fatalf("%s: etcdctl %v: %v\n%s", binName(m), args, err, stderr)
		}
		return out
	}

	// endpoint status -w json: same key paths and types.
	for _, args := range [][]string{
		{"endpoint", "status", "-w", "json"},
		{"member", "list", "-w", "json"},
		{"endpoint", "health", "-w", "json"},
		{"get", "k", "-w", "json"},
	} {
		got, want := jsonShape(t, ctl(p.Cairn, args...)), jsonShape(t, ctl(p.Etcd, args...))
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("etcdctl %v JSON shape differs:\n--- %s:\n%s\n--- etcd:\n%s", args, binName(p.Cairn), strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}

	// endpoint status (simple): same number of fields; version and the
	// leader/learner flags are the same.
	// ENDPOINT, ID, VERSION, STORAGE VERSION, DB SIZE, IN USE, PERCENTAGE NOT IN USE, QUOTA,
	// IS LEADER, IS LEARNER, RAFT TERM, RAFT INDEX, RAFT APPLIED INDEX, ERRORS, DOWNGRADE TARGET VERSION, DOWNGRADE ENABLED
	fields := func(m *framework.Member) []string {
		return strings.Split(strings.TrimSpace(ctl(m, "endpoint", "status")), ", ")
	}
	got, want := fields(p.Cairn), fields(p.Etcd)
	if len(got) != len(want) {
		t.Fatalf("endpoint status: %d fields %q, etcd has %d %q", len(got), got, len(want), want)
	}
	if want[7] != "1.1 GB" {
		t.Errorf("etcd endpoint status quota %q with --quota-backend-bytes=1073741824, want 1.1 GB", want[7])
	}
	for _, i := range []int{2, 3, 7, 8, 9, 13, 14, 15} {
		if got[i] != want[i] {
			t.Errorf("endpoint status field %d: %q, etcd %q (all: %q vs %q)", i, got[i], want[i], got, want)
		}
	}
	if got[0] != p.Cairn.ClientURL || !hexIDRe.MatchString(got[1]) {
		t.Errorf("endpoint status endpoint/id: %q", got[:2])
	}

	// The status values agree with the header and the member list.
	var st []struct {
		Endpoint string
		Status   struct {
			Header struct {
				ClusterID uint64 `json:"cluster_id"`
				MemberID  uint64 `json:"member_id"`
				Revision  int64  `json:"revision"`
				RaftTerm  uint64 `json:"raft_term"`
			} `json:"header"`
			Version          string `json:"version"`
			DBSize           int64  `json:"dbSize"`
			Leader           uint64 `json:"leader"`
			RaftIndex        uint64 `json:"raftIndex"`
			RaftTerm         uint64 `json:"raftTerm"`
			RaftAppliedIndex uint64 `json:"raftAppliedIndex"`
			DBSizeInUse      int64  `json:"dbSizeInUse"`
		} `json:"Status"`
	}
	if err := json.Unmarshal([]byte(ctl(p.Cairn, "endpoint", "status", "-w", "json")), &st); err != nil || len(st) != 1 {
		t.Fatalf("endpoint status json: %v %v", st, err)
	}
	s := st[0].Status
	if s.Version != "3.6.16" || s.Leader != s.Header.MemberID || s.Leader == 0 || s.RaftTerm != s.Header.RaftTerm ||
		s.RaftIndex == 0 || s.RaftAppliedIndex == 0 || s.DBSize <= 0 || s.DBSizeInUse <= 0 || s.DBSizeInUse > s.DBSize || s.Header.Revision != 2 {
		t.Errorf("endpoint status values implausible: %+v", s)
	}

	// member list (simple): "<id>, started, m1, <peer>, <client>, false".
	ml := strings.TrimSpace(ctl(p.Cairn, "member", "list"))
	wantML := fmt.Sprintf(", started, m1, %s, %s, false", p.Cairn.PeerURL, p.Cairn.ClientURL)
	if !strings.HasSuffix(ml, wantML) || !hexIDRe.MatchString(strings.TrimSuffix(ml, wantML)) {
		t.Errorf("member list: %q, want <hex id>%s", ml, wantML)
	}
	if id := strings.TrimSuffix(ml, wantML); id != fmt.Sprintf("%x", s.Header.MemberID) {
		t.Errorf("member list id %s, status member_id %x", id, s.Header.MemberID)
	}

	// endpoint health (simple).
	eh := strings.TrimSpace(ctl(p.Cairn, "endpoint", "health"))
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(p.Cairn.ClientURL) + ` is healthy: successfully committed proposal: took = [0-9.]+[µnm]?s$`).MatchString(eh) {
		t.Errorf("endpoint health: %q", eh)
	}

	// version (client-side).
	if v := ctl(p.Cairn, "version"); !strings.HasPrefix(v, "etcdctl version: 3.6.16\nAPI version: 3.6") {
		t.Errorf("etcdctl version: %q", v)
	}
}
