package oneproc

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestSetRespectsTheEnvironment(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	t.Setenv("GOMAXPROCS", "")
	if !Set() || runtime.GOMAXPROCS(0) != 1 {
		t.Fatalf("Set without GOMAXPROCS in the environment: GOMAXPROCS %d, want 1", runtime.GOMAXPROCS(0))
	}
	runtime.GOMAXPROCS(2)
	t.Setenv("GOMAXPROCS", "2")
	if Set() || runtime.GOMAXPROCS(0) != 2 {
		t.Fatalf("Set with GOMAXPROCS=2 in the environment changed it to %d", runtime.GOMAXPROCS(0))
	}
}

// smallestMargin is fencing.DefaultMargin's floor: the least a self-fencing deadline's timer may be
// late by before the deadline it protects has passed.
const smallestMargin = 100 * time.Millisecond

// TestTimerFiresOnTimeBesideABusyGoroutine: on one P, a goroutine that computes without a pause (no
// function call, no allocation: only asynchronous preemption can stop it) delays a timer, such as
// the self-fencing deadline's, by far less than the smallest fencing margin. It runs itself in a
// child process so that the child's GODEBUG can be set (the mutation check: with
// GODEBUG=asyncpreemptoff=1 the busy goroutine keeps the P for good, its own end being a timer
// too, and the child is killed with no timer fired).
func TestTimerFiresOnTimeBesideABusyGoroutine(t *testing.T) {
	if os.Getenv("ONEPROC_CHILD") == "" {
		// Without preemption the child never gets its P back: its own end does not come either.
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestTimerFiresOnTimeBesideABusyGoroutine$", "-test.v")
		cmd.Env = append(os.Environ(), "ONEPROC_CHILD=1", "GOMAXPROCS=")
		if g := os.Getenv("ONEPROC_GODEBUG"); g != "" {
			cmd.Env = append(cmd.Env, "GODEBUG="+g)
		}
		out, err := cmd.CombinedOutput()
		t.Logf("child:\n%s", out)
		if ctx.Err() != nil {
			t.Fatal("the child's timers never fired: the busy goroutine kept the only P (killed after 20s)")
		}
		if err != nil {
			t.Fatalf("child: %v", err)
		}
		return
	}
	if !Set() {
		t.Fatal("Set did not set GOMAXPROCS")
	}
	var stop atomic.Bool
	spun := make(chan uint64)
	go func() {
		var n uint64
		for !stop.Load() {
			n++
		}
		spun <- n
	}()
	end := time.AfterFunc(time.Second, func() { stop.Store(true) }) // the busy goroutine's end, however it goes
	defer end.Stop()
	var late []time.Duration
	for range 10 {
		want := time.Now().Add(20 * time.Millisecond)
		<-time.After(time.Until(want))
		late = append(late, time.Since(want))
	}
	stop.Store(true)
	<-spun
	slices.Sort(late)
	var b strings.Builder
	for _, d := range late {
		b.WriteString(" " + d.Round(100*time.Microsecond).String())
	}
	t.Logf("timers late by (sorted):%s", b.String())
	if worst := late[len(late)-1]; worst >= smallestMargin/2 {
		t.Fatalf("a timer fired %v late beside a busy goroutine on one P, half the smallest fencing margin is %v", worst, smallestMargin/2)
	}
}
