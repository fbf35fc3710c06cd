package fencing

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// The fence guard is a watchdog in a process of its own that lets go of the VIPs when the daemon
// cannot: the daemon was SIGKILLed (or crashed), or it is stopped (SIGSTOP, a frozen cgroup) or
// hung past its self-fencing deadline. A daemon that can act fences itself (the Coordinator's
// timer); the guard covers the cases where it cannot, with millisecond precision, where the kernel
// address lifetime (the last backstop, when the guard is killed too) has whole-second granularity.
//
// The daemon talks to its guard over a pipe (the guard's stdin), one command a line:
//
//	hold <ns>   the daemon holds, or is about to bind, the VIPs; it must send hold again within
//	            <ns> nanoseconds (its remaining validity), else the guard releases. 0: no deadline.
//	release     the daemon has let go; the guard has nothing to watch.
//
// When the pipe reaches EOF (the daemon exited, however it died) the guard releases and returns:
// a dead daemon holds nothing. The guard ignores SIGINT and SIGTERM (its caller arranges that), so
// a Ctrl-C or a service stop reaches the daemon, which releases in order, before the guard ends.

// Guard runs the guard's side until r reaches EOF or ctx is done. release removes the VIPs and
// reports whether any were bound; it is called when a hold's deadline passes without a renewal, and
// once more at EOF. Guard returns nil at
// EOF, ctx's error when ctx is done, and an error for a malformed command (after releasing: a
// daemon that speaks nonsense is not trusted to hold anything). Guard reads r on a goroutine of its
// own that ends when r does: when Guard returns early, the caller closes r (the guard process just
// exits).
func Guard(ctx context.Context, r io.Reader, release func(reason string) (bool, error), log *zap.Logger) error {
	if log == nil {
		log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(ctx) // ends the reader's pending send when Guard returns
	defer cancel()
	type line struct {
		text string
		err  error
	}
	lines := make(chan line)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			select {
			case lines <- line{text: sc.Text()}:
			case <-ctx.Done():
				return
			}
		}
		err := sc.Err()
		if err == nil {
			err = io.EOF
		}
		select {
		case lines <- line{err: err}:
		case <-ctx.Done():
		}
	}()

	doRelease := func(reason string) {
		removed, err := release(reason)
		switch {
		case err != nil:
			log.Error("fence guard: releasing the VIPs failed", zap.String("reason", reason), zap.Error(err))
		case removed:
			log.Warn("fence guard removed the VIPs", zap.String("reason", reason))
		default:
			log.Debug("fence guard: no VIP bound", zap.String("reason", reason))
		}
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	holding := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			if holding {
				holding = false
				doRelease("the daemon did not renew its hold before the deadline (stopped or hung)")
			}
		case l := <-lines:
			if l.err != nil {
				reason := "the daemon exited"
				if !errors.Is(l.err, io.EOF) {
					reason = fmt.Sprintf("reading from the daemon failed: %v", l.err)
				}
				doRelease(reason)
				return nil
			}
			d, hold, err := parseGuardCommand(l.text)
			if err != nil {
				doRelease("malformed command from the daemon")
				return err
			}
			timer.Stop()
			holding = hold
			if hold && d > 0 {
				timer.Reset(d)
			}
		}
	}
}

func parseGuardCommand(s string) (validity time.Duration, hold bool, err error) {
	f := strings.Fields(s)
	switch {
	case len(f) == 1 && f[0] == "release":
		return 0, false, nil
	case len(f) == 2 && f[0] == "hold":
		ns, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || ns < 0 {
			return 0, false, fmt.Errorf("fencing: guard: bad hold %q", s)
		}
		return time.Duration(ns), true, nil
	}
	return 0, false, fmt.Errorf("fencing: guard: unknown command %q", s)
}

// GuardConn is the daemon's end of the pipe to its guard. Hold and Release are safe from any
// goroutine.
type GuardConn struct {
	mu sync.Mutex
	w  io.Writer
}

// NewGuardConn returns a GuardConn writing to w (the guard's stdin).
func NewGuardConn(w io.Writer) *GuardConn { return &GuardConn{w: w} }

// ErrGuardDeadline is returned by Hold for a deadline that has already passed: nothing is sent.
var ErrGuardDeadline = errors.New("fencing: guard: deadline already passed")

// Hold tells the guard the VIPs are (about to be) held until the self-fencing deadline until (on
// the monotonic clock; zero: no deadline). Send it before binding, and again on every renewal.
func (g *GuardConn) Hold(until time.Time) error {
	var ns int64
	if !until.IsZero() {
		d := time.Until(until)
		if d <= 0 {
			return ErrGuardDeadline
		}
		ns = int64(d)
	}
	return g.send("hold " + strconv.FormatInt(ns, 10))
}

// Release tells the guard the VIPs are no longer held. Send it after removing them.
func (g *GuardConn) Release() error { return g.send("release") }

func (g *GuardConn) send(cmd string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, err := io.WriteString(g.w, cmd+"\n"); err != nil {
		return fmt.Errorf("fencing: guard: %s: %w", cmd, err)
	}
	return nil
}
