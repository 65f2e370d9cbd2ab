package mvcc

import (
	"bytes"
	"fmt"
	"strconv"
)

func memberKey(id uint64) []byte { return []byte(fmt.Sprintf("%016x", id)) }

// Members returns the contents of the "members" bucket by member id, including changes
// not committed yet.
func (s *Store) Members() (map[uint64][]byte, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("mvcc: members: store is closed")
	}
	out := make(map[uint64][]byte)
	err := s.b.tx.Bucket(bucketMembers).ForEach(func(k, v []byte) error {
		id, err := strconv.ParseUint(string(k), 16, 64)
		if err != nil {
			return fmt.Errorf("mvcc: malformed member key %q: %w", k, err)
		}
		out[id] = append([]byte(nil), v...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PutMember stores a member's raw JSON.
func (t *WriteTxn) PutMember(id uint64, raw []byte) {
	t.putBucket(bucketMembers, memberKey(id), bytes.Clone(raw))
}

// DeleteMember removes a member, marking it in "members_removed" as etcd does.
func (t *WriteTxn) DeleteMember(id uint64) {
	t.deleteBucket(bucketMembers, memberKey(id))
	t.putBucket(bucketMembersRemoved, memberKey(id), []byte("removed"))
}

// RemovedMembers returns the ids marked in "members_removed": members that left the
// cluster and must never rejoin under the same id.
func (s *Store) RemovedMembers() ([]uint64, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("mvcc: removed members: store is closed")
	}
	var out []uint64
	err := s.b.tx.Bucket(bucketMembersRemoved).ForEach(func(k, _ []byte) error {
		id, err := strconv.ParseUint(string(k), 16, 64)
		if err != nil {
			return fmt.Errorf("mvcc: malformed removed member key %q: %w", k, err)
		}
		out = append(out, id)
		return nil
	})
	return out, err
}
