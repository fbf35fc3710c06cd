package election

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// scripted is an Elector whose States come from the test.
type scripted struct {
	in      chan State
	yields  int
	mu      sync.Mutex
	stopped chan struct{}
	rec     *recorder
}

func newScripted(rec *recorder) *scripted {
	return &scripted{in: make(chan State), stopped: make(chan struct{}), rec: rec}
}

// Run hands each State from the test to the Coordinator and waits until it has acted on it, so a
// test's send returns once the Coordinator has started on the State.
func (e *scripted) Run(ctx context.Context, out *Outbox) error {
	defer close(e.stopped)
	for {
		select {
		case <-ctx.Done():
			e.rec.add("elector stopped")
			return nil
		case s := <-e.in:
			if err := out.WaitActed(ctx, out.Set(s)); err != nil {
				return nil
			}
		}
	}
}

func (e *scripted) Yield() { e.mu.Lock(); e.yields++; e.mu.Unlock() }

// recorder is an Action (several, by name) that records calls in order with their instants.
type recorder struct {
	mu     sync.Mutex
	events []string
	at     []time.Time
}

func (r *recorder) add(ev string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	r.at = append(r.at, time.Now())
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *recorder) when(ev string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, e := range r.events {
		if e == ev {
			return r.at[i]
		}
	}
	return time.Time{}
}

type recAction struct {
	name    string
	rec     *recorder
	failOn  uint64 // fail Promote for this term
	renewed int
}

func (a *recAction) Promote(ctx context.Context, s State) error {
	if s.Term == a.failOn {
		a.rec.add(fmt.Sprintf("promote-fail %s %d", a.name, s.Term))
		return errors.New("boom")
	}
	a.rec.add(fmt.Sprintf("promote %s %d", a.name, s.Term))
	return nil
}

func (a *recAction) Demote(ctx context.Context, s State) error {
	a.rec.add("demote " + a.name)
	return nil
}

func (a *recAction) Renew(ctx context.Context, s State) error {
	a.renewed++
	return nil
}

func (a *recAction) Reassert(ctx context.Context, s State) error {
	a.rec.add(fmt.Sprintf("reassert %s %d", a.name, s.Contact))
	return nil
}

type fixture struct {
	rec    *recorder
	el     *scripted
	co     *Coordinator
	a, b   *recAction
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T) *fixture {
	rec := &recorder{}
	f := &fixture{rec: rec, el: newScripted(rec), a: &recAction{name: "a", rec: rec}, b: &recAction{name: "b", rec: rec}}
	var err error
	f.co, err = NewCoordinator(f.el, []Action{f.a, f.b}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() { f.done <- f.co.Run(ctx) }()
	return f
}

func (f *fixture) send(s State) { f.el.in <- s; synctest.Wait() }

func (f *fixture) stop(t *testing.T) {
	f.cancel()
	if err := <-f.done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func master(term uint64, ttl time.Duration) State {
	return State{Role: Master, Term: term, ValidUntil: time.Now().Add(ttl), Reason: "elected"}
}

func TestPromoteInOrderDemoteInReverse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := start(t)
		f.send(master(7, 2*time.Second))
		if !f.co.Status().Promoted {
			t.Fatal("not promoted after a valid Master state")
		}
		f.send(State{Role: Backup, Term: 8, Reason: "lease lost"})
		f.stop(t)
		want := []string{"promote a 7", "promote b 7", "demote b", "demote a", "elector stopped"}
		if got := f.rec.list(); !slices.Equal(got, want) {
			t.Fatalf("calls = %q, want %q", got, want)
		}
	})
}

func TestSelfFenceAtDeadlineWithoutRenewal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := start(t)
		s := master(3, 1800*time.Millisecond)
		f.send(s)
		time.Sleep(1799 * time.Millisecond)
		synctest.Wait()
		if !f.co.Status().Promoted {
			t.Fatal("demoted before the deadline")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		st := f.co.Status()
		if st.Promoted || !st.Fenced {
			t.Fatalf("status at deadline = %+v, want fenced", st)
		}
		if at := f.rec.when("demote a"); at.After(s.ValidUntil) {
			t.Fatalf("demoted at %v, after the deadline %v", at, s.ValidUntil)
		}
		f.stop(t)
	})
}

