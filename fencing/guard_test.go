package fencing

import (
	"context"
	"io"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// guardRun runs Guard over a pipe inside a synctest bubble and records when it releases.
type guardRun struct {
	conn     *GuardConn
	w        *io.PipeWriter
	mu       sync.Mutex
	releases []time.Duration // since start
	done     chan error
}

func startGuard(t *testing.T) *guardRun {
	t.Helper()
	r, w := io.Pipe()
	g := &guardRun{conn: NewGuardConn(w), w: w, done: make(chan error, 1)}
	start := time.Now()
	go func() {
		g.done <- Guard(context.Background(), r, func(string) (bool, error) {
			g.mu.Lock()
			g.releases = append(g.releases, time.Since(start))
			g.mu.Unlock()
			return true, nil
		}, nil)
	}()
	return g
}

func (g *guardRun) got() []time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]time.Duration(nil), g.releases...)
}

func TestGuardReleasesAtTheDeadlineUnlessRenewed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := startGuard(t)
		if err := g.conn.Hold(time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(900 * time.Millisecond) // virtual time: the daemon renews in time
		if err := g.conn.Hold(time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second) // then stops renewing (SIGSTOP)
		synctest.Wait()
		if r := g.got(); len(r) != 1 || r[0] != 1900*time.Millisecond {
			t.Fatalf("releases at %v, want one at 1.9s (the renewed deadline)", r)
		}
		g.w.Close()
		if err := <-g.done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestGuardReleaseCancelsTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := startGuard(t)
		_ = g.conn.Hold(time.Now().Add(time.Second))
		_ = g.conn.Release()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if r := g.got(); len(r) != 0 {
			t.Fatalf("released at %v after the daemon let go itself", r)
		}
		g.w.Close()
		<-g.done
		if r := g.got(); len(r) != 1 {
			t.Fatalf("releases %v, want one at EOF", r)
		}
	})
}

func TestGuardReleasesWhenTheDaemonDies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := startGuard(t)
		_ = g.conn.Hold(time.Time{}) // VRRP: no deadline
		time.Sleep(time.Hour)
		synctest.Wait()
		if r := g.got(); len(r) != 0 {
			t.Fatalf("released %v with no deadline", r)
		}
		g.w.CloseWithError(io.ErrUnexpectedEOF) // the write end closes when the daemon dies
		if err := <-g.done; err != nil {
			t.Fatal(err)
		}
		if r := g.got(); len(r) != 1 || r[0] != time.Hour {
			t.Fatalf("releases %v, want one the moment the pipe closed", r)
		}
	})
}

func TestGuardRejectsNonsenseAndPassedDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := startGuard(t)
		if err := g.conn.Hold(time.Now().Add(-time.Millisecond)); err != ErrGuardDeadline {
			t.Fatalf("Hold with a passed deadline: %v, want ErrGuardDeadline", err)
		}
		go io.WriteString(g.w, "hold soon\n")
		if err := <-g.done; err == nil {
			t.Fatal("Guard accepted a malformed command")
		}
		if r := g.got(); len(r) != 1 {
			t.Fatalf("releases %v, want one for the malformed command", r)
		}
		g.w.Close() // ends Guard's reader
	})
}
