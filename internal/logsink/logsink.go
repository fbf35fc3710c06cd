// Package logsink is a log writer that never blocks the goroutine that logs (Sink), for the
// daemon and its fence guard.
package logsink

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Max bounds what a Sink holds while its writer is blocked.
const Max = 1 << 20

// Flush bounds how long Sync and Close wait for the queue to drain.
const Flush = time.Second

// Sink is a log writer that never blocks the goroutine that logs: Write copies the entry (zap
// writes one entry per call) into a bounded queue, and one goroutine, started by New and
// ended by Close, writes the queue to w in order. While w blocks (a full pipe to journald, a
// terminal paused with Ctrl-S), the queue fills to Max and further entries are dropped and
// counted; once w takes writes again, a line says how many were lost. So a stuck log reader cannot
// hold up the fence timer, the guard's release or anything else that logs. Safe for concurrent use.
type Sink struct {
	w    io.Writer
	wake chan struct{} // capacity 1: the queue grew, or Close was called
	done chan struct{} // closed when the writer goroutine has returned

	mu      sync.Mutex
	queue   []entry
	size    int // bytes in queue
	dropped int // entries dropped since the last report
	closed  bool
}

// entry is a log entry, or (p nil) a marker closed once everything before it is written.
type entry struct {
	p       []byte
	written chan struct{}
}

// New returns a Sink writing to w and starts its writer goroutine; Close ends it.
func New(w io.Writer) *Sink {
	s := &Sink{w: w, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go s.run()
	return s
}

// Write queues a copy of p, or drops it if the queue is full or the sink closed. It never blocks
// and never fails: a log entry is not worth stopping for.
func (s *Sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	if s.closed || s.size+len(p) > Max {
		s.dropped++
		s.mu.Unlock()
		return len(p), nil
	}
	s.queue = append(s.queue, entry{p: append([]byte(nil), p...)})
	s.size += len(p)
	s.mu.Unlock()
	s.poke()
	return len(p), nil
}

// Sync waits, at most Flush, for what was queued before it to be written.
func (s *Sink) Sync() error {
	m := make(chan struct{})
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.queue = append(s.queue, entry{written: m})
	s.mu.Unlock()
	s.poke()
	t := time.NewTimer(Flush)
	defer t.Stop()
	select {
	case <-m:
	case <-t.C:
	}
	return nil
}

// Close stops taking entries, waits (at most Flush) for the queue to be written, and ends
// the writer goroutine. If w is still blocked then, Close returns without waiting further: the
// goroutine ends when w's Write returns. Idempotent.
func (s *Sink) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.poke()
	t := time.NewTimer(Flush)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
	}
	return nil
}

func (s *Sink) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run writes the queue to w until Close, and what is queued then.
func (s *Sink) run() {
	defer close(s.done)
	for {
		s.mu.Lock()
		batch, dropped, closed := s.queue, s.dropped, s.closed
		s.queue, s.size, s.dropped = nil, 0, 0
		s.mu.Unlock()
		for _, e := range batch {
			if e.written != nil {
				close(e.written)
				continue
			}
			_, _ = s.w.Write(e.p)
		}
		if dropped > 0 {
			_, _ = fmt.Fprintf(s.w, "hacoord: %d log entries dropped: the log's reader did not keep up\n", dropped)
		}
		switch {
		case len(batch) > 0 || dropped > 0:
			continue // more may have come meanwhile
		case closed:
			return
		}
		<-s.wake
	}
}
