// Package server is one Cairn member: it wires raftnode, mvcc, lease and auth together,
// proposes writes through raft and waits for their results, runs the single apply loop that
// applies committed entries (and leader snapshots) in order, serves linearizable reads
// behind ReadIndex, forwards to the leader what only it can answer (lease keep-alives and
// time-to-live, learner promotion), and keeps membership, alarms, corruption checks,
// quotas and status.
//
// It must never apply a write that did not come out of the raft log, and never acknowledge
// one before the log entry holding it is durable.
package server