func TestRenewalsKeepMasterAndReachRenewers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := start(t)
		f.send(master(3, 1800*time.Millisecond))
		for range 10 {
			time.Sleep(500 * time.Millisecond)
			f.send(master(3, 1800*time.Millisecond))
		}
		if st := f.co.Status(); !st.Promoted || st.Fenced {
			t.Fatalf("status after renewals = %+v, want promoted", st)
		}
		if f.a.renewed != 10 {
			t.Fatalf("Renew called %d times, want 10", f.a.renewed)
		}
		if got := f.rec.list(); !slices.Equal(got, []string{"promote a 3", "promote b 3"}) {
			t.Fatalf("renewals caused calls %q", got)
		}
		f.stop(t)
	})
}

func TestExpiredMasterStateIsNotActedOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := start(t)
		s := master(4, time.Second)
		time.Sleep(2 * time.Second) // the State was computed long ago: it arrives stale
		f.send(s)
		if f.co.Status().Promoted {
			t.Fatal("promoted on a Master state whose deadline had passed")
		}
		f.stop(t)
	})
}

func TestPromoteFailureRollsBackAndYields(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := start(t)
		f.b.failOn = 5
		f.send(master(5, 2*time.Second))
		want := []string{"promote a 5", "promote-fail b 5", "demote b", "demote a"}
		if got := f.rec.list(); !slices.Equal(got, want) {
			t.Fatalf("calls = %q, want %q", got, want)
		}
		if f.co.Status().Promoted || f.el.yields != 1 {
			t.Fatalf("promoted=%v yields=%d, want not promoted and one yield", f.co.Status().Promoted, f.el.yields)
		}
		f.stop(t)
	})
}

func TestShutdownDemotesBeforeElectorResigns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := start(t)
		f.send(master(9, 2*time.Second))
		f.stop(t)
		want := []string{"promote a 9", "promote b 9", "demote b", "demote a", "elector stopped"}
		if got := f.rec.list(); !slices.Equal(got, want) {
			t.Fatalf("calls = %q, want %q", got, want)
		}
	})
}

func TestReassertAfterFenceAndNewTermPromoteAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := start(t)
		f.send(master(3, time.Second))
		time.Sleep(time.Second)
		synctest.Wait()                 // fenced
		f.send(master(3, time.Second))  // a late keepalive was acknowledged after all: still master
		f.send(master(11, time.Second)) // re-elected with a new term while promoted
		want := []string{"promote a 3", "promote b 3", "demote b", "demote a",
			"promote a 3", "promote b 3", "promote a 11", "promote b 11"}
		if got := f.rec.list(); !slices.Equal(got, want) {
			t.Fatalf("calls = %q, want %q", got, want)
		}
		if st := f.co.Status(); !st.Promoted || st.Fenced {
			t.Fatalf("status = %+v, want promoted", st)
		}
		f.stop(t)
	})
}

func TestNoDeadlineMeansNoFence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := start(t)
		f.send(State{Role: Master, Term: 1})
		time.Sleep(time.Hour)
		synctest.Wait()
		if !f.co.Status().Promoted {
			t.Fatal("a Master state without a deadline (VRRP) was fenced")
		}
		f.stop(t)
	})
}

func TestElectorGivingUpDemotesAndReturnsError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		a := &recAction{name: "a", rec: rec}
		el := &failing{states: []State{master(2, time.Second)}, err: errors.New("ttl below minimum")}
		co, _ := NewCoordinator(el, []Action{a}, nil)
		err := co.Run(t.Context())
		if err == nil || !errors.Is(err, el.err) {
			t.Fatalf("Run = %v, want the elector's error", err)
		}
		if got := rec.list(); !slices.Equal(got, []string{"promote a 2", "demote a"}) {
			t.Fatalf("calls = %q", got)
		}
	})
}

type failing struct {
	states []State
	err    error
}

func (e *failing) Run(ctx context.Context, out *Outbox) error {
	for _, s := range e.states {
		if err := out.WaitActed(ctx, out.Set(s)); err != nil {
			return err
		}
	}
	return e.err
}

