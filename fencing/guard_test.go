package fencing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// These tests run the guard and its connection inside synctest bubbles: time.Sleep advances the
// bubble's fake clock once every goroutine is idle. Both ends share one monoClock whose base is the
// bubble's clock, so a deadline means the same instant on both sides, as CLOCK_MONOTONIC makes it
// for two real processes.

// guardRun runs the guard over a pipe and records when it calls release.
type guardRun struct {
	clock monoClock
	conn  *GuardConn
	w     *io.PipeWriter
	start time.Time
	done  chan error

	waitOnce sync.Once
	err      error // what guard returned

	mu       sync.Mutex
	calls    []time.Duration // since start, failed ones included
	fails    int             // fail this many more calls
	ends     []guardEnd      // EndCandidacy calls
	seq      []string        // "release" and "end", in the order they were called
	released []released      // successful and failed Release calls
}

// released is one Release call.
type released struct {
	at   time.Duration
	inst string
	h    Holdings
}

// guardEnd is one EndCandidacy call: when, and with what.
type guardEnd struct {
	at        time.Duration
	inst      string
	candidacy string
}

func startGuard(t *testing.T) *guardRun {
	t.Helper()
	r, w := io.Pipe()
	g := &guardRun{clock: monoClock{at: time.Now(), lo: 1e15, hi: 1e15}, w: w, start: time.Now(), done: make(chan error, 1)}
	g.conn = &GuardConn{w: w, clock: g.clock}
	go func() {
		g.done <- guard(context.Background(), r, GuardActions{
			Release: func(inst string, h Holdings, _ string) (bool, error) {
				g.mu.Lock()
				defer g.mu.Unlock()
				g.calls = append(g.calls, time.Since(g.start))
				g.released = append(g.released, released{at: time.Since(g.start), inst: inst, h: h})
				if g.fails > 0 {
					g.fails--
					g.seq = append(g.seq, "failed release")
					return false, errors.New("netlink: no buffer space available")
				}
				g.seq = append(g.seq, "release")
				return true, nil
			},
			EndCandidacy: func(_ context.Context, inst, c string) error {
				g.mu.Lock()
				defer g.mu.Unlock()
				g.seq = append(g.seq, "end")
				g.ends = append(g.ends, guardEnd{at: time.Since(g.start), inst: inst, candidacy: c})
				return nil
			},
		}, nil, g.clock)
	}()
	t.Cleanup(func() { g.w.Close(); g.wait() }) // a failed test leaves nothing blocked
	return g
}

// wait returns what guard returned, once it has.
func (g *guardRun) wait() error {
	g.waitOnce.Do(func() { g.err = <-g.done })
	return g.err
}

func (g *guardRun) got() []time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.calls)
}

// events returns the releases and candidacy ends in the order they were called.
func (g *guardRun) events() ([]string, []guardEnd) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.seq), slices.Clone(g.ends)
}

func (g *guardRun) failNext(n int) {
	g.mu.Lock()
	g.fails = n
	g.mu.Unlock()
}

// line returns what conn would send for f, without sending it.
func (g *guardRun) line(t *testing.T, f func(*GuardConn) error) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := f(&GuardConn{w: &b, clock: g.clock}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

const ms = time.Millisecond

func TestGuardReleasesAtTheDeadlineUnlessRenewed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := startGuard(t)
		if err := g.conn.Hold("a", time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(900 * ms) // the daemon renews in time
		if err := g.conn.Hold("a", time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second) // then stops renewing (SIGSTOP)
		synctest.Wait()
		if r := g.got(); !slices.Equal(r, []time.Duration{1900 * ms}) {
			t.Fatalf("releases at %v, want one at 1.9s (the renewed deadline)", r)
		}
		g.w.Close()
		if err := g.wait(); err != nil {
			t.Fatal(err)
		}
	})
}

// The guard's deadline is the instant the daemon named, not a duration from when the guard read
// it: a hold read 600 ms late (the guard was not scheduled, the pipe was full) still releases at
// its deadline, and one read after its deadline releases at once. A guard that counted from its
// read (the old "hold <remaining ns>") would release at 1.6 s and 2.5 s.
func TestGuardLineReadLateDoesNotExtendTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := startGuard(t)
		hold := g.line(t, func(c *GuardConn) error { return c.Hold("a", time.Now().Add(time.Second)) })
		time.Sleep(600 * ms)
		if _, err := g.w.Write(hold); err != nil {
			t.Fatal(err)
		}
		time.Sleep(900 * ms)
		synctest.Wait()
		if r := g.got(); !slices.Equal(r, []time.Duration{time.Second}) {
			t.Fatalf("releases at %v, want one at 1s: the deadline in the line, not 1s after it was read", r)
		}

		hold = g.line(t, func(c *GuardConn) error { return c.Hold("a", time.Now().Add(time.Second)) }) // until 2.5s
		time.Sleep(1500 * ms)
		if _, err := g.w.Write(hold); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if r := g.got(); !slices.Equal(r, []time.Duration{time.Second, 3 * time.Second}) {
			t.Fatalf("releases at %v, want a second one at once when a hold is read after its deadline (3s)", r)
		}
		g.w.Close()
		g.wait()
	})
}

