package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/cairn-kv/cairn/tests/framework"
	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// KV.RangeStream goes through framework.RangeStream (this module's etcd 3.6.16 api has
// no stub for it). The reference etcd 3.6.16 answers Unimplemented, so these checks are
// Cairn-only: against the proto's documented semantics and Cairn's own unary Range,
// not against a running etcd 3.7.

// rangeStream returns every chunk of a RangeStream with its encoded size, and the
// status that ended the stream.
func rangeStream(cx context.Context, cc *grpc.ClientConn, r *pb.RangeRequest) (chunks []*pb.RangeResponse, sizes []int, err error) {
	err = framework.RangeStream(cx, cc, r, func(c *pb.RangeResponse, size int) error {
		chunks, sizes = append(chunks, c), append(sizes, size)
		return nil
	})
	return chunks, sizes, err
}

// mustMerge checks the chunk layout (header, more and count only on the last; the
// others carry KVs) and returns the merged answer.
func mustMerge(t *testing.T, what string, chunks []*pb.RangeResponse) *pb.RangeResponse {
	t.Helper()
	if len(chunks) == 0 {
		t.Fatalf("%s: no message", what)
	}
	merged := &pb.RangeResponse{}
	for i, c := range chunks {
		if last := i == len(chunks)-1; !last && (c.Header != nil || c.More || c.Count != 0 || len(c.Kvs) == 0) {
			t.Fatalf("%s: chunk %d of %d has header %v more %v count %d and %d KVs", what, i, len(chunks), c.Header, c.More, c.Count, len(c.Kvs))
		} else if last && c.Header == nil {
			t.Fatalf("%s: the last chunk has no header", what)
		}
		framework.MergeRange(merged, c)
	}
	return merged
}

