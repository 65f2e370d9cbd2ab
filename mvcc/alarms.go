package mvcc

import (
	"bytes"
	"fmt"
)

// The "alarm" bucket holds one key per active alarm, as etcd lays it out: the
// marshalled etcdserverpb.AlarmMember, with an empty value.

// Alarms returns the keys of the "alarm" bucket (marshalled AlarmMembers).
func (s *Store) Alarms() ([][]byte, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("mvcc: alarms: store is closed")
	}
	var out [][]byte
	err := s.b.tx.Bucket(bucketAlarm).ForEach(func(k, _ []byte) error {
		out = append(out, append([]byte(nil), k...))
		return nil
	})
	return out, err
}

// PutAlarm records an active alarm (key is the marshalled AlarmMember).
func (t *WriteTxn) PutAlarm(key []byte) {
	t.putBucket(bucketAlarm, bytes.Clone(key), []byte{})
}

// DeleteAlarm removes an alarm.
func (t *WriteTxn) DeleteAlarm(key []byte) {
	t.deleteBucket(bucketAlarm, key)
}
