package election

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// stuckRenewer is an Action whose Renew never finishes on its own (a wedged guard pipe, netlink
// call or logger): it returns only when the Coordinator's context for it ends.
type stuckRenewer struct {
	rec     *recorder
	renewed chan struct{} // closed when Renew has started
}

func (a *stuckRenewer) Promote(context.Context, State) error { a.rec.add("promote stuck"); return nil }
func (a *stuckRenewer) Demote(context.Context, State) error  { a.rec.add("demote stuck"); return nil }

func (a *stuckRenewer) Renew(ctx context.Context, _ State) error {
	close(a.renewed)
	<-ctx.Done()
	a.rec.add("renew stuck ended")
	return ctx.Err()
}

// The fence timer fires on time while an Action's Renew blocks: the Coordinator bounds the renewal
// by the new deadline, so at that deadline the loop is free, every Action is demoted (the others
// and the stuck one, in reverse order) and the status says Fenced. A Coordinator that renewed with
// an unbounded context would never fence here.
func TestFenceOnTimeWhileARenewBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		a, b := &recAction{name: "a", rec: rec}, &recAction{name: "b", rec: rec}
		stuck := &stuckRenewer{rec: rec, renewed: make(chan struct{})}
		el := newScripted(rec)
		co, err := NewCoordinator(el, []Action{a, stuck, b}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- co.Run(ctx) }()
		start := time.Now()
		el.in <- master(5, 2*time.Second)
		synctest.Wait()
		time.Sleep(500 * time.Millisecond)
		renewal := master(5, 2*time.Second) // until 2.5s
		el.in <- renewal
		<-stuck.renewed
		synctest.Wait()
		if st := co.Status(); !st.Promoted || st.Fenced {
			t.Fatalf("status while the renewal is stuck = %+v, want still promoted", st)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		st := co.Status()
		if st.Promoted || !st.Fenced {
			t.Fatalf("status after the deadline = %+v, want fenced", st)
		}
		want := []string{"promote a 5", "promote stuck", "promote b 5", "renew stuck ended", "demote b", "demote stuck", "demote a"}
		if got := rec.list(); !slices.Equal(got, want) {
			t.Fatalf("calls = %q, want %q", got, want)
		}
		for _, ev := range []string{"demote b", "demote stuck", "demote a"} {
			if at := rec.when(ev); !at.Equal(renewal.ValidUntil) {
				t.Errorf("%s at %v, want at the deadline %v", ev, at.Sub(start), renewal.ValidUntil.Sub(start))
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