// A backlog read late, whose first holds have passed but whose last has not, does not release: the
// latest hold is the daemon's word. (A guard that acted on each line as it came, letting a passed
// hold's timer fire before the next line, would release with every one of the eight passed holds
// at even odds.)
func TestGuardRenewalReadWithPassedHoldsWins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := startGuard(t)
		var backlog []byte
		for range 9 { // renewals every 100ms, each for 1s; the guard reads none of them in time
			backlog = append(backlog, g.line(t, func(c *GuardConn) error { return c.Hold("a", time.Now().Add(time.Second)) })...)
			time.Sleep(100 * ms)
		}
		time.Sleep(850 * ms) // 1.75s: all but the last hold (until 1.8s) have passed
		if _, err := g.w.Write(backlog); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if r := g.got(); !slices.Equal(r, []time.Duration{1800 * ms}) {
			t.Fatalf("releases at %v, want one at 1.8s (the latest hold)", r)
		}
		g.w.Close()
		g.wait()
	})
}

func TestGuardReleaseCancelsTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := startGuard(t)
		_ = g.conn.Hold("a", time.Now().Add(time.Second))
		_ = g.conn.Release("a")
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if r := g.got(); len(r) != 0 {
			t.Fatalf("released at %v after the daemon let go itself", r)
		}
		g.w.Close()
		g.wait()
		if r := g.got(); len(r) != 1 {
			t.Fatalf("releases %v, want one at EOF", r)
		}
	})
}

func TestGuardReleasesWhenTheDaemonDies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := startGuard(t)
		_ = g.conn.Hold("a", time.Time{}) // VRRP: no deadline
		time.Sleep(time.Hour)
		synctest.Wait()
		if r := g.got(); len(r) != 0 {
			t.Fatalf("released %v with no deadline", r)
		}
		g.w.CloseWithError(io.ErrUnexpectedEOF) // the write end closes when the daemon dies
		if err := g.wait(); err != nil {
			t.Fatal(err)
		}
		if r := g.got(); len(r) != 1 || r[0] != time.Hour {
			t.Fatalf("releases %v, want one the moment the pipe closed", r)
		}
	})
}

// A release that fails (the fake's first three) is tried again, 20 ms apart and doubling, until it
// succeeds, and not after.
func TestGuardRetriesAFailedRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := startGuard(t)
		g.failNext(3)
		_ = g.conn.Hold("a", time.Now().Add(time.Second))
		time.Sleep(time.Minute)
		synctest.Wait()
		want := []time.Duration{1000 * ms, 1020 * ms, 1060 * ms, 1140 * ms}
		if r := g.got(); !slices.Equal(r, want) {
			t.Fatalf("release tried at %v, want %v", r, want)
		}
		g.w.Close()
		g.wait()
	})
}

// While a failed release is being retried, a hold ends the retries: the daemon is master again
// until that hold's deadline, when the guard tries again.
func TestGuardHoldEndsTheRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := startGuard(t)
		g.failNext(1000)
		_ = g.conn.Hold("a", time.Now().Add(time.Second))
		time.Sleep(1100 * ms)
		_ = g.conn.Hold("a", time.Now().Add(2*time.Second)) // until 3.1s
		time.Sleep(2050 * ms)
		synctest.Wait()
		want := []time.Duration{1000 * ms, 1020 * ms, 1060 * ms, 3100 * ms, 3120 * ms}
		if r := g.got(); !slices.Equal(r, want) {
			t.Fatalf("release tried at %v, want %v", r, want)
		}
		g.failNext(0)
		g.w.Close()
		g.wait()
	})
}

// At EOF the guard's last duty is the release: it retries until that succeeds, then returns.
func TestGuardRetriesAtEOFUntilReleased(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := startGuard(t)
		g.failNext(2)
		_ = g.conn.Hold("a", time.Now().Add(time.Second))
		g.w.Close()
		if err := g.wait(); err != nil {
			t.Fatal(err)
		}
		if r, want := g.got(), []time.Duration{0, 20 * ms, 60 * ms}; !slices.Equal(r, want) {
			t.Fatalf("release tried at %v, want %v, then Guard returned", r, want)
		}
	})
}

func TestGuardRejectsNonsenseAndPassedDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := startGuard(t)
		if err := g.conn.Hold("a", time.Now().Add(-time.Millisecond)); err != ErrGuardDeadline {
			t.Fatalf("Hold with a passed deadline: %v, want ErrGuardDeadline", err)
		}
		_ = g.conn.Hold("a", time.Now().Add(time.Hour))
		go io.WriteString(g.w, "hold a soon\n")
		if err := g.wait(); err == nil {
			t.Fatal("Guard accepted a malformed command")
		}
		if r := g.got(); len(r) != 1 {
			t.Fatalf("releases %v, want one for the malformed command", r)
		}
		g.w.Close() // ends Guard's reader
	})
}

// At EOF the guard ends the candidacy the daemon named last, and only once the VIPs are gone: after
// the release that succeeded, never before it (the next master would bind beside the dead one's
// VIPs) and never after a failed one.
func TestGuardEndsTheCandidacyOnlyAfterTheReleaseAtEOF(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := startGuard(t)
		if err := g.conn.Candidacy("a", `{"lease":"a"}`); err != nil {
			t.Fatal(err)
		}
		_ = g.conn.Hold("a", time.Now().Add(time.Second))
		_ = g.conn.Candidacy("a", `{"lease":"b"}`) // a new lease: the latest wins
		time.Sleep(500 * ms)
		g.failNext(2)
		g.w.Close() // SIGKILL
		if err := g.wait(); err != nil {
			t.Fatal(err)
		}
		seq, ends := g.events()
		if want := []string{"failed release", "failed release", "release", "end"}; !slices.Equal(seq, want) {
			t.Fatalf("the guard did %q, want %q", seq, want)
		}
		if ends[0].candidacy != `{"lease":"b"}` || ends[0].at != 560*ms {
			t.Fatalf("ended %q at %v, want the latest candidacy at 560ms (the release that succeeded)", ends[0].candidacy, ends[0].at)
		}
	})
}

// A deadline that passes is no proof that the daemon is dead (it may be stopped and resume, or its
// renewal may have been lost on the way), so the guard releases then but ends nothing; the daemon
// that dies later has its candidacy ended at EOF. A daemon that named no candidacy, or whose pipe
// fails rather than ends, or that speaks nonsense, has nothing ended.
func TestGuardEndsTheCandidacyOnlyAtEOF(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := startGuard(t)
		_ = g.conn.Candidacy("a", "x")
		_ = g.conn.Hold("a", time.Now().Add(time.Second))
		time.Sleep(5 * time.Second) // SIGSTOP
		synctest.Wait()
		if seq, _ := g.events(); !slices.Equal(seq, []string{"release"}) {
			t.Fatalf("at the deadline the guard did %q, want a release only", seq)
		}
		g.w.Close()
		g.wait()
		if seq, _ := g.events(); !slices.Equal(seq, []string{"release", "release", "end"}) {
			t.Fatalf("the guard did %q, want a release at the deadline and a release and end at EOF", seq)
		}
	})
	for name, f := range map[string]func(g *guardRun){
		"candidacy withdrawn": func(g *guardRun) { _ = g.conn.Candidacy("a", ""); g.w.Close() },
		"read error":          func(g *guardRun) { g.w.CloseWithError(io.ErrUnexpectedEOF) },
		"malformed command":   func(g *guardRun) { go io.WriteString(g.w, "hold a soon\n") },
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := startGuard(t)
				_ = g.conn.Candidacy("a", "x")
				_ = g.conn.Hold("a", time.Now().Add(time.Second))
				f(g)
				g.wait()
				if seq, _ := g.events(); !slices.Equal(seq, []string{"release"}) {
					t.Fatalf("the guard did %q, want a release only", seq)
				}
				g.w.Close()
			})
		})
	}
}

func TestGuardConnCandidacyIsOneLine(t *testing.T) {
	var b bytes.Buffer
	c := &GuardConn{w: &b}
	if err := c.Candidacy("web", "a\nhold web 1"); err == nil {
		t.Fatal("a candidacy with a newline was sent")
	}
	if err := c.Candidacy("web", strings.Repeat("x", maxGuardLine)); err == nil {
		t.Fatal("a candidacy longer than a guard line was sent")
	}
	if err := c.Candidacy("web 1", `{"a": "b c"}`); err != nil || b.String() != "candidacy web%201 {\"a\": \"b c\"}\n" {
		t.Fatalf("sent %q, %v", b.String(), err)
	}
	if c, err := parseGuardCommand(strings.TrimSuffix(b.String(), "\n")); err != nil || c.text != `{"a": "b c"}` || c.inst != "web 1" {
		t.Fatalf("parsed %+v, %v", c, err)
	}
}

