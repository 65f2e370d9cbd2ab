package mvcc

import "fmt"

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

// PutAlarm records an active alarm (key is the marshalled AlarmMember) with the applied
// raft entry in the same batch.
func (s *Store) PutAlarm(key []byte, index, term uint64) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.b.put(bucketAlarm, append([]byte(nil), key...), []byte{})
	s.setCI(index, term)
	s.maybeCommit()
}

// DeleteAlarm removes an alarm with the applied raft entry in the same batch.
func (s *Store) DeleteAlarm(key []byte, index, term uint64) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.b.delete(bucketAlarm, key)
	s.setCI(index, term)
	s.maybeCommit()
}
