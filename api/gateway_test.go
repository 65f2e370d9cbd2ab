package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// recordingKV answers Range with a fixed response and keeps the metadata it was called
// with; Put fails as etcd does for an empty key.
type recordingKV struct {
	pb.UnimplementedKVServer
	mu  sync.Mutex
	md  metadata.MD
	req *pb.RangeRequest
}

func (k *recordingKV) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	k.mu.Lock()
	k.md, k.req = md, r
	k.mu.Unlock()
	return &pb.RangeResponse{
		Header: &pb.ResponseHeader{ClusterId: 1<<64 - 1, Revision: 5},
		Kvs:    []*mvccpb.KeyValue{{Key: []byte("a"), Value: []byte{0xff, 0}, CreateRevision: 1<<63 - 1}},
		Count:  1,
	}, nil
}

func (k *recordingKV) Put(context.Context, *pb.PutRequest) (*pb.PutResponse, error) {
	return nil, status.Error(codes.InvalidArgument, "etcdserver: key is not provided")
}

func newTestGateway(t *testing.T) (*Gateway, *grpc.Server, *recordingKV) {
	t.Helper()
	gs := grpc.NewServer()
	kv := &recordingKV{}
	pb.RegisterKVServer(gs, kv)
	gw, err := NewGateway(gs, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		gs.Stop()
		gw.Close()
	})
	return gw, gs, kv
}

func gwPost(h http.Handler, path, body string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// The gateway calls the gRPC server in-process, passes Authorization on as the
// "authorization" metadata the server reads the token from, decodes etcd's JSON
// (proto names, base64 bytes, int64 as strings, unknown fields dropped) and encodes
// the answer the same way.
func TestGatewayJSONAndAuthorization(t *testing.T) {
	gw, _, kv := newTestGateway(t)
	rec := gwPost(gw, "/v3/kv/range", `{"key":"YQ==","range_end":"Yg==","limit":"7","no_such_field":{"x":1}}`,
		map[string]string{"Authorization": "tok123", "Grpc-Metadata-Hasleader": "true"})
	if rec.Code != http.StatusOK {
		t.Fatalf("range: %d %s", rec.Code, rec.Body)
	}
	kv.mu.Lock()
	md, req := kv.md, kv.req
	kv.mu.Unlock()
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "tok123" {
		t.Errorf("authorization metadata = %q, want [tok123] (metadata %v)", got, md)
	}
	if got := md.Get("hasleader"); len(got) != 1 || got[0] != "true" {
		t.Errorf("hasleader metadata = %q, want [true]", got)
	}
	if string(req.GetKey()) != "a" || string(req.GetRangeEnd()) != "b" || req.GetLimit() != 7 {
		t.Errorf("request = %v, want key a, range_end b, limit 7", req)
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("answer %q: %v", rec.Body, err)
	}
	want := map[string]any{
		"header": map[string]any{"cluster_id": "18446744073709551615", "revision": "5"},
		"kvs":    []any{map[string]any{"key": "YQ==", "value": "/wA=", "create_revision": "9223372036854775807"}},
		"count":  "1",
	}
	if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
		t.Errorf("answer = %s, want %s", g, w)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}

	// An error is grpc-gateway's status body with the HTTP status of its code.
	rec = gwPost(gw, "/v3/kv/put", `{}`, nil)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("put: HTTP %d, want 400", rec.Code)
	}
	var st struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.Code != 3 || st.Message != "etcdserver: key is not provided" {
		t.Errorf("put: body %s (%v), want code 3 and etcd's message", rec.Body, err)
	}
	// Services the server has not registered answer Unimplemented (HTTP 501).
	if rec := gwPost(gw, "/v3/auth/status", `{}`, nil); rec.Code != http.StatusNotImplemented || !strings.Contains(rec.Body.String(), `"code":12`) {
		t.Errorf("auth status: %d %s, want 501 code 12", rec.Code, rec.Body)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Close ends the in-process connection and returns also when the gRPC server stopped
// first (the order of a member's shutdown); calls after it fail.
func TestGatewayClose(t *testing.T) {
	gw, gs, _ := newTestGateway(t)
	if rec := gwPost(gw, "/v3/kv/range", `{"key":"YQ=="}`, nil); rec.Code != http.StatusOK {
		t.Fatalf("range: %d %s", rec.Code, rec.Body)
	}
	gs.Stop()
	done := make(chan error, 1)
	go func() { done <- gw.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return after the gRPC server stopped")
	}
	if rec := gwPost(gw, "/v3/kv/range", `{"key":"YQ=="}`, nil); rec.Code == http.StatusOK {
		t.Fatalf("range after Close: %d %s, want an error", rec.Code, rec.Body)
	}
	if err := gw.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// AccessControl is etcd's default access controller: CORS headers on every answer, an
// OPTIONS preflight answered without the handler, /v3beta/ served as /v3/.
func TestAccessControl(t *testing.T) {
	var paths []string
	h := AccessControl(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.Path)
		w.WriteHeader(http.StatusTeapot)
	}))
	for _, tc := range []struct {
		method, path string
		code         int
		reached      string
	}{
		{http.MethodPost, "/v3beta/kv/range", http.StatusTeapot, "/v3/kv/range"},
		{http.MethodGet, "/health", http.StatusTeapot, "/health"},
		{http.MethodOptions, "/v3/kv/range", http.StatusOK, ""},
	} {
		paths = nil
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.code {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, rec.Code, tc.code)
		}
		if want := []string{tc.reached}; tc.reached == "" && len(paths) != 0 || tc.reached != "" && (len(paths) != 1 || paths[0] != want[0]) {
			t.Errorf("%s %s: handler saw %q, want %q", tc.method, tc.path, paths, tc.reached)
		}
		for k, v := range map[string]string{
			"Access-Control-Allow-Origin":  "*",
			"Access-Control-Allow-Methods": "POST, GET, OPTIONS, PUT, DELETE",
			"Access-Control-Allow-Headers": "accept, content-type, authorization",
		} {
			if got := rec.Header().Get(k); got != v {
				t.Errorf("%s %s: %s = %q, want %q", tc.method, tc.path, k, got, v)
			}
		}
	}
}