// The conversion base agrees with clock_gettime(CLOCK_MONOTONIC) and errs early, never late.
func TestMonoClockMatchesClockGettime(t *testing.T) {
	c, err := newMonoClock()
	if err != nil {
		t.Fatal(err)
	}
	if c.hi-c.lo > int64(time.Millisecond) {
		t.Logf("base bracket %v wide", time.Duration(c.hi-c.lo))
	}
	before, _ := monotonicNanos()
	got := c.nanos(time.Now())
	after, _ := monotonicNanos()
	if got > after || got < before-(c.hi-c.lo) {
		t.Fatalf("nanos(now) = %d, want within [%d, %d]", got, before-(c.hi-c.lo), after)
	}
	now, _ := monotonicNanos()
	if at := c.instant(now); at.After(time.Now()) {
		t.Fatalf("instant(CLOCK_MONOTONIC now) = %v from now, want not in the future", time.Until(at))
	}
}

// A guard that stops reading cannot hold up the daemon: with the pipe full, Hold gives up after
// GuardWriteTimeout and writes nothing (no half line for the guard to choke on later).
func TestGuardConnWriteIsBounded(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	// Fill the pipe: the guard reads nothing.
	if err := w.SetWriteDeadline(time.Now().Add(50 * ms)); err != nil {
		t.Fatal(err)
	}
	fill := bytes.Repeat([]byte("x"), 1<<20)
	n, err := w.Write(fill)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("filling the pipe: %d bytes, %v; want a full pipe", n, err)
	}
	c, err := NewGuardConn(w)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = c.Hold("a", time.Now().Add(time.Minute))
	took := time.Since(start)
	if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "fencing: guard: hold") {
		t.Fatalf("Hold into a full pipe = %v, want a deadline error naming the command", err)
	}
	if took < GuardWriteTimeout || took > GuardWriteTimeout+time.Second {
		t.Fatalf("Hold into a full pipe took %v, want about %v", took, GuardWriteTimeout)
	}
	w.Close()
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != n || bytes.Contains(rest, []byte("hold")) {
		t.Fatalf("the pipe holds %d bytes (%d filled), with part of a hold: %v", len(rest), n, bytes.Contains(rest, []byte("hold")))
	}
}

func (g *guardRun) releases() []released {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.released)
}

// One guard serves every instance of the daemon, each with its own deadline: the one that stops
// renewing is released at its deadline, with its own VIPs and IPVS services only, and the one that
// renews keeps its VIPs.
func TestGuardDeadlinesArePerInstance(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := startGuard(t)
		p := netip.MustParsePrefix
		for _, err := range []error{
			g.conn.VIPs("web", "eth0", []netip.Prefix{p("192.0.2.10/24")}),
			g.conn.VIPs("web", "eth1", []netip.Prefix{p("198.51.100.10/24"), p("198.51.100.11/24")}),
			g.conn.IPVS("web", []string{"TCP/192.0.2.10:80"}),
			g.conn.VIPs("db", "eth0", []netip.Prefix{p("192.0.2.20/24")}),
			g.conn.Hold("web", time.Now().Add(time.Second)),
			g.conn.Hold("db", time.Now().Add(time.Second)),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		for range 4 { // db renews, web does not (its instance is wedged)
			time.Sleep(500 * ms)
			_ = g.conn.Hold("db", time.Now().Add(time.Second))
		}
		synctest.Wait()
		r := g.releases()
		if len(r) != 1 || r[0].inst != "web" || r[0].at != time.Second {
			t.Fatalf("releases %+v, want web's alone at 1s", r)
		}
		want := Holdings{VIPs: map[string][]netip.Prefix{"eth0": {p("192.0.2.10/24")}, "eth1": {p("198.51.100.10/24"), p("198.51.100.11/24")}},
			IPVS: []string{"TCP/192.0.2.10:80"}}
		if !holdingsEqual(r[0].h, want) {
			t.Fatalf("web released with %+v, want %+v", r[0].h, want)
		}
		time.Sleep(5 * time.Second) // db stops too
		synctest.Wait()
		if r := g.releases(); len(r) != 2 || r[1].inst != "db" || r[1].at != 3*time.Second {
			t.Fatalf("releases %+v, want db's at 3s (its last renewal's deadline)", r)
		}
		g.w.Close()
		g.wait()
	})
}