func sameRange(a, b *pb.RangeResponse) bool {
	x, err1 := a.Marshal()
	y, err2 := b.Marshal()
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// Merged, RangeStream's chunks are the unary Range's answer for every request shape,
// through a real client connection; a large range comes in several bounded chunks.
func TestRangeStreamMatchesRange(t *testing.T) {
	framework.CairnOnly(t, "etcd 3.6.16 has no RangeStream")
	m := start(t)
	cli := m.Client()
	// ~6 MiB: 40 values of 150 KiB among 400 small ones, some overwritten or deleted.
	for i := 0; i < 400; i++ {
		v := fmt.Sprintf("v%d", i)
		if i%10 == 0 {
			v = strings.Repeat(string(rune('a'+i%26)), 150<<10)
		}
		mustPut(t, cli, fmt.Sprintf("k%03d", i), v)
	}
	mid := currentRev(t, cli)
	for i := 0; i < 400; i += 7 {
		mustPut(t, cli, fmt.Sprintf("k%03d", i), "again")
	}
	if _, err := cli.Delete(ctx(t), "k300", clientv3.WithRange("k320")); err != nil {
		t.Fatal(err)
	}
	k := func(s string) []byte { return []byte(s) }
	cc := cli.ActiveConnection()
	for name, r := range map[string]*pb.RangeRequest{
		"all":              {Key: k("\x00"), RangeEnd: k("\x00")},
		"prefix":           {Key: k("k1"), RangeEnd: k("k2")},
		"from-key":         {Key: k("k350"), RangeEnd: k("\x00")},
		"single":           {Key: k("k010")},
		"missing":          {Key: k("k305")},
		"limit":            {Key: k("\x00"), RangeEnd: k("\x00"), Limit: 55},
		"limit-all":        {Key: k("k0"), RangeEnd: k("k1"), Limit: 100},
		"keys-only":        {Key: k("\x00"), RangeEnd: k("\x00"), KeysOnly: true},
		"count-only":       {Key: k("\x00"), RangeEnd: k("\x00"), CountOnly: true},
		"past":             {Key: k("\x00"), RangeEnd: k("\x00"), Revision: mid},
		"past-limit":       {Key: k("k2"), RangeEnd: k("k4"), Revision: mid, Limit: 30},
		"min-mod":          {Key: k("\x00"), RangeEnd: k("\x00"), MinModRevision: mid + 1},
		"max-create":       {Key: k("\x00"), RangeEnd: k("\x00"), MaxCreateRevision: 50},
		"filter-limit":     {Key: k("\x00"), RangeEnd: k("\x00"), MinModRevision: mid + 1, Limit: 10},
		"serializable":     {Key: k("k1"), RangeEnd: k("k3"), Serializable: true},
		"ascend-by-key":    {Key: k("\x00"), RangeEnd: k("\x00"), SortOrder: pb.RangeRequest_ASCEND, SortTarget: pb.RangeRequest_KEY},
		"keys-only-filter": {Key: k("\x00"), RangeEnd: k("\x00"), KeysOnly: true, MaxModRevision: mid, Limit: 200},
	} {
		chunks, sizes, err := rangeStream(ctx(t), cc, r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := mustMerge(t, name, chunks)
		want, err := raw(m).Range(ctx(t), r, grpc.MaxCallRecvMsgSize(64<<20)) // the unary answer is ~6 MiB
		if err != nil {
			t.Fatalf("%s: Range: %v", name, err)
		}
		if !sameRange(got, want) {
			t.Fatalf("%s: merged %d KVs more %v count %d header %v; Range %d KVs more %v count %d header %v",
				name, len(got.Kvs), got.More, got.Count, got.Header, len(want.Kvs), want.More, want.Count, want.Header)
		}
		for i, n := range sizes {
			if n > 1<<20+200<<10 {
				t.Fatalf("%s: chunk %d is %d bytes", name, i, n)
			}
		}
		if name == "all" && len(chunks) < 5 {
			t.Fatalf("all: %d chunks for %d KVs (~6 MiB), want several", len(chunks), len(got.Kvs))
		}
		t.Logf("%s: %d KVs in %d chunks", name, len(got.Kvs), len(chunks))
	}
}

// RangeStream's errors: Range's for a bad request, a compacted or future revision;
// Unimplemented for a sort other than ascending by key; permission denied for a user
// who may not read the range, as Range.
func TestRangeStreamErrors(t *testing.T) {
	framework.CairnOnly(t, "etcd 3.6.16 has no RangeStream")
	m := start(t)
	cli := m.Client()
	for i := 0; i < 5; i++ {
		mustPut(t, cli, fmt.Sprintf("k%d", i), "v")
	}
	rev := currentRev(t, cli)
	if _, err := cli.Compact(ctx(t), rev-1); err != nil {
		t.Fatal(err)
	}
	cc := cli.ActiveConnection()
	for name, tc := range map[string]struct {
		r    *pb.RangeRequest
		code codes.Code
	}{
		"empty key":   {&pb.RangeRequest{}, codes.InvalidArgument},
		"compacted":   {&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("\x00"), Revision: rev - 2}, codes.OutOfRange},
		"future":      {&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("\x00"), Revision: rev + 1}, codes.OutOfRange},
		"bad sort":    {&pb.RangeRequest{Key: []byte("k"), SortOrder: 9}, codes.InvalidArgument},
		"descend":     {&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("\x00"), SortOrder: pb.RangeRequest_DESCEND}, codes.Unimplemented},
		"by mod rev":  {&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("\x00"), SortTarget: pb.RangeRequest_MOD}, codes.Unimplemented},
		"ascend mod":  {&pb.RangeRequest{Key: []byte("k"), SortOrder: pb.RangeRequest_ASCEND, SortTarget: pb.RangeRequest_MOD}, codes.Unimplemented},
		"descend key": {&pb.RangeRequest{Key: []byte("k"), SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_KEY}, codes.Unimplemented},
	} {
		chunks, _, err := rangeStream(ctx(t), cc, tc.r)
		if status.Code(err) != tc.code || len(chunks) != 0 {
			t.Fatalf("%s: %d chunks, %v; want %v", name, len(chunks), err, tc.code)
		}
		if tc.code != codes.Unimplemented {
			_, rerr := raw(m).Range(ctx(t), tc.r)
			if status.Convert(rerr).Message() != status.Convert(err).Message() || status.Code(rerr) != tc.code {
				t.Fatalf("%s: RangeStream %v, Range %v", name, err, rerr)
			}
		}
	}

	must := mustOK(t)
	must(cli.UserAdd(ctx(t), "root", "rootpw"))
	must(cli.UserGrantRole(ctx(t), "root", "root"))
	must(cli.RoleAdd(ctx(t), "k1"))
	must(cli.RoleGrantPermission(ctx(t), "k1", "k1", "k2", clientv3.PermissionType(authpb.READ)))
	must(cli.UserAdd(ctx(t), "u", "upw"))
	must(cli.UserGrantRole(ctx(t), "u", "k1"))
	must(cli.AuthEnable(ctx(t)))
	ucli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, Username: "u", Password: "upw", DialTimeout: opTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer ucli.Close()
	ok := &pb.RangeRequest{Key: []byte("k1"), RangeEnd: []byte("k2")}
	chunks, _, err := rangeStream(ctx(t), ucli.ActiveConnection(), ok)
	if err != nil {
		t.Fatalf("permitted range: %v", err)
	}
	if got := mustMerge(t, "permitted", chunks); len(got.Kvs) != 1 || string(got.Kvs[0].Key) != "k1" {
		t.Fatalf("permitted range: %v", got)
	}
	denied := &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("\x00")}
	_, _, err = rangeStream(ctx(t), ucli.ActiveConnection(), denied)
	_, rerr := pb.NewKVClient(ucli.ActiveConnection()).Range(ctx(t), denied)
	if status.Code(err) != codes.PermissionDenied || status.Convert(err).Message() != status.Convert(rerr).Message() {
		t.Fatalf("denied range: RangeStream %v, Range %v", err, rerr)
	}
}
