package mvcc

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// The auth buckets, as etcd lays them out (its storage/schema/auth*.go): "auth" holds
// "authEnabled" (one byte, 1 or 0) and "authRevision" (8-byte big-endian); "authUsers"
// and "authRoles" map a user's or role's name to its marshalled authpb.User /
// authpb.Role. mvcc stores the bytes; package auth encodes and decodes them.
var (
	authEnabledKey  = []byte("authEnabled")
	authRevisionKey = []byte("authRevision")
)

// AuthData is the content of the auth buckets.
type AuthData struct {
	Enabled  bool
	Revision uint64
	Users    map[string][]byte // name -> marshalled authpb.User
	Roles    map[string][]byte // name -> marshalled authpb.Role
}

// Auth returns the content of the auth buckets, including changes not committed yet.
func (s *Store) Auth() (AuthData, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	d := AuthData{Users: map[string][]byte{}, Roles: map[string][]byte{}}
	if s.closed {
		return d, fmt.Errorf("mvcc: auth: store is closed")
	}
	ab := s.b.tx.Bucket(bucketAuth)
	d.Enabled = bytes.Equal(ab.Get(authEnabledKey), []byte{1})
	if v := ab.Get(authRevisionKey); v != nil {
		if len(v) != 8 {
			return d, fmt.Errorf("mvcc: malformed auth revision %x", v)
		}
		d.Revision = binary.BigEndian.Uint64(v)
	}
	for _, b := range []struct {
		name []byte
		m    map[string][]byte
	}{{bucketAuthUsers, d.Users}, {bucketAuthRoles, d.Roles}} {
		err := s.b.tx.Bucket(b.name).ForEach(func(k, v []byte) error {
			b.m[string(k)] = bytes.Clone(v)
			return nil
		})
		if err != nil {
			return d, fmt.Errorf("mvcc: read bucket %s: %w", b.name, err)
		}
	}
	return d, nil
}

// PutAuthEnabled records whether auth is enabled.
func (t *WriteTxn) PutAuthEnabled(enabled bool) {
	v := []byte{0}
	if enabled {
		v = []byte{1}
	}
	t.putBucket(bucketAuth, authEnabledKey, v)
}

// PutAuthRevision records the auth revision.
func (t *WriteTxn) PutAuthRevision(rev uint64) {
	v := make([]byte, 8)
	binary.BigEndian.PutUint64(v, rev)
	t.putBucket(bucketAuth, authRevisionKey, v)
}

// PutAuthUser stores a user (value: marshalled authpb.User).
func (t *WriteTxn) PutAuthUser(name string, value []byte) {
	t.putBucket(bucketAuthUsers, []byte(name), bytes.Clone(value))
}

// DeleteAuthUser removes a user.
func (t *WriteTxn) DeleteAuthUser(name string) {
	t.deleteBucket(bucketAuthUsers, []byte(name))
}

// PutAuthRole stores a role (value: marshalled authpb.Role).
func (t *WriteTxn) PutAuthRole(name string, value []byte) {
	t.putBucket(bucketAuthRoles, []byte(name), bytes.Clone(value))
}

// DeleteAuthRole removes a role.
func (t *WriteTxn) DeleteAuthRole(name string) {
	t.deleteBucket(bucketAuthRoles, []byte(name))
}
