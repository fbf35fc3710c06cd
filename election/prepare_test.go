package election

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
)

// prepAction is a recAction whose Prepare takes d and then returns err (or ctx's error).
type prepAction struct {
	recAction
	d   time.Duration
	err error
}

func (a *prepAction) Prepare(ctx context.Context, s State) error {
	a.rec.add(fmt.Sprintf("prepare %s %d", a.name, s.Term))
	select {
	case <-ctx.Done():
		a.rec.add(fmt.Sprintf("prepare-cancelled %s %d", a.name, s.Term))
		return ctx.Err()
	case <-time.After(a.d):
	}
	return a.err
}

func startPrep(t *testing.T, p *prepAction) *fixture {
	rec := &recorder{}
	p.rec, p.name = rec, "fence"
	f := &fixture{rec: rec, el: newScripted(rec), a: &recAction{name: "a", rec: rec}, b: &recAction{name: "b", rec: rec}}
	var err error
	f.co, err = NewCoordinator(f.el, []Action{p, f.a, f.b}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() { f.done <- f.co.Run(ctx) }()
	return f
}

// A Prepare longer than the lease's validity: the renewals keep arriving meanwhile, nothing is
// promoted until it returns, the loop keeps turning, and then the latest State is promoted.
func TestPrepareOutlivesTheDeadlineAndPromotesTheLatestState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &prepAction{d: 5 * time.Second}
		f := startPrep(t, p)
		start := time.Now()
		f.send(master(7, 2*time.Second))
		for range 9 { // 4.5 s of renewals, 500 ms apart
			time.Sleep(500 * time.Millisecond)
			f.send(master(7, 2*time.Second))
			st := f.co.Status()
			if st.Promoted || !st.Preparing {
				t.Fatalf("status while preparing = %+v, want preparing, not promoted", st)
			}
			if since := time.Since(f.co.LastTurn()); since > TurnInterval {
				t.Fatalf("loop last turned %v ago while preparing", since)
			}
		}
		time.Sleep(time.Second)
		synctest.Wait()
		st := f.co.Status()
		if !st.Promoted || st.Preparing {
			t.Fatalf("status after prepare = %+v, want promoted", st)
		}
		if at := f.rec.when("promote a 7"); at.Sub(start) != 5*time.Second {
			t.Fatalf("promoted %v after the Master state, want when Prepare returned (5s)", at.Sub(start))
		}
		f.stop(t)
		want := []string{"prepare fence 7", "promote fence 7", "promote a 7", "promote b 7",
			"demote b", "demote a", "demote fence", "elector stopped"}
		if got := f.rec.list(); !slices.Equal(got, want) {
			t.Fatalf("calls = %q, want %q", got, want)
		}
	})
}

// The lease ran out while Prepare ran: nothing is promoted on the stale State.
func TestPrepareDoesNotPromoteAnExpiredState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startPrep(t, &prepAction{d: 3 * time.Second})
		f.send(master(7, 2*time.Second))
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if st := f.co.Status(); st.Promoted || st.Preparing || slices.Contains(f.rec.list(), "promote a 7") {
			t.Fatalf("status = %+v, calls %q: want nothing promoted", st, f.rec.list())
		}
		// A renewal of the prepared term promotes at once, without preparing again.
		f.send(master(7, 2*time.Second))
		if !f.co.Status().Promoted {
			t.Fatal("a valid State of the prepared term did not promote")
		}
		f.stop(t)
		got := f.rec.list()
		if n := len(slices.DeleteFunc(slices.Clone(got), func(s string) bool { return s != "prepare fence 7" })); n != 1 {
			t.Fatalf("calls = %q, want one prepare", got)
		}
	})
}

// A failed Prepare blocks the takeover and yields; losing mastership cancels a running Prepare.
func TestPrepareFailureYieldsAndBackupCancels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &prepAction{d: time.Second, err: errors.New("ipmi: no answer")}
		f := startPrep(t, p)
		f.send(master(7, 2*time.Second))
		time.Sleep(time.Second)
		synctest.Wait()
		st := f.co.Status()
		if st.Promoted || st.Preparing || st.Reason != "prepare failed" || f.el.yields != 1 {
			t.Fatalf("status = %+v, yields %d; want not promoted, reason prepare failed, one yield", st, f.el.yields)
		}
		p.err = nil
		f.send(master(9, 2*time.Second))
		time.Sleep(500 * time.Millisecond)
		f.send(State{Role: Backup, Term: 10, Reason: "lease lost"})
		if st := f.co.Status(); st.Promoted || st.Preparing {
			t.Fatalf("status after backup = %+v", st)
		}
		f.stop(t)
		want := []string{"prepare fence 7", "prepare fence 9", "prepare-cancelled fence 9", "elector stopped"}
		if got := f.rec.list(); !slices.Equal(got, want) {
			t.Fatalf("calls = %q, want %q", got, want)
		}
	})
}

// A backend that reports term 0 still has its term prepared before anything is promoted.
func TestPrepareRunsForTermZero(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &prepAction{d: time.Second}
		p.failOn = 999
		f := startPrep(t, p)
		f.a.failOn, f.b.failOn = 999, 999 // recAction fails its failOn term, 0 by default
		f.send(master(0, 5*time.Second))
		if f.co.Status().Promoted {
			t.Fatal("promoted term 0 without preparing it")
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if !f.co.Status().Promoted {
			t.Fatal("not promoted once term 0 was prepared")
		}
		f.stop(t)
		if got := f.rec.list(); got[0] != "prepare fence 0" {
			t.Fatalf("calls = %q, want the prepare first", got)
		}
	})
}
