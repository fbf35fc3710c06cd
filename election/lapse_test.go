package election

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// lapsing is an Action whose Promote, while lapse is set, outlasts the State's deadline and then
// fails (as the VIP conflict probe does when the validity runs out under it).
type lapsing struct {
	rec   *recorder
	lapse atomic.Bool
}

func (a *lapsing) Promote(ctx context.Context, s State) error {
	if a.lapse.Load() {
		<-ctx.Done() // the Coordinator bounds the promote by the deadline
		a.rec.add(fmt.Sprintf("promote-lapsed %d", s.Term))
		return fmt.Errorf("deadline passed: %w", context.Cause(ctx))
	}
	a.rec.add(fmt.Sprintf("promote %d", s.Term))
	return nil
}

func (a *lapsing) Demote(ctx context.Context, s State) error { a.rec.add("demote"); return nil }

// A promote that fails because the State's deadline passed under it is retried with the next
// renewal of the same term instead of yielding; past maxLapsedPromotes in a row the node yields.
func TestLapsedPromoteRetriesWithoutYield(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		el := newScripted(rec)
		a := &lapsing{rec: rec}
		co, err := NewCoordinator(el, []Action{a}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- co.Run(ctx) }()
		send := func(s State) { el.in <- s; synctest.Wait() }
		lapsed := func(s State) { // a promote that lapses: let (fake) time pass its deadline
			send(s)
			time.Sleep(time.Until(s.ValidUntil) + time.Millisecond)
			synctest.Wait()
		}
		yields := func() int { el.mu.Lock(); defer el.mu.Unlock(); return el.yields }

		a.lapse.Store(true)
		lapsed(master(4, 50*time.Millisecond))
		if co.Status().Promoted || yields() != 0 {
			t.Fatalf("after a lapsed promote: promoted %v, yields %d; want neither", co.Status().Promoted, yields())
		}
		a.lapse.Store(false)
		send(master(4, time.Second)) // the next renewal
		if !co.Status().Promoted {
			t.Fatal("the renewal after a lapsed promote did not promote")
		}
		want := []string{"promote-lapsed 4", "demote", "promote 4"}
		if got := rec.list(); !slices.Equal(got, want) {
			t.Fatalf("calls %q, want %q", got, want)
		}

		a.lapse.Store(true)
		for i := range maxLapsedPromotes + 1 {
			lapsed(master(9, 50*time.Millisecond))
			if want := max(0, i+1-maxLapsedPromotes); yields() != want {
				t.Fatalf("after %d lapsed promotes of term 9 in a row: %d yields, want %d; calls %q", i+1, yields(), want, rec.list())
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
}