func holdingsEqual(a, b Holdings) bool {
	if len(a.VIPs) != len(b.VIPs) || !slices.Equal(a.IPVS, b.IPVS) {
		return false
	}
	for dev, v := range a.VIPs {
		if !slices.Equal(v, b.VIPs[dev]) {
			return false
		}
	}
	return true
}

// At EOF every instance is released, and each instance's candidacy is ended as soon as its own
// release has succeeded: a failing release of one holds up neither the others' releases nor the
// end of their candidacies, and its own candidacy is ended only after its release succeeded.
func TestGuardEndsEachCandidacyAfterItsOwnReleaseAtEOF(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := startGuard(t)
		_ = g.conn.Candidacy("web", "lease-web")
		_ = g.conn.Candidacy("db", "lease-db")
		_ = g.conn.Hold("web", time.Now().Add(time.Second))
		_ = g.conn.Hold("db", time.Now().Add(time.Second))
		time.Sleep(100 * ms)
		g.failNext(1) // web's first try
		g.w.Close()
		if err := g.wait(); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range g.releases() {
			got = append(got, fmt.Sprintf("%s@%v", r.inst, r.at))
		}
		// web failed at 100ms, db succeeded at 100ms; web retried at 120ms.
		if want := []string{"web@100ms", "db@100ms", "web@120ms"}; !slices.Equal(got, want) {
			t.Fatalf("releases %q, want %q", got, want)
		}
		_, ends := g.events()
		slices.SortFunc(ends, func(a, b guardEnd) int { return int(a.at - b.at) })
		if len(ends) != 2 || ends[0] != (guardEnd{at: 100 * ms, inst: "db", candidacy: "lease-db"}) ||
			ends[1] != (guardEnd{at: 120 * ms, inst: "web", candidacy: "lease-web"}) {
			t.Fatalf("ended %+v, want db's at 100ms and web's at 120ms", ends)
		}
	})
}

// A release for one instance ends only its hold.
func TestGuardReleaseIsPerInstance(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := startGuard(t)
		_ = g.conn.Hold("web", time.Now().Add(time.Second))
		_ = g.conn.Hold("db", time.Now().Add(time.Second))
		_ = g.conn.Release("web")
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if r := g.releases(); len(r) != 1 || r[0].inst != "db" {
			t.Fatalf("releases %+v, want db's only", r)
		}
		g.w.Close()
		g.wait()
	})
}

// A list of VIPs or IPVS words longer than a line goes in several lines (vips, then vips+), each
// under PIPE_BUF so that each write is whole; the guard puts them together, and a later vips line
// replaces them all.
func TestGuardConnSplitsLongLists(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := startGuard(t)
		var vips []netip.Prefix
		for i := range 600 {
			vips = append(vips, netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i), 14: byte(i >> 8)}), 64))
		}
		var words []string
		for i := range 300 {
			words = append(words, fmt.Sprintf("TCP/10.0.%d.%d:443", i/250, i%250))
		}
		var b bytes.Buffer
		c := &GuardConn{w: &b, clock: g.clock}
		if err := c.VIPs("web", "eth0", vips); err != nil {
			t.Fatal(err)
		}
		if err := c.IPVS("web", words); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, l := range strings.SplitAfter(b.String(), "\n") {
			if len(l) > 4096 {
				t.Fatalf("a line of %d bytes", len(l))
			}
			if l != "" {
				n++
			}
		}
		if n < 4 {
			t.Fatalf("%d lines, want the lists split", n)
		}
		if _, err := g.w.Write(b.Bytes()); err != nil {
			t.Fatal(err)
		}
		_ = g.conn.Hold("web", time.Now().Add(time.Second))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		r := g.releases()
		if len(r) != 1 || !slices.Equal(r[0].h.VIPs["eth0"], vips) || !slices.Equal(r[0].h.IPVS, words) {
			t.Fatalf("released %d times; want once with all %d VIPs and %d words", len(r), len(vips), len(words))
		}
		_ = g.conn.VIPs("web", "eth0", vips[:1])
		_ = g.conn.IPVS("web", nil)
		_ = g.conn.Hold("web", time.Now().Add(time.Second))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if r := g.releases(); len(r) != 2 || !slices.Equal(r[1].h.VIPs["eth0"], vips[:1]) || len(r[1].h.IPVS) != 0 {
			t.Fatalf("second release with %+v, want the one VIP and no IPVS", r[len(r)-1].h)
		}
		g.w.Close()
		g.wait()
	})
}
