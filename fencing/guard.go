package fencing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// The fence guard is a watchdog in a process of its own that lets go of the VIPs when the daemon
// cannot: the daemon was SIGKILLed (or crashed), or it is stopped (SIGSTOP, a frozen cgroup) or
// hung past its self-fencing deadline. A daemon that can act fences itself (the Coordinator's
// timer); the guard covers the cases where it cannot, with millisecond precision, where the kernel
// address lifetime (the last backstop, when the guard is killed too) has whole-second granularity.
//
// The daemon talks to its guard over a pipe (the guard's stdin), one command a line:
//
//	hold <ns>   the daemon holds, or is about to bind, the VIPs until the instant at which
//	            CLOCK_MONOTONIC reads <ns> nanoseconds (its self-fencing deadline); unless a later
//	            hold arrives first, the guard releases then. 0: no deadline.
//	release     the daemon has let go; the guard has nothing to watch.
//	candidacy <text>
//	            what holds the daemon's place in the store's election (its etcd lease, its
//	            ZooKeeper session), in words the guard's EndCandidacy understands (hacoord sends
//	            one line of JSON); the latest wins. `candidacy` alone: none (the daemon ended it).
//
// The deadline is an absolute instant on CLOCK_MONOTONIC, the clock both processes share (the guard
// is the daemon's child, in the same time namespace; it does not jump with the wall clock and, like
// Go's monotonic clock, it stops while the machine is suspended). So a line the guard reads late
// (the guard was not scheduled, the pipe was full) cannot extend the deadline: a hold whose instant
// has passed when it is read releases at once, unless a later line is already waiting. Each process
// converts between time.Time and CLOCK_MONOTONIC with a base it takes at start (time.Now between two
// clock_gettime calls), rounding so that both conversions can only make the deadline earlier.
//
// When the pipe reaches EOF (the daemon exited, however it died) the guard releases and returns:
// a dead daemon holds nothing. Once that release has succeeded, and only then, the guard ends the
// candidacy the daemon named last (GuardActions.EndCandidacy: it revokes the lease, closes the
// session), so that the next candidate takes over at once rather than when the store notices the
// silence, a lease TTL or session timeout later. Never before the release: the next master would
// bind while the dead one's VIPs are still there. Only at EOF: when a hold's deadline passes the
// daemon may be alive (stopped, or its hold was lost in a write that timed out, see below), and it
// would be master again with its lease while the next candidate binds; a stopped daemon's lease
// ends when its keepalives stop, as it would without a guard. A read error other than EOF, or a
// malformed command, releases without ending anything either: the daemon may be alive.
//
// A release that fails is retried, GuardRetryMin apart at first and
// doubling up to GuardRetryMax, until it succeeds or Guard returns; a hold that arrives meanwhile
// ends the retries (the daemon is master again, until that hold's deadline). The guard ignores
// SIGINT and SIGTERM (its caller arranges that), so a Ctrl-C or a service stop reaches the daemon,
// which releases in order, before the guard ends.
//
// The daemon's writes are bounded by GuardWriteTimeout (GuardConn): a guard that stops reading
// cannot hold up a renewal. A hold that cannot be written in time is not sent; the guard then
// keeps the previous deadline and, if it is alive, releases the VIPs at that deadline, early but
// safe (the daemon's vip Manager binds them again if it is still master, and the next hold that
// gets through re-arms the guard).

// GuardRetryMin and GuardRetryMax bound the pause between two tries of a release that failed.
const (
	GuardRetryMin = 20 * time.Millisecond
	GuardRetryMax = time.Second
)

// GuardWriteTimeout bounds one write of the daemon to its guard. The pipe holds thousands of lines,
// so a write waits only when the guard has not read for many minutes.
const GuardWriteTimeout = 100 * time.Millisecond

// monoClock converts between time.Time instants (which carry Go's monotonic clock reading) and
// CLOCK_MONOTONIC nanoseconds. Go's monotonic clock is CLOCK_MONOTONIC offset by a constant, so one
// pair of readings taken together converts every instant; the pair is bracketed by two
// clock_gettime calls, and each direction uses the bracket's end that makes a deadline earlier.
type monoClock struct {
	at     time.Time
	lo, hi int64 // CLOCK_MONOTONIC ns just before and just after at
}

