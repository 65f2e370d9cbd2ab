// Package e2e holds black-box tests that hold the server binary ($CAIRN_BIN,
// or $ETCD_BIN under CAIRN_TEST_AGAINST=etcd) to etcd v3.6's behaviour on
// the wire. See tests/framework for how members are started.
package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

// opTimeout bounds every single client call.
const opTimeout = 10 * time.Second

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	return c
}

// mustOK is a check for calls answering (response, error): it fails t on the error.
func mustOK(t testing.TB) func(any, error) {
	return func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// start starts a single member of the suite's server with extra flags.
func start(t testing.TB, flags ...string) *framework.Member {
	t.Helper()
	return framework.StartMember(t, framework.Options{Flags: flags})
}

// raw returns a raw gRPC KV stub over the member's client connection: its
// errors are the status the server sent, untouched by clientv3.
func raw(m *framework.Member) pb.KVClient {
	return pb.NewKVClient(m.Client().ActiveConnection())
}

// wantErr describes an etcd error: the value clientv3 returns for it and
// what is on the wire.
type wantErr struct {
	client error // rpctypes.ErrXxx
	code   codes.Code
	msg    string
}

// check asserts cliErr (from clientv3) and rawErr (from a raw stub) are
// both this error.
func (w wantErr) check(t testing.TB, cliErr, rawErr error) {
	t.Helper()
	framework.RequireClientError(t, cliErr, w.client)
	framework.RequireGRPCError(t, rawErr, w.code, w.msg)
}

func mustPut(t testing.TB, cli *clientv3.Client, key, val string, opts ...clientv3.OpOption) *clientv3.PutResponse {
	t.Helper()
	resp, err := cli.Put(ctx(t), key, val, opts...)
	if err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
	return resp
}

func mustGet(t testing.TB, cli *clientv3.Client, key string, opts ...clientv3.OpOption) *clientv3.GetResponse {
	t.Helper()
	resp, err := cli.Get(ctx(t), key, opts...)
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	return resp
}

func mustRange(t testing.TB, kv pb.KVClient, req *pb.RangeRequest) *pb.RangeResponse {
	t.Helper()
	resp, err := kv.Range(ctx(t), req)
	if err != nil {
		t.Fatalf("range %v: %v", req, err)
	}
	return resp
}

// currentRev returns the header revision of a fresh linearizable Get.
func currentRev(t testing.TB, cli *clientv3.Client) int64 {
	t.Helper()
	return mustGet(t, cli, "cairn-test-rev-probe").Header.Revision
}

func keysOf(kvs []*mvccpb.KeyValue) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = string(kv.Key)
	}
	return out
}

func eqStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func requireKeys(t testing.TB, what string, kvs []*mvccpb.KeyValue, want ...string) {
	t.Helper()
	if got := keysOf(kvs); !eqStrings(got, want) {
		t.Fatalf("%s: keys %q, want %q", what, got, want)
	}
}

// requireKV asserts every field of a KeyValue.
func requireKV(t testing.TB, what string, kv *mvccpb.KeyValue, key, val string, create, mod, version, lease int64) {
	t.Helper()
	if kv == nil {
		t.Fatalf("%s: nil kv, want %q", what, key)
	}
	got := fmt.Sprintf("key=%q value=%q create=%d mod=%d version=%d lease=%d",
		kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease)
	want := fmt.Sprintf("key=%q value=%q create=%d mod=%d version=%d lease=%d",
		key, val, create, mod, version, lease)
	if got != want {
		t.Fatalf("%s:\n got  %s\n want %s", what, got, want)
	}
}
