package election

import (
	"context"
	"slices"
	"sync"
)

// Outbox is the one hand-off of States from an Elector to its consumer (the Coordinator, or a test
// recorder). It is written once here for every backend.
//
// Latest wins: Update never blocks, and the consumer takes only the newest State, so an Elector's
// liveness work (keepalives, pings, adverts) never waits for a consumer busy in Promote or Demote,
// and a busy consumer sees the latest renewal, not a backlog. A State equal to the current one is
// not offered again.
//
// Acknowledged: the consumer calls Acted once it has acted on a State it took (for a non-Master
// State: every Action is demoted, the VIPs are gone). An Elector that is about to give up its
// candidacy on purpose (resign, revoke, delete its candidate) first offers a non-Master State and
// waits with WaitActed until the consumer has acted on it. That is the rule "demote before resign":
// no other node can win while this one still holds the VIPs.
//
// Safe for one producer side (any number of goroutines) and one consumer.
type Outbox struct {
	mu     sync.Mutex
	cur    State
	seq    uint64        // version of cur; 0: nothing offered yet
	taken  uint64        // version the consumer took last
	acted  uint64        // version the consumer has acted on
	ready  chan struct{} // cap 1: signalled when seq passes taken
	actedc chan struct{} // closed and replaced whenever acted advances
}

// NewOutbox returns an empty Outbox.
func NewOutbox() *Outbox {
	return &Outbox{ready: make(chan struct{}, 1), actedc: make(chan struct{})}
}

// Update applies f to a copy of the current State and, if that changed it, offers the result. It
// returns the version that holds the result, for WaitActed.
func (o *Outbox) Update(f func(s *State)) uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	next := o.cur
	next.Leader.VIPs = slices.Clone(next.Leader.VIPs)
	f(&next)
	if o.seq > 0 && next.Same(o.cur) {
		return o.seq
	}
	o.cur = next
	o.seq++
	select {
	case o.ready <- struct{}{}:
	default:
	}
	return o.seq
}

// Set offers s (see Update).
func (o *Outbox) Set(s State) uint64 { return o.Update(func(p *State) { *p = s }) }

// Last returns the State offered last.
func (o *Outbox) Last() State {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cur
}

// WaitActed waits until the consumer has acted on version seq or a later one, or ctx is done (then
// it returns ctx's cause).
func (o *Outbox) WaitActed(ctx context.Context, seq uint64) error {
	for {
		o.mu.Lock()
		done, c := o.acted >= seq, o.actedc
		o.mu.Unlock()
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

// Ready is signalled when a State newer than the one taken last is waiting. The consumer then calls
// Take.
func (o *Outbox) Ready() <-chan struct{} { return o.ready }

// Take returns the newest State and its version, and false when there is none newer than the one
// taken last.
func (o *Outbox) Take() (State, uint64, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.seq <= o.taken {
		return State{}, 0, false
	}
	o.taken = o.seq
	s := o.cur
	s.Leader.VIPs = slices.Clone(s.Leader.VIPs)
	return s, o.seq, true
}

// Next waits for a State newer than the one taken last and takes it; it returns ctx's cause when ctx
// is done first.
func (o *Outbox) Next(ctx context.Context) (State, uint64, error) {
	for {
		if s, seq, ok := o.Take(); ok {
			return s, seq, nil
		}
		select {
		case <-o.ready:
		case <-ctx.Done():
			return State{}, 0, context.Cause(ctx)
		}
	}
}

// Acted tells the producer that the consumer has acted on version seq (and so on every earlier one).
func (o *Outbox) Acted(seq uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if seq > o.acted {
		o.acted = seq
		close(o.actedc)
		o.actedc = make(chan struct{})
	}
}

// TakeAll takes every State waiting, calls act with each and acknowledges it once act returns. It is
// the consumer's loop body after Ready fired.
func (o *Outbox) TakeAll(act func(State)) {
	for {
		s, seq, ok := o.Take()
		if !ok {
			return
		}
		act(s)
		o.Acted(seq)
	}
}