// newMonoClock takes the base of a monoClock now.
func newMonoClock() (monoClock, error) {
	lo, err := monotonicNanos()
	if err != nil {
		return monoClock{}, err
	}
	at := time.Now()
	hi, err := monotonicNanos()
	if err != nil {
		return monoClock{}, err
	}
	return monoClock{at: at, lo: lo, hi: hi}, nil
}

func monotonicNanos() (int64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("fencing: clock_gettime(CLOCK_MONOTONIC): %w", err)
	}
	return ts.Nano(), nil
}

// nanos returns the CLOCK_MONOTONIC reading at t, never later than the true one.
func (c monoClock) nanos(t time.Time) int64 { return c.lo + int64(t.Sub(c.at)) }

// instant returns the instant at which CLOCK_MONOTONIC reads ns, never later than the true one.
func (c monoClock) instant(ns int64) time.Time { return c.at.Add(time.Duration(ns - c.hi)) }

// GuardActions are what a guard does for its daemon.
type GuardActions struct {
	// Release removes the VIPs and reports whether any were bound. It is called when a hold's
	// deadline passes without a renewal, once more at EOF, and again after a failure (see the
	// protocol above). Required.
	Release func(reason string) (bool, error)
	// EndCandidacy, if set, ends the candidacy the daemon named last (the text of its candidacy
	// line) in the store. It is called at most once: at EOF, after the release succeeded, with
	// Guard's ctx; it bounds its own time (the store ends the candidacy by itself a TTL later).
	EndCandidacy func(ctx context.Context, candidacy string) error
}

// Guard runs the guard's side until r reaches EOF or ctx is done (see the protocol above). It
// returns nil at EOF once the release has succeeded (and the candidacy, if named, has been ended
// or failed to end: that is logged), ctx's error when ctx is done, and an error for a malformed
// command (after releasing: a daemon that speaks nonsense is not trusted to hold anything). Guard
// reads r on a goroutine of its own that ends when r does: when Guard returns early, the caller
// closes r (the guard process just exits).
func Guard(ctx context.Context, r io.Reader, a GuardActions, log *zap.Logger) error {
	if a.Release == nil {
		return errors.New("fencing: guard: no release")
	}
	clock, err := newMonoClock()
	if err != nil {
		return err
	}
	return guard(ctx, r, a, log, clock)
}

// guardBatch is what one read from the daemon brought: the complete lines, and the error that ended
// the reading (io.EOF when the daemon closed its end), if it did.
type guardBatch struct {
	lines []string
	err   error
}

// maxGuardLine bounds a line from the daemon.
const maxGuardLine = 4096

// readGuardBatches sends what each read of r brings on out, as whole lines, until r fails or ctx is
// done. Lines that arrive together (a backlog the guard was late to read) come in one batch, so
// the guard acts on the latest of them, not on a stale hold among them.
func readGuardBatches(ctx context.Context, r io.Reader, out chan<- guardBatch) {
	buf := make([]byte, 64<<10) // a whole pipe
	var partial []byte
	for {
		n, err := r.Read(buf)
		data := append(partial, buf[:n]...)
		var b guardBatch
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			b.lines = append(b.lines, strings.TrimSuffix(string(data[:i]), "\r"))
			data = data[i+1:]
		}
		partial = append(partial[:0], data...)
		switch {
		case err != nil && len(partial) > 0:
			b.lines = append(b.lines, string(partial)) // the last line, unterminated
			b.err = err
		case err != nil:
			b.err = err
		case len(partial) > maxGuardLine:
			b.err = fmt.Errorf("a line longer than %d bytes", maxGuardLine)
		}
		if len(b.lines) > 0 || b.err != nil {
			select {
			case out <- b:
			case <-ctx.Done():
				return
			}
		}
		if b.err != nil {
			return
		}
	}
}

func guard(ctx context.Context, r io.Reader, a GuardActions, log *zap.Logger, clock monoClock) error {
	if log == nil {
		log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(ctx) // ends the reader's pending send when Guard returns
	defer cancel()
	batches := make(chan guardBatch)
	go readGuardBatches(ctx, r, batches)

	g := &guardState{release: a.Release, end: a.EndCandidacy, log: log, deadline: time.NewTimer(time.Hour), retry: time.NewTimer(time.Hour)}
	g.deadline.Stop()
	g.retry.Stop()
	defer g.deadline.Stop()
	defer g.retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-g.deadline.C:
			// A renewal may have come in with the deadline (the guard read late): it wins.
			select {
			case b := <-batches:
				if done, err := g.batch(ctx, b, clock); done {
					return err
				}
				continue
			default:
			}
			if g.holding {
				g.holding = false
				g.attempt("the daemon did not renew its hold before the deadline (stopped or hung)")
			}
		case <-g.retry.C:
			g.attempt(g.pending)
		case b := <-batches:
			if done, err := g.batch(ctx, b, clock); done {
				return err
			}
		}
	}
}

