package server

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/cairn-kv/cairn/mvcc"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// alarmStore is the cluster's active alarms as applied, by type and member. The apply
// loop writes it (and the store's "alarm" bucket); anything may read it.
type alarmStore struct {
	mu     sync.RWMutex
	active map[pb.AlarmType]map[uint64]bool
}

func newAlarmStore() *alarmStore {
	return &alarmStore{active: map[pb.AlarmType]map[uint64]bool{}}
}

// list returns the active alarms ordered by type, then member.
func (a *alarmStore) list() []*pb.AlarmMember {
	a.mu.RLock()
	defer a.mu.RUnlock()
	var out []*pb.AlarmMember
	for t, ms := range a.active {
		for id := range ms {
			out = append(out, &pb.AlarmMember{MemberID: id, Alarm: t})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Alarm != out[j].Alarm {
			return out[i].Alarm < out[j].Alarm
		}
		return out[i].MemberID < out[j].MemberID
	})
	return out
}

// has reports whether any member has an alarm of type t.
func (a *alarmStore) has(t pb.AlarmType) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return len(a.active[t]) > 0
}

// set turns an alarm on or off and reports whether that changed anything.
func (a *alarmStore) set(id uint64, t pb.AlarmType, on bool) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.active[t][id] == on {
		return false
	}
	if on {
		if a.active[t] == nil {
			a.active[t] = map[uint64]bool{}
		}
		a.active[t][id] = true
	} else {
		delete(a.active[t], id)
		if len(a.active[t]) == 0 {
			delete(a.active, t)
		}
	}
	return true
}

// alarmKey is an alarm's key in the store's "alarm" bucket (etcd's layout).
func alarmKey(m *pb.AlarmMember) []byte {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	return b
}

// loadAlarms replaces the in-memory alarms with the store's (at boot, after a snapshot).
func (s *Server) loadAlarms() error {
	keys, err := s.store.Alarms()
	if err != nil {
		return fmt.Errorf("server: load alarms: %w", err)
	}
	active := map[pb.AlarmType]map[uint64]bool{}
	for _, k := range keys {
		var m pb.AlarmMember
		if err := proto.Unmarshal(k, &m); err != nil {
			return fmt.Errorf("server: decode alarm %x: %w", k, err)
		}
		if active[m.Alarm] == nil {
			active[m.Alarm] = map[uint64]bool{}
		}
		active[m.Alarm][m.MemberID] = true
	}
	s.alarms.mu.Lock()
	s.alarms.active = active
	s.alarms.mu.Unlock()
	return nil
}

// Alarms are the active alarms, as applied on this member.
func (s *Server) Alarms() []*pb.AlarmMember { return s.alarms.list() }

// Alarm lists the active alarms (GET, filtered by type unless NONE) or raises or clears
// one through raft (ACTIVATE, DEACTIVATE; `etcdctl alarm disarm`).
func (s *Server) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	if r.GetAction() == pb.AlarmRequest_GET {
		resp := &pb.AlarmResponse{Header: &pb.ResponseHeader{}}
		for _, a := range s.alarms.list() {
			if r.GetAlarm() == pb.AlarmType_NONE || a.Alarm == r.GetAlarm() {
				resp.Alarms = append(resp.Alarms, a)
			}
		}
		s.fillHeader(resp.Header)
		return resp, nil
	}
	return proposeFor[*pb.AlarmResponse](ctx, s, &pb.InternalRaftRequest{Alarm: r})
}

// applyAlarm raises or clears an alarm as etcd does: raising answers with the alarm
// (also when it was already active), clearing with the alarm it cleared, if any.
func (s *Server) applyAlarm(tx *mvcc.WriteTxn, r *pb.AlarmRequest) applyResult {
	resp := &pb.AlarmResponse{Header: &pb.ResponseHeader{Revision: tx.Rev()}}
	m := &pb.AlarmMember{MemberID: r.GetMemberID(), Alarm: r.GetAlarm()}
	changed := false
	switch r.GetAction() {
	case pb.AlarmRequest_ACTIVATE:
		if m.Alarm != pb.AlarmType_NONE {
			resp.Alarms = append(resp.Alarms, m)
			changed = s.alarms.set(m.MemberID, m.Alarm, true)
		}
	case pb.AlarmRequest_DEACTIVATE:
		if changed = s.alarms.set(m.MemberID, m.Alarm, false); changed {
			resp.Alarms = append(resp.Alarms, m)
		}
	}
	switch {
	case changed && r.GetAction() == pb.AlarmRequest_ACTIVATE:
		tx.PutAlarm(alarmKey(m))
		s.lg.Warn("alarm raised", zap.String("alarm", m.Alarm.String()), zap.String("member-id", fmt.Sprintf("%x", m.MemberID)))
	case changed:
		tx.DeleteAlarm(alarmKey(m))
		s.lg.Info("alarm cleared", zap.String("alarm", m.Alarm.String()), zap.String("member-id", fmt.Sprintf("%x", m.MemberID)))
	}
	return applyResult{resp: resp}
}

// refusedByAlarm is the error a request gets at apply time while the cluster is
// alarmed, as etcd's appliers decide it: with CORRUPT, every write; with NOSPACE, every
// request that would grow the db (puts, txns that put, lease grants) while reads,
// deletes and compactions go on; nil otherwise.
func (s *Server) refusedByAlarm(r *pb.InternalRaftRequest) error {
	if s.alarms.has(pb.AlarmType_CORRUPT) {
		switch {
		case r.Put != nil, r.DeleteRange != nil, r.Txn != nil, r.Compaction != nil, r.LeaseGrant != nil, r.LeaseRevoke != nil:
			return ErrCorrupt
		}
	}
	if s.alarms.has(pb.AlarmType_NOSPACE) && quotaCost(r) > 0 {
		return ErrNoSpace
	}
	return nil
}
