package server

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// Conf changes are validated when applied, so that two changes proposed through
// different members, each valid where it was proposed, cannot both take effect.
func TestMembershipValidateAtApply(t *testing.T) {
	ms := newMembership()
	ms.add(&member{ID: 1, Name: "m1", PeerURLs: []string{"http://a:1"}})
	ms.add(&member{ID: 2, PeerURLs: []string{"http://b:1"}, IsLearner: true})
	cases := []struct {
		what string
		typ  raftpb.ConfChangeType
		id   uint64
		m    *member
		want error
	}{
		{"second learner", raftpb.ConfChangeAddLearnerNode, 3, &member{ID: 3, PeerURLs: []string{"http://c:1"}}, ErrTooManyLearners},
		{"taken peer URL", raftpb.ConfChangeAddNode, 3, &member{ID: 3, PeerURLs: []string{"http://a:1"}}, ErrPeerURLExists},
		{"existing voter", raftpb.ConfChangeAddNode, 1, &member{ID: 1, PeerURLs: []string{"http://a:1"}}, ErrIDExists},
		{"promote learner", raftpb.ConfChangeAddNode, 2, &member{ID: 2, PeerURLs: []string{"http://b:1"}}, nil},
		{"remove unknown", raftpb.ConfChangeRemoveNode, 9, nil, ErrIDNotFound},
		{"update to a taken URL", raftpb.ConfChangeUpdateNode, 2, &member{ID: 2, PeerURLs: []string{"http://a:1"}}, ErrPeerURLExists},
	}
	for _, c := range cases {
		if err := ms.validate(c.typ, c.id, c.m); !errors.Is(err, c.want) {
			t.Errorf("%s: validate = %v, want %v", c.what, err, c.want)
		}
	}
	ms.markRemoved(1)
	if err := ms.validate(raftpb.ConfChangeAddNode, 1, &member{ID: 1}); !errors.Is(err, ErrIDRemoved) {
		t.Errorf("re-adding a removed id: %v, want %v", err, ErrIDRemoved)
	}
	// The membership a snapshot carries decides the same after a restart.
	restored := newMembership()
	if err := restored.restoreSnapshot(ms.marshalSnapshot()); err != nil {
		t.Fatal(err)
	}
	if !restored.isRemoved(1) || restored.get(2) == nil || !restored.get(2).IsLearner {
		t.Fatalf("restored membership: %+v removed=%v", restored.all(), restored.isRemoved(1))
	}
}

func TestValidateJoin(t *testing.T) {
	u := func(s ...string) []url.URL {
		var out []url.URL
		for _, x := range s {
			p, err := url.Parse(x)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, *p)
		}
		return out
	}
	remote := []*member{
		{ID: 1, PeerURLs: []string{"http://a:2380"}},
		{ID: 2, PeerURLs: []string{"http://b:2380", "http://b2:2380"}},
		{ID: 3, PeerURLs: []string{"http://c:2380"}},
	}
	ok := map[string][]url.URL{"a": u("http://a:2380"), "b": u("http://b2:2380", "http://b:2380"), "c": u("http://c:2380")}
	if err := validateJoin(ok, remote); err != nil {
		t.Fatalf("matching --initial-cluster refused: %v", err)
	}
	for name, local := range map[string]map[string][]url.URL{
		"member count is unequal":               {"a": u("http://a:2380"), "c": u("http://c:2380")},
		"no match found for existing member (2": {"a": u("http://a:2380"), "b": u("http://b:2380"), "c": u("http://c:2380")},
	} {
		if err := validateJoin(local, remote); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("validateJoin = %v, want an error containing %q", err, name)
		}
	}
}

// --max-learners bounds the learners a conf change may add, when it is applied too.
func TestMembershipMaxLearners(t *testing.T) {
	for _, tc := range []struct {
		max, have int
		want      error
	}{{1, 0, nil}, {1, 1, ErrTooManyLearners}, {2, 1, nil}, {2, 2, ErrTooManyLearners}, {0, 0, ErrTooManyLearners}} {
		ms := newMembership()
		ms.maxLearners = tc.max
		ms.add(&member{ID: 1, Name: "m1", PeerURLs: []string{"http://a:1"}})
		for i := 0; i < tc.have; i++ {
			ms.add(&member{ID: uint64(10 + i), PeerURLs: []string{"http://l:" + string(rune('1'+i))}, IsLearner: true})
		}
		err := ms.validate(raftpb.ConfChangeAddLearnerNode, 99, &member{ID: 99, PeerURLs: []string{"http://new:1"}})
		if !errors.Is(err, tc.want) {
			t.Errorf("max %d with %d learners: %v, want %v", tc.max, tc.have, err, tc.want)
		}
	}
}
