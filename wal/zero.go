package wal

import (
	"os"
	"sync"
)

const (
	// zeroChunk is how much of the segment one background write fills with zeros.
	zeroChunk = 1 << 20
	// zeroAhead is how far past the appends the zeros are kept.
	zeroAhead = 4 << 20
)

// zeroFiller writes zeros, and fdatasyncs them, ahead of the appends to the last segment.
// A preallocated block is "unwritten" until first written, and the fdatasync after that
// first write also commits its conversion to the file system's journal: measured on
// ext4 here, appends of 8 KiB took 190 µs and 78 µs of CPU per fdatasync in preallocated
// space, 130 µs and 57 µs (zeroing included) in space zeroed ahead. Zeros past the last
// record are what a preallocated segment holds anyway: the log ends there.
//
// It never writes below the appends: a chunk starts at or past the end of what was
// appended, and an append that would reach into the chunk being zeroed waits for it.
type zeroFiller struct {
	mu   sync.Mutex
	done *sync.Cond // a chunk was finished, or the filler stopped
	f    *os.File   // the last segment
	// appended is the end of the appends to f; zeroed the end of the zeros written and
	// synced (or of the appends, if further); limit where zeroing stops (the segment's
	// preallocated size).
	appended, zeroed, limit int64
	// busyFrom..busyTo is the chunk being written now (empty when equal).
	busyFrom, busyTo int64
	stopped          bool
	kick             chan struct{}
	exited           chan struct{}
}

func newZeroFiller(f *os.File, appended, limit int64) *zeroFiller {
	z := &zeroFiller{f: f, appended: appended, zeroed: appended, limit: limit,
		kick: make(chan struct{}, 1), exited: make(chan struct{})}
	z.done = sync.NewCond(&z.mu)
	go z.run()
	return z
}

// beforeAppend is called before end-n..end of f is written: it waits while that range
// overlaps the chunk being zeroed, then records the appends' new end and wakes the
// filler if the zeros ahead run short.
func (z *zeroFiller) beforeAppend(end int64, n int) {
	z.mu.Lock()
	for z.busyFrom < z.busyTo && end > z.busyFrom && end-int64(n) < z.busyTo {
		z.done.Wait()
	}
	z.appended = max(z.appended, end)
	short := z.zeroed-z.appended < zeroAhead/2 && z.zeroed < z.limit
	z.mu.Unlock()
	if short {
		select {
		case z.kick <- struct{}{}:
		default:
		}
	}
}

// reset moves the filler to a new last segment whose appends end at appended, once the
// chunk under way (in the old one) is done.
func (z *zeroFiller) reset(f *os.File, appended, limit int64) {
	z.mu.Lock()
	for z.busyFrom < z.busyTo {
		z.done.Wait()
	}
	z.f, z.appended, z.zeroed, z.limit = f, appended, appended, limit
	z.mu.Unlock()
}

// stop ends the filler once the chunk under way is done.
func (z *zeroFiller) stop() {
	z.mu.Lock()
	z.stopped = true
	z.mu.Unlock()
	select {
	case z.kick <- struct{}{}:
	default:
	}
	<-z.exited
}

func (z *zeroFiller) run() {
	defer close(z.exited)
	zeros := make([]byte, zeroChunk)
	for range z.kick {
		for {
			z.mu.Lock()
			if z.stopped {
				z.mu.Unlock()
				return
			}
			from := max(z.zeroed, z.appended)
			to := min(from+zeroChunk, z.limit)
			if from >= to || z.zeroed-z.appended >= zeroAhead {
				z.mu.Unlock()
				break
			}
			f := z.f
			z.busyFrom, z.busyTo = from, to
			z.mu.Unlock()

			_, err := f.WriteAt(zeros[:to-from], from)
			if err == nil {
				err = fdatasync(f)
			}

			z.mu.Lock()
			z.busyFrom, z.busyTo = 0, 0
			if err != nil {
				// Out of space, say: the appends fill the rest as they go. Only in
				// this segment: the next one is zeroed again.
				z.limit = 0
			} else if z.f == f {
				z.zeroed = max(z.zeroed, to)
			}
			z.done.Broadcast()
			z.mu.Unlock()
		}
	}
}
