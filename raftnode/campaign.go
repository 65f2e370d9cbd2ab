package raftnode

import "go.etcd.io/raft/v3"

// seekingLeader says whether a lone voter should still campaign without waiting out an
// election timeout, and campaigns once it can. A member that is the only voter has
// nobody to wait for, so a fresh or restarted single-member cluster is ready at once;
// etcd shortens that wait by advancing its ticks instead.
//
// raft refuses to campaign while conf changes it has committed are not yet applied (a
// fresh member's bootstrap entries, a restarted member's log), and its configuration
// is known only once the apply loop handed those changes back through
// ApplyConfChange: so this is retried on every tick and every wake-up of the Ready loop
// (ApplyConfChange wakes it) until a leader is known, the campaign is started, or the configuration has other
// voters (then the normal election timeout decides). raft counts an entry applied once
// its Ready is advanced, before the apply loop has it: a conf change handed to the apply
// loop and not yet back also waits. Without that, a restarted member of a 3-member
// cluster whose log still holds the bootstrap entries found itself the only voter after
// the first one and elected itself alone (a split brain; e2e TestLinearizability).
func (n *Node) seekingLeader() bool {
	if n.lead.Load() != 0 {
		return false
	}
	st := n.Status()
	if st.Lead != 0 || st.RaftState != raft.StateFollower {
		return false
	}
	if len(st.Config.Voters[1]) > 0 { // joint configuration: a change is still under way
		return true
	}
	voters := st.Config.Voters[0].Slice()
	switch {
	case len(voters) == 0: // the configuration is still in entries being applied
		return true
	case len(voters) > 1 || voters[0] != n.id:
		return false
	case st.Applied < st.GetCommit(): // raft would refuse: committed conf changes pending
		return true
	case n.confApplied.Load() < n.confDelivered.Load(): // the apply loop has some still
		return true
	}
	_ = n.withRaft(func(rn *raft.RawNode) error { return rn.Campaign() })
	return false
}