// guardState is the state of one guard loop; only that loop touches it.
type guardState struct {
	release   func(reason string) (bool, error)
	end       func(ctx context.Context, candidacy string) error // nil: none
	candidacy string                                            // named last; "": none
	log       *zap.Logger
	deadline  *time.Timer // the hold's deadline
	holding   bool        // a hold with a deadline is armed
	retry     *time.Timer // the next try of a failed release
	pending   string      // reason of a release not yet done ("": none)
	backoff   time.Duration
}

// batch handles the lines of one read from the daemon, in order, then the end of the pipe if the
// read brought it; done reports that Guard returns err.
func (g *guardState) batch(ctx context.Context, b guardBatch, clock monoClock) (done bool, err error) {
	for _, l := range b.lines {
		if done, err := g.line(ctx, l, clock); done {
			return true, err
		}
	}
	if b.err == nil {
		return false, nil
	}
	if !errors.Is(b.err, io.EOF) {
		return true, g.releaseUntilDone(ctx, fmt.Sprintf("reading from the daemon failed: %v", b.err))
	}
	if err := g.releaseUntilDone(ctx, "the daemon exited"); err != nil {
		return true, err
	}
	g.endCandidacy(ctx)
	return true, nil
}

// endCandidacy ends the dead daemon's candidacy, if it named one; the VIPs are gone.
func (g *guardState) endCandidacy(ctx context.Context) {
	if g.end == nil || g.candidacy == "" {
		return
	}
	start := time.Now()
	if err := g.end(ctx, g.candidacy); err != nil {
		g.log.Warn("fence guard: ending the dead daemon's candidacy failed; the store ends it when its lease or session runs out",
			zap.Duration("took", time.Since(start)), zap.Error(err))
		return
	}
	g.log.Info("fence guard ended the dead daemon's candidacy: the next candidate takes over now",
		zap.Duration("took", time.Since(start)))
}

// line handles one line from the daemon; done reports that Guard returns err.
func (g *guardState) line(ctx context.Context, l string, clock monoClock) (done bool, err error) {
	c, err := parseGuardCommand(l)
	if err != nil {
		if rerr := g.releaseUntilDone(ctx, "malformed command from the daemon"); rerr != nil {
			return true, errors.Join(err, rerr)
		}
		return true, err
	}
	if c.verb == verbCandidacy {
		g.candidacy = c.candidacy
		return false, nil
	}
	g.deadline.Stop()
	g.holding = false
	if c.verb == verbRelease {
		return false, nil // a failed release goes on being retried: the daemon says nothing is held
	}
	ns := c.deadline
	if g.pending != "" {
		g.log.Info("fence guard: the daemon holds the VIPs again; no longer retrying the release", zap.String("reason", g.pending))
		g.pending = ""
		g.retry.Stop()
	}
	if ns > 0 {
		g.holding = true
		g.deadline.Reset(time.Until(clock.instant(ns))) // passed already: fires at once
	}
	return false, nil
}

// attempt calls release once for reason and reports whether it succeeded; on failure it schedules
// the next try on g.retry.
func (g *guardState) attempt(reason string) bool {
	removed, err := g.release(reason)
	if err != nil {
		switch {
		case g.pending == "":
			g.backoff = GuardRetryMin
		case g.backoff < GuardRetryMax:
			g.backoff = min(2*g.backoff, GuardRetryMax)
		}
		g.pending = reason
		g.log.Error("fence guard: releasing the VIPs failed; retrying", zap.String("reason", reason),
			zap.Duration("retry-in", g.backoff), zap.Error(err))
		g.retry.Reset(g.backoff)
		return false
	}
	if g.pending != "" {
		g.pending = ""
		g.retry.Stop()
	}
	if removed {
		g.log.Warn("fence guard removed the VIPs", zap.String("reason", reason))
	} else {
		g.log.Debug("fence guard: no VIP bound", zap.String("reason", reason))
	}
	return true
}

