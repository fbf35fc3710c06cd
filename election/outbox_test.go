package election

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

func TestOutboxLatestWins(t *testing.T) {
	o := NewOutbox()
	if _, _, ok := o.Take(); ok {
		t.Fatal("empty outbox gave a State")
	}
	o.Set(State{Role: Backup, Reason: "a"})
	o.Set(State{Role: Master, Term: 3, Reason: "b"})
	seq := o.Set(State{Role: Master, Term: 3, Reason: "b"}) // same: not offered again
	s, got, ok := o.Take()
	if !ok || s.Role != Master || s.Term != 3 || got != seq || seq != 2 {
		t.Fatalf("Take = %+v, %d, %v; want the Master State, version 2", s, got, ok)
	}
	if _, _, ok := o.Take(); ok {
		t.Fatal("a State taken twice")
	}
}

// TestOutboxWaitActed: the producer's wait ends only when the consumer says it has acted, not when
// it has taken the State.
func TestOutboxWaitActed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := NewOutbox()
		seq := o.Set(State{Role: Backup})
		waited := make(chan error, 1)
		go func() { waited <- o.WaitActed(t.Context(), seq) }()
		if _, _, err := o.Next(t.Context()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		select {
		case <-waited:
			t.Fatal("WaitActed returned on Take, before Acted")
		default:
		}
		o.Acted(seq)
		if err := <-waited; err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if err := o.WaitActed(ctx, o.Set(State{Role: Fault})); err == nil {
			t.Fatal("WaitActed for a State never acted on returned nil")
		}
	})
}

// resigner offers Master, then Backup, waits until the Coordinator has acted on the Backup State and
// records the instant it would resign.
type resigner struct {
	rec     *recorder
	backup  chan struct{}
	stopped chan struct{}
}

func (e *resigner) Run(ctx context.Context, out *Outbox) error {
	defer close(e.stopped)
	out.Set(State{Role: Master, Term: 1, ValidUntil: time.Now().Add(time.Hour)})
	select {
	case <-e.backup:
	case <-ctx.Done():
		return nil
	}
	if err := out.WaitActed(ctx, out.Set(State{Role: Backup, Reason: "yielded"})); err != nil {
		return nil
	}
	e.rec.add("resign")
	<-ctx.Done()
	return nil
}

// slowDemote is an Action whose Demote takes a while.
type slowDemote struct{ rec *recorder }

func (a slowDemote) Promote(context.Context, State) error { a.rec.add("promote"); return nil }
func (a slowDemote) Demote(ctx context.Context, s State) error {
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
	}
	a.rec.add("demoted")
	return nil
}

// TestResignWaitsForDemote fails if an Elector that waits with WaitActed could resign while an
// Action still holds the VIPs.
func TestResignWaitsForDemote(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		el := &resigner{rec: rec, backup: make(chan struct{}), stopped: make(chan struct{})}
		co, err := NewCoordinator(el, []Action{slowDemote{rec}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- co.Run(ctx) }()
		synctest.Wait()
		close(el.backup)
		synctest.Wait()
		time.Sleep(2 * time.Second) // fake clock: lets the slow Demote finish
		synctest.Wait()
		cancel()
		<-done
		want := []string{"promote", "demoted", "resign"}
		if got := rec.list(); !slices.Equal(got, want) {
			t.Fatalf("events %v, want %v", got, want)
		}
	})
}