func TestParseRecord(t *testing.T) {
	good := Record{Group: "web", Node: "n1", Term: 42, VIPs: nil}
	r, err := ParseRecord(good.Marshal())
	if err != nil || r.Node != "n1" || r.Term != 42 {
		t.Fatalf("round trip: %+v, %v", r, err)
	}
	for _, bad := range []string{"", "garbage", `{"node":""}`, `{"node":"x"}`, `[1,2]`} {
		if _, err := ParseRecord([]byte(bad)); !errors.Is(err, ErrBadRecord) {
			t.Errorf("ParseRecord(%q) = %v, want ErrBadRecord", bad, err)
		}
	}
}

// A renewal whose Contact rose (the master regained its store within its term) reasserts every
// Reasserter once; plain renewals do not.
func TestContactRegainedReasserts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := start(t)
		f.send(master(3, 1800*time.Millisecond))
		time.Sleep(500 * time.Millisecond)
		f.send(master(3, 1800*time.Millisecond))
		s := master(3, 1800*time.Millisecond)
		s.Contact = 1
		time.Sleep(1200 * time.Millisecond) // keepalives failed for a while, then one got through
		f.send(s)
		time.Sleep(500 * time.Millisecond)
		f.send(s) // same contact count: nothing more
		f.stop(t)
		want := []string{"promote a 3", "promote b 3", "reassert a 1", "reassert b 1", "demote b", "demote a", "elector stopped"}
		if got := f.rec.list(); !slices.Equal(got, want) {
			t.Fatalf("calls = %q, want %q", got, want)
		}
	})
}

// OnChange hears of a promotion after it happened (Promoted set), of a demotion after it, and not
// of plain renewals.
func TestOnChangeAfterActing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		a := &recAction{name: "a", rec: rec}
		el := newScripted(rec)
		co, err := NewCoordinator(el, []Action{a}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var seen []Status
		co.OnChange(func(s Status) { seen = append(seen, s) })
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- co.Run(ctx) }()
		send := func(s State) { el.in <- s; synctest.Wait() }
		send(master(3, 1800*time.Millisecond))
		for range 3 {
			time.Sleep(500 * time.Millisecond)
			send(master(3, 1800*time.Millisecond))
		}
		send(State{Role: Backup, Term: 4, Reason: "lease lost"})
		cancel()
		<-done
		if len(seen) < 2 || !seen[0].Promoted || seen[0].State.Role != Master {
			t.Fatalf("first OnChange %+v, want the promoted master", seen)
		}
		if seen[1].Promoted || seen[1].State.Role != Backup {
			t.Fatalf("second OnChange %+v, want the demoted backup (no call for renewals)", seen[1])
		}
	})
}

// blockingAction's Promote waits until release is closed.
type blockingAction struct{ release chan struct{} }

func (a *blockingAction) Promote(ctx context.Context, s State) error {
	select {
	case <-a.release:
	case <-ctx.Done():
	}
	return nil
}

func (a *blockingAction) Demote(ctx context.Context, s State) error { return nil }

// An idle loop counts as turning now, with no timer of its own: it waits for its next event and
// takes it as it comes. A loop stuck in an Action shows when it began handling the event, so a
// watchdog sees it wedged.
func TestLastTurnIdleAndWedged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		el := newScripted(rec)
		act := &blockingAction{release: make(chan struct{})}
		co, err := NewCoordinator(el, []Action{act}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !co.LastTurn().IsZero() {
			t.Fatalf("LastTurn before Run = %v, want zero", co.LastTurn())
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- co.Run(ctx) }()

		el.in <- State{Role: Backup, Reason: "campaigning"}
		synctest.Wait()
		time.Sleep(time.Minute) // idle: no State, no deadline
		synctest.Wait()
		if since := time.Since(co.LastTurn()); since != 0 {
			t.Fatalf("idle loop last turned %v ago, want now", since)
		}

		el.in <- master(5, time.Hour) // Promote blocks
		synctest.Wait()
		began := time.Now()
		time.Sleep(5 * TurnInterval)
		synctest.Wait()
		if got := co.LastTurn(); !got.Equal(began) {
			t.Fatalf("loop stuck in Promote: LastTurn %v, want when it began handling (%v)", got, began)
		}

		close(act.release)
		synctest.Wait()
		if since := time.Since(co.LastTurn()); since != 0 {
			t.Fatalf("loop back to waiting last turned %v ago, want now", since)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
}
