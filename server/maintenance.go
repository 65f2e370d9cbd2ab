package server

import (
	"context"
	"io"

	"go.uber.org/zap"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

// Header is the response header for this member now.
func (s *Server) Header() *pb.ResponseHeader {
	h := &pb.ResponseHeader{}
	s.fillHeader(h)
	return h
}

// fillHeader stamps who answered; the revision stays if the request set one.
func (s *Server) fillHeader(h *pb.ResponseHeader) {
	h.ClusterId = s.clusterID
	h.MemberId = s.id
	h.RaftTerm = s.node.Term()
	if h.Revision == 0 {
		h.Revision = s.store.Rev()
	}
}

// Status reports this member's view, as etcdctl endpoint status shows it.
func (s *Server) Status(ctx context.Context) (*pb.StatusResponse, error) {
	total, inUse := s.store.Size()
	_, storage, job := s.versions.get()
	resp := &pb.StatusResponse{
		Header:           s.Header(),
		Version:          EtcdVersion,
		DbSize:           total,
		DbSizeInUse:      inUse,
		Leader:           s.node.Leader(),
		RaftIndex:        s.node.CommittedIndex(),
		RaftTerm:         s.node.Term(),
		RaftAppliedIndex: s.applied.Load(),
		StorageVersion:   storage,
		DbSizeQuota:      s.quota(),
		DowngradeInfo:    &pb.DowngradeInfo{Enabled: job.Enabled, TargetVersion: job.TargetVersion},
	}
	return resp, nil
}

func (s *Server) quota() int64 { return s.cfg.quota() }

// MemberList lists the cluster's members.
func (s *Server) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	if r.Linearizable {
		if err := s.linearizableRead(ctx); err != nil {
			return nil, err
		}
	}
	// etcd's cluster service stamps no revision on its headers.
	h := &pb.ResponseHeader{ClusterId: s.clusterID, MemberId: s.id, RaftTerm: s.node.Term()}
	return &pb.MemberListResponse{Header: h, Members: s.members.list()}, nil
}

// Snapshot opens a consistent copy of the whole db as of now, with every applied write
// committed into it: its size, the storage version it records ("" in 3.5's schema, as
// etcd reports it) and a reader of its bytes. Closing the reader releases the copy (its
// bbolt read transaction), also midway.
func (s *Server) Snapshot(ctx context.Context) (size int64, storageVersion string, r io.ReadCloser, err error) {
	sn, err := s.store.Snapshot()
	if err != nil {
		return 0, "", nil, err
	}
	size, storageVersion = sn.Size(), sn.StorageVersion()
	pr, pw := io.Pipe()
	go func() {
		_, err := sn.WriteTo(pw)
		if cerr := sn.Close(); err == nil {
			err = cerr
		}
		pw.CloseWithError(err)
	}()
	s.lg.Info("sending database snapshot to client", zap.Int64("total-bytes", size),
		zap.String("storage-version", storageVersion))
	return size, storageVersion, pr, nil
}

// Defragment rewrites the db file without its free pages. Unlike etcd's, reads and writes
// are served meanwhile (see mvcc.Store.Defragment).
func (s *Server) Defragment(ctx context.Context) error {
	before, _ := s.store.Size()
	s.lg.Info("defragmenting the backend", zap.Int64("current-db-size-bytes", before))
	if err := s.store.Defragment(); err != nil {
		s.lg.Warn("failed to defragment the backend", zap.Error(err))
		return err
	}
	return nil
}

// HashKV hashes the key-value history up to a revision (0: the current one), for
// comparing members.
func (s *Server) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	h, hashRev, compactRev, err := s.store.HashByRev(r.Revision)
	if err != nil {
		return nil, err
	}
	hdr := s.Header()
	hdr.Revision = hashRev
	return &pb.HashKVResponse{Header: hdr, Hash: h, CompactRevision: compactRev, HashRevision: hashRev}, nil
}

// Hash is etcd's Maintenance.Hash: a hash of this member's whole db (every bucket but the
// applied index, term and storage version), with the current revision in the header.
// Unlike HashKV it covers members, leases, alarms and the compaction marks, so members
// agree only once they applied the same entries and finished the same compactions.
func (s *Server) Hash(ctx context.Context, _ *pb.HashRequest) (*pb.HashResponse, error) {
	h, rev, err := s.store.Hash()
	if err != nil {
		return nil, err
	}
	hdr := s.Header()
	hdr.Revision = rev
	return &pb.HashResponse{Header: hdr, Hash: h}, nil
}
