package electiontest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hacoord/hacoord/election"
)

// Stamped is a State with the instant the recorder received it and the instant it had acted on it
// (told the Elector so with Outbox.Acted): later than At only for a State that ended a master
// interval while the recorder simulates a slow demote (Options.DemoteDelay).
type Stamped struct {
	At    time.Time
	Acted time.Time
	election.State
}

// Options tune a Recorder's consumer.
type Options struct {
	// DemoteDelay, when positive, is how long the recorder takes to "demote" after a State that ends
	// a master interval before it tells the Elector it has acted: the VIPs count as held until then.
	// An Elector that resigns before its demote was acted on then shows as split brain.
	DemoteDelay time.Duration
}

// Recorder runs one Candidate's Elector in a goroutine it owns and records every State it sends.
// Stop (also called in t.Cleanup) cancels Run and waits for it.
type Recorder struct {
	Name string
	Cand Candidate

	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned and every State is recorded

	mu      sync.Mutex
	states  []Stamped
	cuts    []time.Time // Kill and Stop instants: a master interval open then ends there
	stopped time.Time   // the Stop instant: no interval opens after it
	err     error
	changed chan struct{} // closed and replaced on every change
}

// Start starts cand.Elector.Run and records its States until Stop.
func Start(t *testing.T, name string, cand Candidate) *Recorder {
	t.Helper()
	return StartWith(t, name, cand, Options{})
}

// StartWith is Start with Options.
func StartWith(t *testing.T, name string, cand Candidate, o Options) *Recorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Recorder{Name: name, Cand: cand, cancel: cancel, done: make(chan struct{}), changed: make(chan struct{})}
	out := election.NewOutbox()
	runDone := make(chan error, 1)
	go func() { runDone <- cand.Elector.Run(ctx, out) }()
	go func() {
		defer close(r.done)
		for {
			select {
			case <-out.Ready():
				r.consume(out, o)
			case err := <-runDone: // Run has returned: nothing more is offered
				r.consume(out, Options{})
				r.update(func() { r.err = err })
				return
			}
		}
	}()
	t.Cleanup(func() {
		if err := r.Stop(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	})
	return r
}

// consume records every State waiting in out and tells the Elector it acted on each, after
// o.DemoteDelay for one that ends a master interval.
func (r *Recorder) consume(out *election.Outbox, o Options) {
	for {
		s, seq, ok := out.Take()
		if !ok {
			return
		}
		now := time.Now()
		var i int
		wasMaster := false
		r.update(func() {
			wasMaster = isMaster(r.states)
			r.states = append(r.states, Stamped{At: now, State: s})
			i = len(r.states) - 1
		})
		if wasMaster && s.Role != election.Master && o.DemoteDelay > 0 {
			t := time.NewTimer(o.DemoteDelay)
			<-t.C
		}
		acted := time.Now()
		r.update(func() { r.states[i].Acted = acted })
		out.Acted(seq)
	}
}

func (r *Recorder) update(f func()) {
	r.mu.Lock()
	f()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// stopTimeout bounds how long Stop waits for Run to return.
const stopTimeout = 15 * time.Second

// Stop cancels Run (the node resigns), waits for it to return, and returns its error, or an error if
// it did not return within 15s. The master interval open at this instant ends here. Idempotent.
func (r *Recorder) Stop() error {
	select {
	case <-r.done:
	default:
		r.update(func() {
			now := time.Now()
			r.cuts, r.stopped = append(r.cuts, now), now
		})
		r.cancel()
	}
	select {
	case <-r.done:
	case <-time.After(stopTimeout):
		return fmt.Errorf("Run did not return within %v of cancel", stopTimeout)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return fmt.Errorf("Run returned %w after cancel, want nil", r.err)
	}
	return nil
}

// Done is closed once Run has returned.
func (r *Recorder) Done() <-chan struct{} { return r.done }

// Kill calls Cand.Kill, recording the instant: the node counts as crashed there.
func (r *Recorder) Kill() {
	r.update(func() { r.cuts = append(r.cuts, time.Now()) })
	r.Cand.Kill()
}

// States returns a copy of the States recorded so far.
func (r *Recorder) States() []Stamped {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.states)
}

// Last returns the last State recorded (zero before the first).
func (r *Recorder) Last() Stamped {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.states) == 0 {
		return Stamped{}
	}
	return r.states[len(r.states)-1]
}

