package api

import (
	"context"
	"io"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// Backend is what the client-facing services need from a member. *server.Server
// implements it; api never touches storage or raft itself.
type Backend interface {
	Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error)
	// RangeStream answers r (checked as Range checks it, and with an effective sort
	// order of ascending by key) in chunks read from one revision, calling send once per
	// chunk: every call but the last carries only Kvs, disjoint and in key order; the
	// last carries the header (revision set), the remaining Kvs, More and Count, so that
	// merging all of them is Range's answer. send is called sequentially from the
	// calling goroutine, never while the member holds a lock that writers wait on, and
	// does not keep the response after it returns; its error ends the call and is
	// returned. An error after some chunks were sent (a compaction past the pinned
	// revision: ErrCompacted) is returned instead of the last chunk. The member's
	// memory for one call is a few chunks (of about a MiB), not the result.
	RangeStream(ctx context.Context, r *pb.RangeRequest, send func(*pb.RangeResponse) error) error
	Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error)
	DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error)
	Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error)
	Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error)
	Status(ctx context.Context) (*pb.StatusResponse, error)
	MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error)
	MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error)
	MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error)
	MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error)
	MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error)
	MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error)
	HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error)
	Alarms() []*pb.AlarmMember // active alarms
	// Alarm lists (GET), raises (ACTIVATE) or clears (DEACTIVATE) alarms.
	Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error)
	Leader() uint64             // 0 when there is no leader
	Header() *pb.ResponseHeader // cluster_id, member_id, raft_term, current revision
	ClusterVersion() string     // e.g. "3.6.0"

	LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error)
	LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error)
	// LeaseRenew is one keep-alive: the lease's granted TTL, or an error whose text is
	// "lease not found" when it does not exist.
	LeaseRenew(ctx context.Context, id int64) (ttl int64, err error)
	LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error)
	LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error)

	// NewWatchStream opens the member side of one gRPC Watch stream; the Watch service
	// calls it once per stream and Closes it when the stream ends.
	NewWatchStream() WatchStream

	// Snapshot opens a consistent copy of the member's whole db file as of now (every
	// applied write included). The caller must Close its Data.
	Snapshot(ctx context.Context) (DBSnapshot, error)
	// Defragment rewrites the member's db file without its free space (reads and
	// writes go on meanwhile) and returns once it is swapped in.
	Defragment(ctx context.Context) error
}

// DBSnapshot is a member's db file being read for Maintenance.Snapshot.
type DBSnapshot struct {
	Size           int64         // bytes of Data
	StorageVersion string        // the db's schema version, as etcd reports it ("3.6.0")
	Data           io.ReadCloser // the file's bytes; Close releases the copy
}

// WatchStream is the member's side of one client Watch stream: a set of watchers whose
// responses all go, in order, into one queue (etcd's mvcc.WatchStream). The stream's
// sender takes them in its own goroutine (Ready, then Take), so no goroutine stands
// between the member and the sender.
//
// Watch, Cancel, RequestProgress, RequestProgressAll and Close may be called from
// different goroutines (never concurrently with each other: the Watch service
// serializes them), while one other goroutine waits on Ready and calls Take. None of
// them may wait for that goroutine: RequestProgress and RequestProgressAll are called
// from it.
type WatchStream interface {
	// Watch adds a watcher. r is the client's request as received, except that an empty
	// Key is "\x00" (etcd's smallest key); RangeEnd "\x00" means every key >= Key, an
	// empty RangeEnd the single key Key. r.WatchId 0 picks a free id. Errors carry
	// etcd's mvcc texts ("mvcc: duplicate watch ID provided on the WatchStream",
	// "mvcc: watcher range is empty"), which the client sees as the cancel reason. rev
	// is the revision the watch was created at, for its created response: a watch from
	// "now" gets exactly the events after rev.
	Watch(r *pb.WatchCreateRequest) (watchID, rev int64, err error)
	// Cancel removes a watcher; no response of it is sent on Chan after Cancel returns.
	// An unknown id is an error (the client then gets no response, as with etcd).
	Cancel(watchID int64) error
	// RequestProgress sends an empty response with WatchId watchID and the current
	// revision on Chan if that watcher has caught up; otherwise nothing.
	RequestProgress(watchID int64)
	// RequestProgressAll sends one empty response with WatchId -1 and the current
	// revision on Chan and returns true if every watcher has caught up; otherwise it
	// sends nothing and returns false.
	RequestProgressAll() bool
	// Ready is signalled when responses were queued, or the stream closed, since the
	// last Take (it holds one signal: one Take answers several).
	Ready() <-chan struct{}
	// Take returns every queued response, oldest first: WatchId, Events (in revision
	// order), Header.Revision, and CompactRevision > 0 when the watcher's start revision
	// was compacted (the watcher is then already removed). open is false once the
	// stream is closed (the member stopping, or Close) and nothing is left. The slice
	// (not the responses) may be reused by the next Take.
	Take() (rs []*pb.WatchResponse, open bool)
	// Close removes every watcher. Take may report the stream closed after it, or not.
	Close()
}

// learnerReporter is implemented by a Backend that can say whether this member is a raft
// learner. etcd rejects most RPCs on learners and /readyz reports "non_learner"; a
// Backend without it is treated as a voting member.
type learnerReporter interface {
	IsLearner() bool
}

func isLearner(b Backend) bool {
	if l, ok := b.(learnerReporter); ok {
		return l.IsLearner()
	}
	return false
}
