package zk

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/hacoord/hacoord/election"
)

// reporter hands States to the consumer of Run's out channel with latest-value semantics: set never
// blocks (the campaign loop and its renewals must not wait for a busy Coordinator), a newer State
// replaces one not yet delivered, and an unchanged State is not sent again.
//
// It also enforces the deadline on its own side: if the last Master State's ValidUntil passes with
// no newer State, it reports Fault, so a node cut off from ZooKeeper says so even while the campaign
// loop is stuck in a request.
type reporter struct {
	mu        sync.Mutex
	latest    election.State
	has       bool
	seq       uint64 // of latest
	delivered uint64
	delivc    chan struct{} // closed and replaced on each delivery
	sig       chan struct{} // cap 1: latest changed
}

func newReporter() *reporter {
	return &reporter{delivc: make(chan struct{}), sig: make(chan struct{}, 1)}
}

// sameState reports whether a and b tell the consumer the same thing.
func sameState(a, b election.State) bool {
	return a.Role == b.Role && a.Reason == b.Reason && a.Term == b.Term && a.Contact == b.Contact && a.ValidUntil.Equal(b.ValidUntil) &&
		bytes.Equal(a.Leader.Marshal(), b.Leader.Marshal())
}

// set offers s and returns its sequence number, for waitDelivered.
func (r *reporter) set(s election.State) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.has && sameState(r.latest, s) {
		return r.seq
	}
	r.latest, r.has = s, true
	r.seq++
	select {
	case r.sig <- struct{}{}:
	default:
	}
	return r.seq
}

// last returns the latest State offered (or synthesised at a deadline).
func (r *reporter) last() election.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.latest
}

// waitDelivered waits until the State numbered seq, or a later one, has been received by the
// consumer, at most timeout or until ctx is done. It reports whether it was.
func (r *reporter) waitDelivered(ctx context.Context, seq uint64, timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		r.mu.Lock()
		ok, c := r.delivered >= seq, r.delivc
		r.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-c:
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// run delivers States on out until ctx is done.
func (r *reporter) run(ctx context.Context, out chan<- election.State) {
	deadline := time.NewTimer(time.Hour)
	deadline.Stop()
	defer deadline.Stop()
	var (
		cur     election.State
		curSeq  uint64
		pending bool
	)
	for {
		var send chan<- election.State
		if pending {
			send = out
		}
		select {
		case <-ctx.Done():
			return
		case <-r.sig:
			r.mu.Lock()
			cur, curSeq, pending = r.latest, r.seq, true
			r.mu.Unlock()
			deadline.Stop()
			if cur.Role == election.Master && !cur.ValidUntil.IsZero() {
				deadline.Reset(time.Until(cur.ValidUntil))
			}
		case send <- cur:
			pending = false
			r.mu.Lock()
			if curSeq > r.delivered {
				r.delivered = curSeq
				close(r.delivc)
				r.delivc = make(chan struct{})
			}
			r.mu.Unlock()
		case <-deadline.C:
			r.mu.Lock()
			if r.seq == curSeq && r.latest.Role == election.Master { // no newer State arrived meanwhile
				f := election.State{Role: election.Fault, Term: cur.Term,
					Reason: "fencing deadline passed with no reply from ZooKeeper"}
				r.latest = f
				r.seq++
				cur, curSeq, pending = f, r.seq, true
			}
			r.mu.Unlock()
		}
	}
}
