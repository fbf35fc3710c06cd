package zk

import (
	"context"
	"sync"
	"time"

	"github.com/hacoord/hacoord/election"
)

// reporter offers States on Run's Outbox (election.Outbox: latest wins, acknowledged) and enforces
// the deadline on its own side: if the last Master State's ValidUntil passes with no newer State, it
// reports Fault, so a node cut off from ZooKeeper says so even while the campaign loop is stuck in a
// request.
type reporter struct {
	out *election.Outbox

	mu  sync.Mutex
	seq uint64        // version of the last State set here
	sig chan struct{} // cap 1: a State was set
}

func newReporter(out *election.Outbox) *reporter {
	return &reporter{out: out, sig: make(chan struct{}, 1)}
}

// set offers s and returns its version, for waitActed.
func (r *reporter) set(s election.State) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq = r.out.Set(s)
	select {
	case r.sig <- struct{}{}:
	default:
	}
	return r.seq
}

// last returns the latest State offered (or synthesised at a deadline).
func (r *reporter) last() election.State { return r.out.Last() }

// waitActed waits until the consumer has acted on the State numbered seq, or a later one (for a
// non-Master State: the VIPs are gone), or until ctx is done (it then returns ctx's cause). There is
// no other bound: resigning before the demote is done could let another node bind the VIPs while
// they are still here.
func (r *reporter) waitActed(ctx context.Context, seq uint64) error {
	return r.out.WaitActed(ctx, seq)
}

// run enforces the deadline of the last Master State until ctx is done.
func (r *reporter) run(ctx context.Context) {
	deadline := time.NewTimer(time.Hour)
	deadline.Stop()
	defer deadline.Stop()
	var seq uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.sig:
			r.mu.Lock()
			seq = r.seq
			cur := r.out.Last()
			r.mu.Unlock()
			deadline.Stop()
			if cur.Role == election.Master && !cur.ValidUntil.IsZero() {
				deadline.Reset(time.Until(cur.ValidUntil))
			}
		case <-deadline.C:
			r.mu.Lock()
			if r.seq == seq { // no newer State arrived meanwhile
				r.seq = r.out.Update(func(s *election.State) {
					if s.Role == election.Master {
						*s = election.State{Role: election.Fault, Term: s.Term,
							Reason: "fencing deadline passed with no reply from ZooKeeper"}
					}
				})
			}
			r.mu.Unlock()
		}
	}
}
