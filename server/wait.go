package server

import (
	"sync"
)

// applyResult is what applying one proposal produced, handed to its waiter.
type applyResult struct {
	resp interface{}
	err  error
	// compacted is closed when a physical compaction finished on disk.
	compacted <-chan struct{}
	// done, if set, runs in the apply loop once the request's store txn has ended
	// successfully: in-memory state (the lessor's key sets) that follows the store.
	done func()
}

// proposalWaiters maps proposal ids to the callers waiting for their results.
type proposalWaiters struct {
	mu sync.Mutex
	m  map[uint64]chan applyResult
}

func newProposalWaiters() *proposalWaiters {
	return &proposalWaiters{m: make(map[uint64]chan applyResult)}
}

func (w *proposalWaiters) register(id uint64) <-chan applyResult {
	ch := make(chan applyResult, 1)
	w.mu.Lock()
	w.m[id] = ch
	w.mu.Unlock()
	return ch
}

// trigger hands r to the waiter of id, if one is still waiting.
func (w *proposalWaiters) trigger(id uint64, r applyResult) {
	w.mu.Lock()
	ch, ok := w.m[id]
	delete(w.m, id)
	w.mu.Unlock()
	if ok {
		ch <- r
	}
}

func (w *proposalWaiters) cancel(id uint64) {
	w.mu.Lock()
	delete(w.m, id)
	w.mu.Unlock()
}

// appliedWaiters releases callers once the applied index reaches what they wait for.
type appliedWaiters struct {
	mu      sync.Mutex
	applied uint64
	waits   map[uint64][]chan struct{}
}

func newAppliedWaiters(applied uint64) *appliedWaiters {
	return &appliedWaiters{applied: applied, waits: map[uint64][]chan struct{}{}}
}

// wait returns a channel closed once index is applied.
func (a *appliedWaiters) wait(index uint64) <-chan struct{} {
	ch := make(chan struct{})
	a.mu.Lock()
	defer a.mu.Unlock()
	if index <= a.applied {
		close(ch)
		return ch
	}
	a.waits[index] = append(a.waits[index], ch)
	return ch
}

func (a *appliedWaiters) trigger(applied uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.applied = applied
	for idx, chs := range a.waits {
		if idx <= applied {
			for _, ch := range chs {
				close(ch)
			}
			delete(a.waits, idx)
		}
	}
}
