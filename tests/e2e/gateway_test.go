package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	"github.com/gorilla/websocket"
)

// b64 is how etcd's gateway JSON carries bytes.
func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// gwStep is one HTTP request of the gateway script, sent to both servers.
type gwStep struct {
	name   string
	method string // POST unless set
	path   string
	body   string            // {member}, {learner}, {leader} are replaced by the side's values
	header map[string]string // extra request headers
	blank  []string          // response keys whose values legitimately differ
	stream bool              // the answer is grpc-gateway's newline-delimited stream
	// pending names an RPC Cairn does not serve yet: its answer "method <pending> not
	// implemented" (501, code 12) is accepted from Cairn; any other answer is compared.
	pending string
	// capture reads values later steps use from the (raw) answer.
	capture func(s *gwSide, body string) error
	// check normalizes a stream answer in a step-specific way (the snapshot's blobs).
	check func(body string) (string, error)
}

// gwSide is one server of the pair and the values its answers are normalized with.
type gwSide struct {
	m     *framework.Member
	hc    *http.Client
	names map[string]string // server-specific values -> placeholders
	vars  map[string]string // template values for request bodies
}

func newGWSide(t *testing.T, m *framework.Member) *gwSide {
	t.Helper()
	s := &gwSide{
		m:     m,
		hc:    &http.Client{Timeout: opTimeout},
		names: map[string]string{m.ClientURL: "<client-url>", m.PeerURL: "<peer-url>"},
		vars:  map[string]string{},
	}
	code, _, body := s.post(t, http.MethodPost, "/v3/maintenance/status", "{}", nil)
	var st struct {
		Header struct {
			ClusterID string `json:"cluster_id"`
			MemberID  string `json:"member_id"`
		} `json:"header"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != http.StatusOK || st.Header.MemberID == "" {
		t.Fatalf("%s: /v3/maintenance/status: %d %q (%v)", m.Name, code, body, err)
	}
	s.names[st.Header.MemberID] = "<member>"
	s.names[st.Header.ClusterID] = "<cluster>"
	s.vars["member"] = st.Header.MemberID
	return s
}

func (s *gwSide) url(path string) string { return s.m.ClientURL + path }

func (s *gwSide) expand(body string) string {
	for k, v := range s.vars {
		body = strings.ReplaceAll(body, "{"+k+"}", v)
	}
	return body
}

// post sends one request and returns status, the headers that matter, and the body.
func (s *gwSide) post(t *testing.T, method, path, body string, header map[string]string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), method, s.url(path), strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		t.Fatalf("%s: %s %s: %v", s.m.Name, method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		t.Fatalf("%s: %s %s: read body: %v", s.m.Name, method, path, err)
	}
	return resp.StatusCode, gwHeaders(resp.Header), string(b)
}

// gwHeaders renders the response headers both servers must agree on.
func gwHeaders(h http.Header) string {
	var out []string
	for _, k := range []string{"Content-Type", "Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers"} {
		out = append(out, k+": "+strings.Join(h.Values(k), ","))
	}
	return strings.Join(out, "; ")
}

func (s *gwSide) norm(body string, blank []string) (string, error) {
	return framework.NormalizeJSON(body, framework.JSONNorm{Names: s.names, Blank: blank})
}

// normStream normalizes each line of a stream answer.
func (s *gwSide) normStream(body string, blank []string) (string, error) {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		n, err := s.norm(l, blank)
		if err != nil {
			return "", err
		}
		out = append(out, n)
	}
	return strings.Join(out, "\n"), nil
}

// run sends st and returns the normalized outcome (status, headers, body), and the raw
// body.
func (s *gwSide) run(t *testing.T, st gwStep) (string, string) {
	t.Helper()
	method := st.method
	if method == "" {
		method = http.MethodPost
	}
	code, hdr, body := s.post(t, method, st.path, s.expand(st.body), st.header)
	// Capture first: a value it names (the learner's ID) is normalized in this answer too.
	if st.capture != nil && code == http.StatusOK {
		if err := st.capture(s, body); err != nil {
			t.Fatalf("%s: step %q: capture from %q: %v", s.m.Name, st.name, body, err)
		}
	}
	var (
		n   string
		err error
	)
	switch {
	case body == "":
		n = ""
	case st.check != nil:
		n, err = st.check(body)
	case st.stream:
		n, err = s.normStream(body, st.blank)
	default:
		n, err = s.norm(body, st.blank)
	}
	if err != nil {
		t.Fatalf("%s: step %q: %v", s.m.Name, st.name, err)
	}
	return fmt.Sprintf("%d [%s] %s", code, hdr, n), body
}

// captureJSON stores the JSON value at path (object keys) of body, re-encoded, as var
// name; a string value is stored as is (and, with placeholder set, normalized to it).
func captureJSON(name, placeholder string, path ...string) func(s *gwSide, body string) error {
	return func(s *gwSide, body string) error {
		var v any
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			return err
		}
		for _, p := range path {
			m, ok := v.(map[string]any)
			if !ok {
				return fmt.Errorf("no %q in %v", p, v)
			}
			v = m[p]
		}
		switch x := v.(type) {
		case nil:
			return fmt.Errorf("no %v in the answer", path)
		case string:
			s.vars[name] = x
			if placeholder != "" {
				s.names[x] = placeholder
			}
		default:
			b, _ := json.Marshal(x)
			s.vars[name] = string(b)
		}
		return nil
	}
}

// snapshotShape checks a /v3/maintenance/snapshot stream (the db's bytes in chunks,
// then its SHA-256 in a message of its own) and returns what both servers must agree
// on: the blobs themselves are each server's own db file.
func snapshotShape(body string) (string, error) {
	var lines []string
	for _, l := range strings.Split(body, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) < 2 {
		return "", fmt.Errorf("snapshot stream has %d messages, want chunks and a checksum", len(lines))
	}
	var versions []string
	for i, l := range lines {
		var m struct {
			Result struct {
				RemainingBytes string `json:"remaining_bytes"`
				Blob           []byte `json:"blob"`
				Version        string `json:"version"`
			} `json:"result"`
		}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			return "", fmt.Errorf("snapshot message %d %q: %w", i, l, err)
		}
		last := i == len(lines)-1
		if last && (len(m.Result.Blob) != 32 || m.Result.RemainingBytes != "") {
			return "", fmt.Errorf("last snapshot message: %d-byte blob, remaining_bytes %q; want a 32-byte SHA-256 and none", len(m.Result.Blob), m.Result.RemainingBytes)
		}
		if !last && len(m.Result.Blob) == 0 {
			return "", fmt.Errorf("snapshot message %d has no data", i)
		}
		if i == 0 && !strings.HasPrefix(l, `{"result":`) {
			return "", fmt.Errorf("snapshot message %q is not a stream result", l)
		}
		versions = append(versions, m.Result.Version)
	}
	return fmt.Sprintf("chunks+checksum, versions of first and last: %s %s", versions[0], versions[len(versions)-1]), nil
}

// gwScript is the request sequence of TestGatewayDifferential. Both servers start
// fresh and get the same requests, so revisions agree; lease IDs are chosen here.
func gwScript() []gwStep {
	statusBlank := []string{"dbSize", "dbSizeInUse", "raftIndex", "raftAppliedIndex", "raftTerm"}
	return []gwStep{
		// KV.
		{name: "put a", path: "/v3/kv/put", body: fmt.Sprintf(`{"key":%q,"value":%q}`, b64("a"), b64("1"))},
		{name: "put b prev_kv", path: "/v3/kv/put", body: fmt.Sprintf(`{"key":%q,"value":%q,"prev_kv":true}`, b64("b"), b64("2"))},
		{name: "put a again prev_kv", path: "/v3/kv/put", body: fmt.Sprintf(`{"key":%q,"value":%q,"prev_kv":true}`, b64("a"), b64("11"))},
		{name: "range a", path: "/v3/kv/range", body: fmt.Sprintf(`{"key":%q}`, b64("a"))},
		{name: "range all sorted desc", path: "/v3/kv/range", body: fmt.Sprintf(`{"key":%q,"range_end":%q,"sort_order":"DESCEND","sort_target":"KEY"}`, b64("\x00"), b64("\x00"))},
		{name: "range count_only", path: "/v3/kv/range", body: fmt.Sprintf(`{"key":%q,"range_end":%q,"count_only":true}`, b64("a"), b64("z"))},
		{name: "range limit 1 (more)", path: "/v3/kv/range", body: fmt.Sprintf(`{"key":%q,"range_end":%q,"limit":"1"}`, b64("a"), b64("z"))},
		{name: "range at revision 2", path: "/v3/kv/range", body: fmt.Sprintf(`{"key":%q,"revision":"2"}`, b64("a"))},
		{name: "range unknown fields ignored, enum by number", path: "/v3/kv/range", body: fmt.Sprintf(`{"key":%q,"no_such_field":1,"sort_order":1}`, b64("a"))},
		{name: "range with Authorization header", path: "/v3/kv/range", body: fmt.Sprintf(`{"key":%q}`, b64("a")), header: map[string]string{"Authorization": "not-a-token"}},
		{name: "/v3beta/ alias", path: "/v3beta/kv/range", body: fmt.Sprintf(`{"key":%q}`, b64("b"))},
		{name: "deleterange b prev_kv", path: "/v3/kv/deleterange", body: fmt.Sprintf(`{"key":%q,"prev_kv":true}`, b64("b"))},
		{name: "deleterange missing", path: "/v3/kv/deleterange", body: fmt.Sprintf(`{"key":%q}`, b64("nope"))},
		{name: "txn success", path: "/v3/kv/txn", body: fmt.Sprintf(`{"compare":[{"key":%q,"target":"VALUE","result":"EQUAL","value":%q}],`+
			`"success":[{"request_put":{"key":%q,"value":%q}},{"request_range":{"key":%q}}],"failure":[{"request_delete_range":{"key":%q}}]}`,
			b64("a"), b64("11"), b64("c"), b64("3"), b64("a"), b64("a"))},
		{name: "txn failure", path: "/v3/kv/txn", body: fmt.Sprintf(`{"compare":[{"key":%q,"target":"VERSION","result":"GREATER","version":"10"}],`+
			`"success":[{"request_put":{"key":%q,"value":%q}}],"failure":[{"request_range":{"key":%q,"range_end":%q}}]}`,
			b64("a"), b64("never"), b64("x"), b64("a"), b64("z"))},
		{name: "txn duplicate key error", path: "/v3/kv/txn", body: fmt.Sprintf(`{"success":[{"request_put":{"key":%q,"value":%q}},{"request_put":{"key":%q,"value":%q}}]}`,
			b64("d"), b64("1"), b64("d"), b64("2"))},
		{name: "range empty key error", path: "/v3/kv/range", body: `{"key":""}`},
		{name: "range no body error", path: "/v3/kv/range", body: ``},
		{name: "put empty key error", path: "/v3/kv/put", body: fmt.Sprintf(`{"value":%q}`, b64("x"))},
		{name: "put over --max-request-bytes error", path: "/v3/kv/put", body: fmt.Sprintf(`{"key":%q,"value":%q}`, b64("big"), b64(strings.Repeat("x", 1600*1024)))},
		{name: "put over the gRPC receive limit error", path: "/v3/kv/put", body: fmt.Sprintf(`{"key":%q,"value":%q}`, b64("big"), b64(strings.Repeat("x", 3<<20)))},
		{name: "range future revision error", path: "/v3/kv/range", body: fmt.Sprintf(`{"key":%q,"revision":"100"}`, b64("a"))},
		{name: "put with missing lease error", path: "/v3/kv/put", body: fmt.Sprintf(`{"key":%q,"value":%q,"lease":"999"}`, b64("l"), b64("x"))},
		{name: "compaction future revision error", path: "/v3/kv/compaction", body: `{"revision":"100"}`},
		{name: "compaction", path: "/v3/kv/compaction", body: `{"revision":"4","physical":true}`},
		{name: "range compacted revision error", path: "/v3/kv/range", body: fmt.Sprintf(`{"key":%q,"revision":"2"}`, b64("a"))},
		{name: "compaction compacted revision error", path: "/v3/kv/compaction", body: `{"revision":"3"}`},
		// The gateway's own errors.
		{name: "unknown path", path: "/v3/kv/nope", body: `{}`},
		{name: "GET method", method: http.MethodGet, path: "/v3/kv/range"},
		{name: "OPTIONS (CORS preflight)", method: http.MethodOptions, path: "/v3/kv/range"},
		{name: "invalid JSON", path: "/v3/kv/range", body: `{"key":`},
		{name: "bad base64", path: "/v3/kv/range", body: `{"key":"!!"}`},
		{name: "int64 as a JSON number", path: "/v3/kv/range", body: fmt.Sprintf(`{"key":%q,"limit":1}`, b64("a"))},
		{name: "wrong type", path: "/v3/kv/range", body: `{"key":5}`},

		// Lease, with the /v3/kv/lease/ aliases.
		{name: "lease grant", path: "/v3/lease/grant", body: `{"ID":"100","TTL":"60"}`},
		{name: "lease grant existing error", path: "/v3/lease/grant", body: `{"ID":"100","TTL":"60"}`},
		{name: "lease grant 101", path: "/v3/lease/grant", body: `{"ID":"101","TTL":"60"}`},
		{name: "put with lease", path: "/v3/kv/put", body: fmt.Sprintf(`{"key":%q,"value":%q,"lease":"100"}`, b64("leased"), b64("v"))},
		{name: "lease timetolive keys", path: "/v3/lease/timetolive", body: `{"ID":"100","keys":true}`, blank: []string{"TTL"}},
		{name: "lease timetolive (kv alias)", path: "/v3/kv/lease/timetolive", body: `{"ID":"101"}`, blank: []string{"TTL"}},
		{name: "lease timetolive missing", path: "/v3/lease/timetolive", body: `{"ID":"555"}`},
		{name: "lease leases", path: "/v3/lease/leases", body: `{}`},
		{name: "lease leases (kv alias)", path: "/v3/kv/lease/leases", body: `{}`},
		{name: "lease keepalive", path: "/v3/lease/keepalive", body: `{"ID":"100"}`, stream: true},
		{name: "lease keepalive two requests", path: "/v3/lease/keepalive", body: `{"ID":"100"} {"ID":"101"}`, stream: true},
		{name: "lease keepalive missing", path: "/v3/lease/keepalive", body: `{"ID":"555"}`, stream: true},
		{name: "lease revoke (kv alias)", path: "/v3/kv/lease/revoke", body: `{"ID":"101"}`},
		{name: "lease revoke missing error", path: "/v3/lease/revoke", body: `{"ID":"101"}`},
		{name: "range leased key", path: "/v3/kv/range", body: fmt.Sprintf(`{"key":%q}`, b64("leased"))},

		// Cluster. The learner's peer URL is the same on both; its ID is not.
		{name: "member list", path: "/v3/cluster/member/list", body: `{}`},
		{name: "member add learner", path: "/v3/cluster/member/add", body: `{"peerURLs":["http://127.0.0.1:1"],"isLearner":true}`,
			capture: captureJSON("learner", "<learner>", "member", "ID")},
		{name: "member add bad URL error", path: "/v3/cluster/member/add", body: `{"peerURLs":["127.0.0.1:1"]}`},
		{name: "member update learner", path: "/v3/cluster/member/update", body: `{"ID":"{learner}","peerURLs":["http://127.0.0.1:2"]}`},
		{name: "member promote learner not in sync error", path: "/v3/cluster/member/promote", body: `{"ID":"{learner}"}`},
		{name: "member list linearizable", path: "/v3/cluster/member/list", body: `{"linearizable":true}`},
		{name: "member remove learner", path: "/v3/cluster/member/remove", body: `{"ID":"{learner}"}`},
		{name: "member remove missing error", path: "/v3/cluster/member/remove", body: `{"ID":"{learner}"}`},
		{name: "member promote voter error", path: "/v3/cluster/member/promote", body: `{"ID":"{member}"}`},

		// Maintenance.
		{name: "status", path: "/v3/maintenance/status", body: `{}`, blank: statusBlank},
		{name: "alarm get", path: "/v3/maintenance/alarm", body: `{"action":"GET"}`},
		{name: "alarm activate NOSPACE", path: "/v3/maintenance/alarm", body: `{"action":"ACTIVATE","memberID":"{member}","alarm":"NOSPACE"}`},
		{name: "put under NOSPACE error", path: "/v3/kv/put", body: fmt.Sprintf(`{"key":%q,"value":%q}`, b64("a"), b64("x"))},
		{name: "alarm get NOSPACE", path: "/v3/maintenance/alarm", body: `{}`},
		{name: "status with alarm", path: "/v3/maintenance/status", body: `{}`, blank: statusBlank},
		{name: "alarm deactivate", path: "/v3/maintenance/alarm", body: `{"action":"DEACTIVATE","memberID":"{member}","alarm":"NOSPACE"}`},
		{name: "defragment", path: "/v3/maintenance/defragment", body: `{}`},
		{name: "hash", path: "/v3/maintenance/hash", body: `{}`, blank: []string{"hash"}, pending: "Hash"},
		{name: "hashkv", path: "/v3/maintenance/hashkv", body: `{"revision":"0"}`},
		{name: "hashkv compacted error", path: "/v3/maintenance/hashkv", body: `{"revision":"2"}`},
		{name: "snapshot", path: "/v3/maintenance/snapshot", body: `{}`, check: snapshotShape},
		{name: "transfer-leadership bad target error", path: "/v3/maintenance/transfer-leadership", body: `{"targetID":"1"}`},
		{name: "downgrade validate", path: "/v3/maintenance/downgrade", body: `{"action":"VALIDATE","version":"3.5"}`, pending: "Downgrade"},

		// Auth: read-only calls only, so histories stay the same while Cairn has no Auth.
		{name: "auth status", path: "/v3/auth/status", body: `{}`, pending: "AuthStatus"},
		{name: "auth authenticate", path: "/v3/auth/authenticate", body: `{"name":"root","password":"x"}`, pending: "Authenticate"},
		{name: "auth user list", path: "/v3/auth/user/list", body: `{}`, pending: "UserList"},
		{name: "auth user get missing", path: "/v3/auth/user/get", body: `{"name":"nobody"}`, pending: "UserGet"},
		{name: "auth role list", path: "/v3/auth/role/list", body: `{}`, pending: "RoleList"},

		// Lock and Election, on a lease of the script's (so keys are the same).
		{name: "lease grant 200", path: "/v3/lease/grant", body: `{"ID":"200","TTL":"60"}`},
		{name: "lock", path: "/v3/lock/lock", body: fmt.Sprintf(`{"name":%q,"lease":"200"}`, b64("lk")), capture: captureJSON("lockkey", "", "key")},
		{name: "unlock", path: "/v3/lock/unlock", body: `{"key":"{lockkey}"}`},
		{name: "lock missing lease error", path: "/v3/lock/lock", body: fmt.Sprintf(`{"name":%q,"lease":"999"}`, b64("lk"))},
		{name: "election leader none error", path: "/v3/election/leader", body: fmt.Sprintf(`{"name":%q}`, b64("el"))},
		{name: "election campaign", path: "/v3/election/campaign", body: fmt.Sprintf(`{"name":%q,"lease":"200","value":%q}`, b64("el"), b64("v1")),
			capture: captureJSON("leader", "", "leader")},
		{name: "election proclaim", path: "/v3/election/proclaim", body: fmt.Sprintf(`{"leader":{leader},"value":%q}`, b64("v2"))},
		{name: "election leader", path: "/v3/election/leader", body: fmt.Sprintf(`{"name":%q}`, b64("el"))},
		{name: "election resign", path: "/v3/election/resign", body: `{"leader":{leader}}`},
		{name: "election proclaim after resign error", path: "/v3/election/proclaim", body: fmt.Sprintf(`{"leader":{leader},"value":%q}`, b64("v3"))},
		{name: "range all at the end", path: "/v3/kv/range", body: fmt.Sprintf(`{"key":%q,"range_end":%q}`, b64("\x00"), b64("\x00"))},
	}
}

// TestGatewayDifferential sends the same HTTP/JSON requests to etcd's gateway paths
// on Cairn and on etcd, fresh members both, and requires the same status, headers and
// JSON (after normalizing member IDs, URLs, raft terms and sizes), errors included.
func TestGatewayDifferential(t *testing.T) {
	t.Parallel()
	p := framework.StartPair(t)
	sut, ref := newGWSide(t, p.Cairn), newGWSide(t, p.Etcd)
	mismatches := 0
	for i, st := range gwScript() {
		got, gotRaw := sut.run(t, st)
		want, _ := ref.run(t, st)
		t.Logf("step %d %q: %s", i, st.name, want)
		if st.pending != "" && !framework.AgainstEtcd() &&
			strings.HasPrefix(got, "501 ") && strings.Contains(gotRaw, `"method `+st.pending+` not implemented"`) {
			t.Logf("step %d %q: Cairn does not serve %s yet: %s", i, st.name, st.pending, got)
			continue
		}
		if got != want {
			mismatches++
			t.Errorf("step %d %q differs:\n  %s: %s\n  etcd: %s", i, st.name, binName(p.Cairn), got, want)
		}
		if mismatches >= 10 {
			t.Fatalf("stopping after %d mismatches", mismatches)
		}
	}

	t.Run("watch", func(t *testing.T) { gwWatchDiff(t, sut, ref) })
	t.Run("observe", func(t *testing.T) { gwObserveDiff(t, sut, ref) })
	t.Run("websocket", func(t *testing.T) { gwWebsocketDiff(t, sut, ref) })
	t.Run("curl", func(t *testing.T) { gwCurlDiff(t, sut, ref) })
}

// gwStream is an open streaming request (watch, observe).
type gwStream struct {
	cancel context.CancelFunc
	body   io.ReadCloser
	lines  chan string
}

func openStream(t *testing.T, s *gwSide, path, body string) *gwStream {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 2*opTimeout)
	req, err := http.NewRequestWithContext(c, http.MethodPost, s.url(path), strings.NewReader(body))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	// No client timeout: the answer is a stream that stays open.
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		cancel()
		t.Fatalf("%s: POST %s: %v", s.m.Name, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("%s: POST %s: %d %q", s.m.Name, path, resp.StatusCode, b)
	}
	gs := &gwStream{cancel: cancel, body: resp.Body, lines: make(chan string, 16)}
	go func() {
		defer close(gs.lines)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) != "" {
				gs.lines <- sc.Text()
			}
		}
	}()
	t.Cleanup(gs.close)
	return gs
}

func (gs *gwStream) close() {
	gs.cancel()
	gs.body.Close()
}

// next returns the stream's next message, normalized.
func (gs *gwStream) next(t *testing.T, s *gwSide, what string) string {
	t.Helper()
	select {
	case l, ok := <-gs.lines:
		if !ok {
			t.Fatalf("%s: %s: stream ended", s.m.Name, what)
		}
		n, err := s.norm(l, nil)
		if err != nil {
			t.Fatalf("%s: %s: %v", s.m.Name, what, err)
		}
		return n
	case <-time.After(opTimeout):
		t.Fatalf("%s: %s: no message within %v", s.m.Name, what, opTimeout)
		return ""
	}
}

func compareGW(t *testing.T, what, got, want string) {
	t.Helper()
	t.Logf("%s: %s", what, want)
	if got != want {
		t.Errorf("%s differs:\n  sut:  %s\n  etcd: %s", what, got, want)
	}
}

// gwWatchDiff: /v3/watch streams on both; a put through the gateway reaches each as an
// event; a watch from a compacted revision is cancelled with the compact revision.
func gwWatchDiff(t *testing.T, sut, ref *gwSide) {
	create := fmt.Sprintf(`{"create_request":{"key":%q,"prev_kv":true}}`, b64("w"))
	sides := []*gwSide{sut, ref}
	streams := make([]*gwStream, 2)
	created := make([]string, 2)
	for i, s := range sides {
		streams[i] = openStream(t, s, "/v3/watch", create)
		created[i] = streams[i].next(t, s, "watch created")
	}
	compareGW(t, "watch created", created[0], created[1])

	puts := make([]string, 2)
	events := make([]string, 2)
	for i, s := range sides {
		puts[i], _ = s.run(t, gwStep{name: "put w", path: "/v3/kv/put", body: fmt.Sprintf(`{"key":%q,"value":%q}`, b64("w"), b64("1"))})
		events[i] = streams[i].next(t, s, "watch event")
	}
	compareGW(t, "put w", puts[0], puts[1])
	compareGW(t, "watch event", events[0], events[1])
	for i, s := range sides {
		s.run(t, gwStep{name: "put w again", path: "/v3/kv/put", body: fmt.Sprintf(`{"key":%q,"value":%q}`, b64("w"), b64("2"))})
		events[i] = streams[i].next(t, s, "watch event with prev_kv")
		streams[i].close()
	}
	compareGW(t, "watch event with prev_kv", events[0], events[1])

	// From a compacted revision (the script compacted at 4): created, then cancelled.
	old := fmt.Sprintf(`{"create_request":{"key":%q,"start_revision":"2"}}`, b64("a"))
	for i, s := range sides {
		st := openStream(t, s, "/v3/watch", old)
		created[i] = st.next(t, s, "compacted watch created") + "\n" + st.next(t, s, "compacted watch cancelled")
		st.close()
	}
	compareGW(t, "watch from a compacted revision", created[0], created[1])
}

// gwWebsocketDiff: /v3/watch over a WebSocket (etcd's gateway takes one on every
// path): each message sent is a request, each answer comes as a message.
func gwWebsocketDiff(t *testing.T, sut, ref *gwSide) {
	sides := []*gwSide{sut, ref}
	got := make([]string, 2)
	for i, s := range sides {
		u := "ws" + strings.TrimPrefix(s.url("/v3/watch"), "http")
		d := websocket.Dialer{HandshakeTimeout: opTimeout}
		conn, resp, err := d.Dial(u, nil)
		if err != nil {
			t.Fatalf("%s: websocket %s: %v", s.m.Name, u, err)
		}
		resp.Body.Close()
		t.Cleanup(func() { conn.Close() })
		conn.SetReadDeadline(time.Now().Add(opTimeout))
		read := func(what string) string {
			t.Helper()
			_, msg, err := conn.ReadMessage()
			if err != nil {
				t.Fatalf("%s: websocket %s: %v", s.m.Name, what, err)
			}
			n, err := s.norm(string(msg), nil)
			if err != nil {
				t.Fatalf("%s: websocket %s: %v", s.m.Name, what, err)
			}
			return n
		}
		for _, k := range []string{"ws1", "ws2"} {
			if err := conn.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`{"create_request":{"key":%q}}`, b64(k)))); err != nil {
				t.Fatalf("%s: websocket send: %v", s.m.Name, err)
			}
			got[i] += read("created "+k) + "\n"
		}
		s.run(t, gwStep{name: "put ws2", path: "/v3/kv/put", body: fmt.Sprintf(`{"key":%q,"value":%q}`, b64("ws2"), b64("x"))})
		got[i] += read("event")
		conn.Close()
	}
	compareGW(t, "websocket watch", got[0], got[1])
}

// gwObserveDiff: /v3/election/observe streams the current leader.
func gwObserveDiff(t *testing.T, sut, ref *gwSide) {
	sides := []*gwSide{sut, ref}
	got := make([]string, 2)
	for i, s := range sides {
		s.run(t, gwStep{name: "campaign", path: "/v3/election/campaign", body: fmt.Sprintf(`{"name":%q,"lease":"200","value":%q}`, b64("obs"), b64("o1"))})
		st := openStream(t, s, "/v3/election/observe", fmt.Sprintf(`{"name":%q}`, b64("obs")))
		got[i] = st.next(t, s, "observe")
		st.close()
	}
	compareGW(t, "election observe", got[0], got[1])
}

// gwCurlDiff repeats a put and a range with curl, when curl is installed, so the
// gateway is also exercised by a client other than Go's.
func gwCurlDiff(t *testing.T, sut, ref *gwSide) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Logf("curl not installed; the Go client checks above stand")
		return
	}
	reqs := []struct{ path, body string }{
		{"/v3/kv/put", fmt.Sprintf(`{"key":%q,"value":%q}`, b64("curl"), b64("c"))},
		{"/v3/kv/range", fmt.Sprintf(`{"key":%q}`, b64("curl"))},
		{"/v3/kv/range", `{"key":""}`},
	}
	for _, r := range reqs {
		var out [2]string
		for i, s := range []*gwSide{sut, ref} {
			res := framework.Run(t, opTimeout, "", nil, curl, "-sS", "-X", "POST", "-w", "\n%{http_code}", s.url(r.path), "-d", r.body)
			if res.Err != nil {
				t.Fatalf("%s: curl %s: %v: %s", s.m.Name, r.path, res.Err, res.Combined())
			}
			body, code, _ := strings.Cut(strings.TrimSpace(res.Stdout), "\n")
			n, err := s.norm(body, nil)
			if err != nil {
				t.Fatalf("%s: curl %s: %v", s.m.Name, r.path, err)
			}
			out[i] = code + " " + n
		}
		compareGW(t, "curl "+r.path+" "+r.body, out[0], out[1])
	}
}

// TestGatewayDisabled: with --enable-grpc-gateway=false the /v3/ paths are not served
// (the client port's other HTTP endpoints are), on Cairn as on etcd.
func TestGatewayDisabled(t *testing.T) {
	t.Parallel()
	p := framework.StartPair(t, framework.Options{Flags: []string{"--enable-grpc-gateway=false"}})
	var got [2]string
	for i, m := range p.Members() {
		s := &gwSide{m: m, hc: &http.Client{Timeout: opTimeout}}
		code, hdr, body := s.post(t, http.MethodPost, "/v3/kv/range", fmt.Sprintf(`{"key":%q}`, b64("a")), nil)
		health, _, _ := s.post(t, http.MethodGet, "/health", "", nil)
		got[i] = fmt.Sprintf("range %d [%s] %q; /health %d", code, hdr, body, health)
	}
	compareGW(t, "gateway disabled", got[0], got[1])
	if !strings.HasPrefix(got[1], "range 404 ") {
		t.Errorf("etcd with the gateway disabled: %s, want a 404", got[1])
	}
}
