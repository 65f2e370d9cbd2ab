package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cairn-kv/cairn/mvcc"
	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
	"github.com/cairn-kv/cairn/raftnode"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
)

// maxBatchRequests bounds how many requests one batched raft entry holds.
const maxBatchRequests = 128

// batchField is InternalRaftRequest.batch's field number: a batched entry is the
// concatenation of its requests' encodings, each framed as that field.
const batchField protowire.Number = 12

// errNotBatchable answers a request of a kind that is never batched found in a batched
// entry (no member proposes one; applying it anyway could bypass its own handling).
var errNotBatchable = errors.New("server: request kind may not be batched")

// isBatchable says whether r may share a raft entry with other requests: client KV
// writes only (put, delete range, txn). Everything else (compaction, leases, alarms,
// auth, member attributes, conf changes) has handling of its own at apply time and is
// proposed alone.
func isBatchable(r *pb.InternalRaftRequest) bool {
	return r.Put != nil || r.DeleteRange != nil || r.Txn != nil
}

// queuedProposal is one encoded request waiting to be handed to raft; done gets the
// result of proposing the entry that holds it. ctx is its caller's and exp its request
// timeout: once either ends the request is not proposed any more (as a request proposed
// alone), so a write whose client was told it timed out is not applied later.
type queuedProposal struct {
	ctx  context.Context
	exp  *expiry
	data []byte
	done chan error
}

// proposalBatcher proposes client KV writes, coalescing those that queue up into one
// entry (raft thesis 10.2): one WAL record, one append per follower, one store write lock
// at apply. Requests queue while a proposal is under way, and while the Ready loop makes
// a write durable (syncWrite): raft could not write them sooner, as its next Ready comes
// only once that write is done. Under load that is most of the time, so an entry holds
// what arrived during a whole fsync (24 requests on average under put-100 on one member,
// against 1.9 when only a proposal under way held them back). It never waits for more: a
// lone request arriving while neither holds is proposed at once, as it is, by its own
// goroutine (no hop to the batcher's goroutine and back); the batcher's goroutine
// proposes the queue as batches, until it is empty, once neither holds.
type proposalBatcher struct {
	s        *Server
	maxBytes int
	// sizes observes the number of requests per proposed entry.
	observe func(n int)
	// kick wakes run when it becomes the proposer.
	kick chan struct{}

	mu    sync.Mutex
	queue []*queuedProposal // waiting for run, in arrival order
	// proposing: a proposal is under way, by a lone request's caller or by run; who
	// sets it clears it or hands the role to run (with a kick) if requests queued and
	// the Ready loop is not writing.
	proposing bool
	// writing: the Ready loop is making a write durable (syncWrite).
	writing bool
}

// syncWrite is the Ready loop's notice that a write it fsyncs starts (true) or ended
// (false): the requests queued meanwhile are proposed once it ended, by run.
func (b *proposalBatcher) syncWrite(writing bool) {
	b.mu.Lock()
	b.writing = writing
	if !writing && !b.proposing && len(b.queue) > 0 {
		b.proposing = true
		b.kickRun()
	}
	b.mu.Unlock()
}

// kickRun wakes run (a kick still pending wakes it too).
func (b *proposalBatcher) kickRun() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

func newProposalBatcher(s *Server) *proposalBatcher {
	return &proposalBatcher{
		s:    s,
		kick: make(chan struct{}, 1),
		// A batched entry is no larger than the largest request a member accepts, and
		// than what raft puts in one append message.
		maxBytes: min(int(s.cfg.MaxRequestBytes), raftnode.MaxSizePerMsg),
		observe:  func(n int) { s.metrics.proposalBatchRequests.Observe(float64(n)) },
	}
}

// propose hands data (an encoded batchable request) to raft, alone or queued for a
// batch, and returns once the entry holding it was handed to raft, or ctx or exp ended.
func (b *proposalBatcher) propose(ctx context.Context, exp *expiry, data []byte) error {
	b.mu.Lock()
	if !b.proposing && !b.writing {
		b.proposing = true
		b.mu.Unlock()
		// Alone: proposed as it is, with nothing queued (no allocation).
		err := b.proposeEntry(data, 1, exp, func() (context.Context, context.CancelFunc) { return exp.bounded(ctx) })
		b.mu.Lock()
		if len(b.queue) > 0 && !b.writing {
			b.kickRun() // run proposes what queued meanwhile
		} else {
			b.proposing = false // syncWrite(false) hands what queues to run
		}
		b.mu.Unlock()
		return err
	}
	p := &queuedProposal{ctx: ctx, exp: exp, data: data, done: make(chan error, 1)}
	b.queue = append(b.queue, p)
	b.mu.Unlock()
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err() // run drops p, or proposes it with others still waiting
	case <-exp.Done():
		return exp.Err()
	case <-b.s.stopping:
		return ErrStopped
	}
}

