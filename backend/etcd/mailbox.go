package etcd

import (
	"context"
	"slices"
	"sync"

	"github.com/hacoord/hacoord/election"
)

// mailbox is the latest-value handoff between the elector's goroutines and out: update never blocks,
// and run delivers the newest State, skipping any superseded while out was not being read (a busy
// Coordinator sees the latest renewal, not a backlog).
type mailbox struct {
	mu    sync.Mutex
	cur   election.State
	seq   uint64        // version of cur
	sent  uint64        // version last delivered
	wake  chan struct{} // cap 1: cur changed
	sentc chan struct{} // closed (and replaced) when sent advances
}

func newMailbox() *mailbox {
	return &mailbox{wake: make(chan struct{}, 1), sentc: make(chan struct{})}
}

// update applies f to a copy of the current State and, if that changed it, stores it for delivery.
// It returns the version that holds the result.
func (m *mailbox) update(f func(s *election.State)) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := m.cur
	next.Leader.VIPs = slices.Clone(next.Leader.VIPs)
	f(&next)
	if sameState(next, m.cur) {
		return m.seq
	}
	m.cur = next
	m.seq++
	select {
	case m.wake <- struct{}{}:
	default:
	}
	return m.seq
}

// snapshot returns the current State.
func (m *mailbox) snapshot() election.State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur
}

// run delivers States on out until ctx is done.
func (m *mailbox) run(ctx context.Context, out chan<- election.State) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.wake:
		}
		m.mu.Lock()
		s, seq, pending := m.cur, m.seq, m.seq > m.sent
		m.mu.Unlock()
		if !pending {
			continue
		}
		select {
		case out <- s:
		case <-ctx.Done():
			return
		}
		m.mu.Lock()
		m.sent = seq
		close(m.sentc)
		m.sentc = make(chan struct{})
		m.mu.Unlock()
	}
}

// waitSent waits until version seq (or a later one) has been delivered, or ctx is done.
func (m *mailbox) waitSent(ctx context.Context, seq uint64) error {
	for {
		m.mu.Lock()
		done, c := m.sent >= seq, m.sentc
		m.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-c:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

func sameState(a, b election.State) bool {
	return a.Role == b.Role && a.Term == b.Term && a.Reason == b.Reason && a.Contact == b.Contact &&
		a.ValidUntil.Equal(b.ValidUntil) && sameRecord(a.Leader, b.Leader)
}

func sameRecord(a, b election.Record) bool {
	return a.Group == b.Group && a.Node == b.Node && a.Address == b.Address && a.Term == b.Term &&
		a.Since.Equal(b.Since) && slices.Equal(a.VIPs, b.VIPs)
}