// releaseUntilDone releases, retrying until it succeeds or ctx is done: the daemon is gone, and
// this is the guard's last duty.
func (g *guardState) releaseUntilDone(ctx context.Context, reason string) error {
	g.deadline.Stop()
	for !g.attempt(reason) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-g.retry.C:
		}
	}
	return nil
}

// guardCommand is one line from the daemon, parsed.
type guardCommand struct {
	verb      string
	deadline  int64  // hold: CLOCK_MONOTONIC ns, 0: none
	candidacy string // candidacy: the text, "" for none
}

const (
	verbHold      = "hold"
	verbRelease   = "release"
	verbCandidacy = "candidacy"
)

func parseGuardCommand(s string) (guardCommand, error) {
	verb, rest, _ := strings.Cut(strings.TrimLeft(s, " \t"), " ")
	rest = strings.TrimSpace(rest)
	switch {
	case verb == verbRelease && rest == "":
		return guardCommand{verb: verb}, nil
	case verb == verbHold:
		ns, err := strconv.ParseInt(rest, 10, 64)
		if err != nil || ns < 0 {
			return guardCommand{}, fmt.Errorf("fencing: guard: bad hold %q", s)
		}
		return guardCommand{verb: verb, deadline: ns}, nil
	case verb == verbCandidacy:
		return guardCommand{verb: verb, candidacy: rest}, nil
	}
	return guardCommand{}, fmt.Errorf("fencing: guard: unknown command %q", s)
}

// GuardConn is the daemon's end of the pipe to its guard. Hold and Release are safe from any
// goroutine. Each write is bounded by GuardWriteTimeout when the writer supports write deadlines
// (an *os.File from os.Pipe does); otherwise it blocks until the guard reads.
type GuardConn struct {
	mu    sync.Mutex
	w     io.Writer
	clock monoClock
}

// NewGuardConn returns a GuardConn writing to w (the guard's stdin), taking the base it converts
// deadlines to CLOCK_MONOTONIC with.
func NewGuardConn(w io.Writer) (*GuardConn, error) {
	clock, err := newMonoClock()
	if err != nil {
		return nil, err
	}
	return &GuardConn{w: w, clock: clock}, nil
}

// ErrGuardDeadline is returned by Hold for a deadline that has already passed: nothing is sent.
var ErrGuardDeadline = errors.New("fencing: guard: deadline already passed")

// Hold tells the guard the VIPs are (about to be) held until the self-fencing deadline until (a
// time.Time from time.Now, with its monotonic reading; zero: no deadline). Send it before binding,
// and again on every renewal. An error other than ErrGuardDeadline means the guard did not get it
// and goes by the previous deadline.
func (g *GuardConn) Hold(until time.Time) error {
	var ns int64
	if !until.IsZero() {
		if !time.Now().Before(until) {
			return ErrGuardDeadline
		}
		ns = g.clock.nanos(until)
	}
	return g.send("hold " + strconv.FormatInt(ns, 10))
}

// Release tells the guard the VIPs are no longer held. Send it after removing them.
func (g *GuardConn) Release() error { return g.send("release") }

// Candidacy tells the guard what to end in the store once the daemon is dead (see GuardActions):
// one line of text without a newline ("": none). Send it before the candidacy can win, so the
// guard knows it before the first hold.
func (g *GuardConn) Candidacy(text string) error {
	if strings.ContainsAny(text, "\r\n") || len(verbCandidacy)+1+len(text) > maxGuardLine {
		return fmt.Errorf("fencing: guard: candidacy: not one line of at most %d bytes", maxGuardLine-len(verbCandidacy)-1)
	}
	return g.send(strings.TrimSpace(verbCandidacy + " " + text))
}

func (g *GuardConn) send(cmd string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if d, ok := g.w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		// A line is far shorter than PIPE_BUF, so it is written whole or not at all.
		if err := d.SetWriteDeadline(time.Now().Add(GuardWriteTimeout)); err != nil && !errors.Is(err, os.ErrNoDeadline) {
			return fmt.Errorf("fencing: guard: %s: %w", cmd, err)
		}
	}
	if _, err := io.WriteString(g.w, cmd+"\n"); err != nil {
		return fmt.Errorf("fencing: guard: %s: %w", cmd, err)
	}
	return nil
}
