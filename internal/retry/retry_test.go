package retry

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// Sleep reports true once d has passed, false as soon as its context ends, however long d is.
func TestSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if !Sleep(t.Context(), time.Second) || time.Since(start) != time.Second {
			t.Fatalf("Sleep(1s) returned after %v", time.Since(start))
		}
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		start = time.Now()
		if Sleep(ctx, time.Hour) || time.Since(start) != 100*time.Millisecond {
			t.Fatalf("Sleep(1h) with a context ending in 100ms: returned after %v", time.Since(start))
		}
	})
}

// Servers tries each server in turn, pauses 50ms, 100ms, ... 800ms between rounds, and stops at the
// first try that is done; with the context ended it returns the last error.
func TestServers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var tried []string
		var at []time.Duration
		errDown := errors.New("down")
		err := Servers(t.Context(), []string{"a", "b"}, func(s string) (bool, error) {
			tried = append(tried, s)
			at = append(at, time.Since(start))
			if len(tried) == 5 {
				return true, nil
			}
			return false, errDown
		})
		if err != nil || len(tried) != 5 || tried[2] != "a" || tried[3] != "b" {
			t.Fatalf("Servers: %v after %v", err, tried)
		}
		want := []time.Duration{0, 0, 50 * time.Millisecond, 50 * time.Millisecond, 150 * time.Millisecond}
		for i := range want {
			if at[i] != want[i] {
				t.Fatalf("tries at %v, want %v", at, want)
			}
		}
		if Pause(0) != 50*time.Millisecond || Pause(4) != 800*time.Millisecond || Pause(10) != 800*time.Millisecond {
			t.Errorf("pauses %v %v %v, want 50ms 800ms 800ms", Pause(0), Pause(4), Pause(10))
		}

		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		n := 0
		err = Servers(ctx, []string{"a"}, func(string) (bool, error) { n++; return false, errDown })
		if !errors.Is(err, errDown) || time.Since(start) < 3*time.Second {
			t.Fatalf("with the context ended: %v after %d tries", err, n)
		}
	})
}