// run proposes the queue as batches whenever it is kicked, until it is empty or the Ready
// loop writes, until the member stops.
func (b *proposalBatcher) run() {
	var batch []*queuedProposal
	for {
		select {
		case <-b.kick:
		case <-b.s.stopping:
			return
		}
		for {
			var size int
			batch = batch[:0]
			b.mu.Lock()
			if !b.writing {
				batch, size = b.takeBatch(batch)
			}
			if len(batch) == 0 {
				b.proposing = false
				b.mu.Unlock()
				break
			}
			b.mu.Unlock()
			b.proposeBatch(batch, size)
			clear(batch)
		}
	}
}

// takeBatch moves the longest prefix of the queue that fits in one entry to batch
// (b.mu held), answering abandoned requests on the way.
func (b *proposalBatcher) takeBatch(batch []*queuedProposal) ([]*queuedProposal, int) {
	size, n := 0, 0
	for ; n < len(b.queue) && len(batch) < maxBatchRequests; n++ {
		p := b.queue[n]
		if p.abandoned() {
			continue
		}
		if len(batch) > 0 && size+framedSize(p.data) > b.maxBytes {
			break
		}
		batch = append(batch, p)
		size += framedSize(p.data)
	}
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	return batch, size
}

// abandoned answers p with its context's or expiry's error if its caller gave up.
func (p *queuedProposal) abandoned() bool {
	err := p.ctx.Err()
	if err == nil {
		err = p.exp.Err()
	}
	if err != nil {
		p.done <- err
		return true
	}
	return false
}

// proposeBatch hands one entry to raft: a lone request as it is, several as a batch.
func (b *proposalBatcher) proposeBatch(batch []*queuedProposal, size int) {
	data := batch[0].data
	if len(batch) > 1 {
		data = make([]byte, 0, size)
		for _, p := range batch {
			data = appendBatched(data, p.data)
		}
	}
	latest := batch[0].exp
	for _, p := range batch[1:] {
		if p.exp.deadline.After(latest.deadline) {
			latest = p.exp
		}
	}
	err := b.proposeEntry(data, len(batch), latest, func() (context.Context, context.CancelFunc) { return whileAnyWaits(batch) })
	for _, p := range batch {
		p.done <- err
	}
}

// proposeEntry hands raft one entry (data) holding n requests, exp the latest of their
// expiries. raft takes a proposal at once while it knows a leader: exp alone bounds the
// call then (should the leader go just before it), with no context derived from the
// callers' (eight allocations per write). Without a leader raft waits for one, with the
// context wait gives: while any request of the entry still has a caller waiting.
func (b *proposalBatcher) proposeEntry(data []byte, n int, exp *expiry, wait func() (context.Context, context.CancelFunc)) error {
	b.observe(n)
	if b.s.node.Leader() != 0 {
		return b.s.node.Propose(exp, data)
	}
	ctx, cancel := wait()
	defer cancel()
	return b.s.node.Propose(ctx, data)
}

// whileAnyWaits is a context that ends once every request of batch has its context or
// expiry ended (nobody waits for the entry any more); one caller giving up does not
// withdraw its neighbours' requests.
func whileAnyWaits(batch []*queuedProposal) (context.Context, context.CancelFunc) {
	if len(batch) == 1 {
		return batch[0].exp.bounded(batch[0].ctx)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var waiting atomic.Int32
	waiting.Store(int32(len(batch)))
	stops := make([]func(), len(batch))
	for i, p := range batch {
		pctx, pcancel := p.exp.bounded(p.ctx)
		stop := context.AfterFunc(pctx, func() {
			if waiting.Add(-1) == 0 {
				cancel()
			}
		})
		stops[i] = func() {
			stop()
			pcancel()
		}
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

// appendBatched appends one encoded request to the batched entry dst.
func appendBatched(dst, data []byte) []byte {
	dst = protowire.AppendTag(dst, batchField, protowire.BytesType)
	return protowire.AppendBytes(dst, data)
}

// framedSize is how many bytes data takes in a batched entry.
func framedSize(data []byte) int {
	return protowire.SizeTag(batchField) + protowire.SizeBytes(len(data))
}

// applyBatched applies the requests of a batched entry: each in a store write
// transaction of its own, in order, exactly as if each were an entry of its own (its own
// revision, its own answer; one failing does not affect the others), the entry recorded
// once after the last.
func (s *Server) applyBatched(e *raftpb.Entry, reqs []*pb.InternalRaftRequest) error {
	res := make([]applyResult, len(reqs))
	err := s.store.UpdateEach(e.GetIndex(), e.GetTerm(), len(reqs), func(i int, tx *mvcc.WriteTxn) error {
		if !isBatchable(reqs[i]) || len(reqs[i].Batch) > 0 {
			res[i] = applyResult{err: errNotBatchable}
		} else {
			res[i] = s.applyRequest(tx, reqs[i], e.GetIndex())
		}
		return res[i].err
	}, func(i int, err error) {
		if err == nil && res[i].done != nil {
			res[i].done()
		}
	})
	if errors.Is(err, mvcc.ErrBackendFailed) {
		return fmt.Errorf("server: apply entry %d: %w", e.GetIndex(), err)
	}
	for i, r := range reqs {
		s.proposals.trigger(r.Id, res[i])
	}
	return nil
}
