package zk

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// A request answered in time leaves no timer behind: the guard's timer does not fire a limit later
// for nothing (a wake-up per request of an idle candidate). A request left unanswered still has its
// connection dropped once the limit has passed.
func TestStallGuardIdleTimerStopped(t *testing.T) {
	const limit = 50 * time.Millisecond
	up := time.Now()
	dropped := make(chan time.Time, 1)
	g := newStallGuard(func() time.Duration { return limit }, func() time.Time { return up },
		func(u time.Time) { dropped <- u })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); g.run(ctx) }()
	defer func() { cancel(); <-done }()

	for i := range int64(3) {
		end := g.begin()
		for g.armed.Load() == i { // until run has armed its timer for this request
			runtime.Gosched()
		}
		end()
	}
	// Waiting out three limits is the point here: nothing may happen meanwhile.
	select {
	case u := <-dropped:
		t.Fatalf("connection of %v dropped with nothing in flight", u)
	case <-time.After(3 * limit):
	}
	if n := g.fired.Load(); n != 0 {
		t.Errorf("the guard's timer fired %d times after answered requests, want 0", n)
	}

	end := g.begin()
	defer end()
	select {
	case u := <-dropped:
		if !u.Equal(up) {
			t.Errorf("dropped the connection of %v, want %v", u, up)
		}
	case <-time.After(20 * limit):
		t.Fatalf("a request unanswered for %v did not drop its connection (limit %v)", 20*limit, limit)
	}
}