// Wait waits until cond holds for the recorded States, or fails t after timeout. cond is called
// after every new State, never with an empty list.
func (r *Recorder) Wait(t *testing.T, timeout time.Duration, what string, cond func([]Stamped) bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		states, ch := slices.Clone(r.states), r.changed
		r.mu.Unlock()
		if len(states) > 0 && cond(states) { // cond runs unlocked, and never sees an empty list
			return
		}
		select {
		case <-ch:
		case <-r.done:
			if st := r.States(); len(st) > 0 && cond(st) {
				return
			}
			t.Fatalf("%s: Run returned (%v) before %s; states:\n%s", r.Name, r.err, what, r.dump())
		case <-deadline.C:
			t.Fatalf("%s: no %s within %v; states:\n%s", r.Name, what, timeout, r.dump())
		}
	}
}

func (r *Recorder) dump() string {
	var b strings.Builder
	for _, s := range r.States() {
		fmt.Fprintf(&b, "  %s %s\n", s.At.Format("15:04:05.000"), fmtState(s.State))
	}
	return b.String()
}

func fmtState(s election.State) string {
	vu := ""
	if !s.ValidUntil.IsZero() {
		vu = " valid-until=" + s.ValidUntil.Format("15:04:05.000")
	}
	return fmt.Sprintf("%s term=%d leader=%s/%d%s reason=%q", s.Role, s.Term, s.Leader.Node, s.Leader.Term, vu, s.Reason)
}

// Interval is one term of mastership of one node, as its States tell it: from the receipt of the
// first Master State of the term to the earliest of its last ValidUntil, the receipt of the State
// that ended it, and a Kill or Stop. A Master State received after Stop opens none.
type Interval struct {
	Node       string
	Term       uint64
	Start, End time.Time
}

// Intervals returns r's master intervals in order.
func (r *Recorder) Intervals() []Interval {
	r.mu.Lock()
	states, cuts, stopped := slices.Clone(r.states), slices.Clone(r.cuts), r.stopped
	r.mu.Unlock()

	var out []Interval
	var cur *Interval
	closeAt := func(at time.Time) {
		if cur == nil {
			return
		}
		if at.Before(cur.End) || cur.End.IsZero() {
			cur.End = at
		}
		out = append(out, *cur)
		cur = nil
	}
	closed := map[uint64]bool{} // terms already ended: late Master States of them do not reopen
	for _, s := range states {
		// A Kill or Stop before this State ends the open interval.
		for len(cuts) > 0 && !cuts[0].After(s.At) {
			if cur != nil {
				closed[cur.Term] = true
			}
			closeAt(cuts[0])
			cuts = cuts[1:]
		}
		if s.Role == election.Master && cur != nil && s.Term == cur.Term {
			if s.ValidUntil.IsZero() {
				cur.End = time.Time{} // no deadline: open until demoted
			} else if s.ValidUntil.After(cur.End) {
				cur.End = s.ValidUntil
			}
			continue
		}
		if cur != nil { // any other State ends the interval, once the recorder has acted on it
			closed[cur.Term] = true
			end := s.Acted
			if end.IsZero() {
				end = time.Now() // still demoting
			}
			closeAt(end)
		}
		// After Stop the node's consumer has demoted and acts on nothing more (the Coordinator's
		// shutdown), so a Master State still in flight then opens no interval.
		if s.Role == election.Master && !closed[s.Term] && (stopped.IsZero() || s.At.Before(stopped)) {
			cur = &Interval{Node: r.Name, Term: s.Term, Start: s.At, End: s.ValidUntil}
		}
	}
	if cur != nil {
		if len(cuts) > 0 {
			closeAt(cuts[0])
		} else {
			if cur.End.IsZero() {
				cur.End = time.Now()
			}
			out = append(out, *cur)
		}
	}
	return out
}

// CheckNoOverlap fails t if two master intervals of different recorders overlap, or if terms do not
// rise in the order the intervals started.
func CheckNoOverlap(t *testing.T, rs ...*Recorder) {
	t.Helper()
	checkNoOverlap(t, true, rs...)
}

func checkNoOverlap(t *testing.T, terms bool, rs ...*Recorder) {
	t.Helper()
	var all []Interval
	for _, r := range rs {
		all = append(all, r.Intervals()...)
	}
	slices.SortFunc(all, func(a, b Interval) int { return a.Start.Compare(b.Start) })
	for i, a := range all {
		for _, b := range all[i+1:] {
			if a.Node != b.Node && b.Start.Before(a.End) {
				t.Errorf("split brain: %s master (term %d) until %s, %s master (term %d) from %s",
					a.Node, a.Term, a.End.Format("15:04:05.000"), b.Node, b.Term, b.Start.Format("15:04:05.000"))
			}
		}
		if terms && i > 0 && a.Term <= all[i-1].Term {
			t.Errorf("term did not rise: %s term %d after %s term %d", a.Node, a.Term, all[i-1].Node, all[i-1].Term)
		}
	}
}
