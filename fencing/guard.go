package fencing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
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
// One guard serves the whole daemon: every instance, with its VIPs on every device, its IPVS
// services and its candidacy. The daemon talks to it over a pipe (the guard's stdin), one command
// a line, each naming the instance it is about (<inst>, URL path-escaped: no white space):
//
//	vips <inst> <dev> <prefix>...
//	            the VIPs the guard removes from device <dev> when it releases <inst> (the latest
//	            wins; none: nothing on <dev>). `vips+` with the same words appends to the latest,
//	            for a list longer than one line.
//	ipvs <inst> <token>...
//	            what the guard withdraws from the IPVS table when it releases <inst>, in words
//	            GuardActions.Release understands (hacoord sends the services and real servers the
//	            instance created; none: nothing). `ipvs+` appends, as `vips+`.
//	hold <inst> <ns>
//	            <inst> holds, or is about to bind, its VIPs until the instant at which
//	            CLOCK_MONOTONIC reads <ns> nanoseconds (its self-fencing deadline); unless a later
//	            hold for <inst> arrives first, the guard releases <inst> then, and only <inst>.
//	            0: no deadline.
//	release <inst>
//	            <inst> has let go; the guard has nothing of it to watch.
//	candidacy <inst> <text>
//	            what holds <inst>'s place in the store's election (its etcd lease, its ZooKeeper
//	            session), in words the guard's EndCandidacy understands (hacoord sends one line of
//	            JSON); the latest wins. No text: none (the daemon ended it).
//
// The deadline is an absolute instant on CLOCK_MONOTONIC, the clock both processes share (the guard
// is the daemon's child, in the same time namespace; it does not jump with the wall clock and, like
// Go's monotonic clock, it stops while the machine is suspended). So a line the guard reads late
// (the guard was not scheduled, the pipe was full) cannot extend the deadline: a hold whose instant
// has passed when it is read releases at once, unless a later line is already waiting. Each process
// converts between time.Time and CLOCK_MONOTONIC with a base it takes at start (time.Now between two
// clock_gettime calls), rounding so that both conversions can only make the deadline earlier.
//
// When the pipe reaches EOF (the daemon exited, however it died) the guard releases every instance
// and returns: a dead daemon holds nothing. Once an instance's release has succeeded, and only
// then, the guard ends the candidacy the daemon named last for it (GuardActions.EndCandidacy: it
// revokes the lease, closes the session), so that the next candidate takes over at once rather
// than when the store notices the silence, a lease TTL or session timeout later. Never before the release: the next master would
// bind while the dead one's VIPs are still there. Only at EOF: when a hold's deadline passes the
// daemon may be alive (stopped, or its hold was lost in a write that timed out, see below), and it
// would be master again with its lease while the next candidate binds; a stopped daemon's lease
// ends when its keepalives stop, as it would without a guard. A read error other than EOF, or a
// malformed command, releases without ending anything either: the daemon may be alive.
//
// A release that fails is retried, GuardRetryMin apart at first and doubling up to
// GuardRetryMax, until it succeeds or Guard returns; a hold for that instance that
// arrives meanwhile ends the retries (it is master again, until that hold's deadline). Instances
// are independent: one whose release fails holds up neither the others' releases nor, at EOF, the
// end of their candidacies. The guard ignores SIGINT and SIGTERM (its caller arranges that), so a
// Ctrl-C or a service stop reaches the daemon, which releases in order, before the guard ends.
//
// A list split over several lines (vips, then vips+) is written back to back, each line whole
// (under PIPE_BUF); the Supervisor records a list as told only once every line of it was written.
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

// Holdings are what the guard removes when it releases an instance, as the daemon last told it.
type Holdings struct {
	// VIPs are the VIPs by device.
	VIPs map[string][]netip.Prefix
	// IPVS is the words of the instance's ipvs line (nil: nothing to withdraw).
	IPVS []string
}

// Empty reports whether h names nothing to remove.
func (h Holdings) Empty() bool { return len(h.VIPs) == 0 && len(h.IPVS) == 0 }

func (h Holdings) clone() Holdings {
	c := Holdings{IPVS: slices.Clone(h.IPVS)}
	if len(h.VIPs) > 0 {
		c.VIPs = make(map[string][]netip.Prefix, len(h.VIPs))
		for dev, v := range h.VIPs {
			c.VIPs[dev] = slices.Clone(v)
		}
	}
	return c
}

// GuardActions are what a guard does for its daemon. The guard calls them from its loop, one at a
// time, except EndCandidacy, which it calls for several instances at once.
type GuardActions struct {
	// Release removes what instance holds (h: its VIPs and IPVS services) and reports whether
	// anything was there. It is called for instance when its hold's deadline passes without a
	// renewal, for every instance at EOF, and again after a failure (see the protocol above).
	// Required.
	Release func(instance string, h Holdings, reason string) (bool, error)
	// EndCandidacy, if set, ends the candidacy the daemon named last for instance (the text of its
	// candidacy line) in the store. It is called at most once per instance: at EOF, after that
	// instance's release succeeded, with Guard's ctx; it bounds its own time (the store ends the
	// candidacy by itself a TTL later).
	EndCandidacy func(ctx context.Context, instance, candidacy string) error
	// Learn, if set, hears an instance's Holdings whenever a vips or ipvs line changes them, so
	// that the guard can prepare what its release needs (open sockets) before a deadline, not at
	// it. It must not block for long.
	Learn func(instance string, h Holdings)
}

// Guard runs the guard's side until r reaches EOF or ctx is done (see the protocol above). It
// returns nil at EOF once every release has succeeded (and the candidacies, where named, have been
// ended or failed to end: that is logged), ctx's error when ctx is done, and an error for a
// malformed command (after releasing everything: a daemon that speaks nonsense is not trusted to
// hold anything). Guard reads r on a goroutine of its own that ends when r does: when Guard
// returns early, the caller closes r (the guard process just exits).
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

	g := &guardState{a: a, log: log, clock: clock, insts: map[string]*guardInstance{}, timer: time.NewTimer(time.Hour)}
	defer g.timer.Stop()
	for {
		g.arm()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-g.timer.C:
			// A renewal may have come in with the deadline (the guard read late): it wins.
			select {
			case b := <-batches:
				if done, err := g.batch(ctx, b); done {
					return err
				}
				continue
			default:
			}
			g.due(time.Now())
		case b := <-batches:
			if done, err := g.batch(ctx, b); done {
				return err
			}
		}
	}
}

// guardState is the state of one guard loop; only that loop touches it.
type guardState struct {
	a     GuardActions
	log   *zap.Logger
	clock monoClock
	insts map[string]*guardInstance
	order []*guardInstance // in the order the daemon first named them
	timer *time.Timer      // at the earliest deadline or retry of any instance
}

// guardInstance is what the guard knows of one instance.
type guardInstance struct {
	name      string
	log       *zap.Logger
	h         Holdings
	candidacy string    // named last; "": none
	holding   bool      // a hold with a deadline is armed
	deadline  time.Time // the hold's deadline, while holding
	pending   string    // reason of a release not yet done ("": none)
	retryAt   time.Time // the next try of that release
	backoff   time.Duration
}

// instance returns the instance named name, new if the daemon had not named it before.
func (g *guardState) instance(name string) *guardInstance {
	in := g.insts[name]
	if in == nil {
		in = &guardInstance{name: name, log: g.log.With(zap.String("instance", name))}
		g.insts[name] = in
		g.order = append(g.order, in)
	}
	return in
}

// arm sets the timer to the earliest deadline or retry of any instance.
func (g *guardState) arm() {
	var next time.Time
	for _, in := range g.order {
		for _, t := range []time.Time{in.deadlineOrZero(), in.retryOrZero()} {
			if !t.IsZero() && (next.IsZero() || t.Before(next)) {
				next = t
			}
		}
	}
	g.timer.Stop()
	if !next.IsZero() {
		g.timer.Reset(time.Until(next)) // passed already: fires at once
	}
}

func (in *guardInstance) deadlineOrZero() time.Time {
	if in.holding {
		return in.deadline
	}
	return time.Time{}
}

func (in *guardInstance) retryOrZero() time.Time {
	if in.pending != "" {
		return in.retryAt
	}
	return time.Time{}
}

// due releases every instance whose deadline has come, and retries the failed releases whose time
// has come.
func (g *guardState) due(now time.Time) {
	for _, in := range g.order {
		if in.holding && !now.Before(in.deadline) {
			in.holding = false
			g.attempt(in, "the daemon did not renew its hold before the deadline (stopped or hung)")
		} else if in.pending != "" && !now.Before(in.retryAt) {
			g.attempt(in, in.pending)
		}
	}
}

// batch handles the lines of one read from the daemon, in order, then the end of the pipe if the
// read brought it; done reports that Guard returns err.
func (g *guardState) batch(ctx context.Context, b guardBatch) (done bool, err error) {
	for _, l := range b.lines {
		if done, err := g.line(ctx, l); done {
			return true, err
		}
	}
	if b.err == nil {
		return false, nil
	}
	if !errors.Is(b.err, io.EOF) {
		return true, g.releaseAll(ctx, fmt.Sprintf("reading from the daemon failed: %v", b.err), false)
	}
	return true, g.releaseAll(ctx, "the daemon exited", true)
}

// endCandidacy ends in's candidacy, if the daemon named one; its VIPs are gone.
func (g *guardState) endCandidacy(ctx context.Context, in *guardInstance) {
	if g.a.EndCandidacy == nil || in.candidacy == "" {
		return
	}
	start := time.Now()
	if err := g.a.EndCandidacy(ctx, in.name, in.candidacy); err != nil {
		in.log.Warn("fence guard: ending the dead daemon's candidacy failed; the store ends it when its lease or session runs out",
			zap.Duration("took", time.Since(start)), zap.Error(err))
		return
	}
	in.log.Info("fence guard ended the dead daemon's candidacy: the next candidate takes over now",
		zap.Duration("took", time.Since(start)))
}

// line handles one line from the daemon; done reports that Guard returns err.
func (g *guardState) line(ctx context.Context, l string) (done bool, err error) {
	c, err := parseGuardCommand(l)
	if err != nil {
		if rerr := g.releaseAll(ctx, "malformed command from the daemon", false); rerr != nil {
			return true, errors.Join(err, rerr)
		}
		return true, err
	}
	in := g.instance(c.inst)
	switch c.verb {
	case verbCandidacy:
		in.candidacy = c.text
	case verbVIPs, verbVIPsMore:
		if in.h.VIPs == nil {
			in.h.VIPs = map[string][]netip.Prefix{}
		}
		if c.verb == verbVIPs {
			in.h.VIPs[c.dev] = nil
		}
		in.h.VIPs[c.dev] = append(in.h.VIPs[c.dev], c.vips...)
		if len(in.h.VIPs[c.dev]) == 0 {
			delete(in.h.VIPs, c.dev)
		}
		g.learn(in)
	case verbIPVS, verbIPVSMore:
		if c.verb == verbIPVS {
			in.h.IPVS = nil
		}
		in.h.IPVS = append(in.h.IPVS, c.words...)
		g.learn(in)
	case verbRelease:
		in.holding = false // a failed release goes on being retried: the daemon says nothing is held
	case verbHold:
		in.holding = false
		if in.pending != "" {
			in.log.Info("fence guard: the daemon holds the VIPs again; no longer retrying the release", zap.String("reason", in.pending))
			in.pending = ""
		}
		if c.deadline > 0 {
			in.holding, in.deadline = true, g.clock.instant(c.deadline)
		}
	}
	return false, nil
}

func (g *guardState) learn(in *guardInstance) {
	if g.a.Learn != nil {
		g.a.Learn(in.name, in.h.clone())
	}
}

// attempt calls release once for in and reason and reports whether it succeeded; on failure it
// schedules the next try.
func (g *guardState) attempt(in *guardInstance, reason string) bool {
	removed, err := g.a.Release(in.name, in.h.clone(), reason)
	if err != nil {
		switch {
		case in.pending == "":
			in.backoff = GuardRetryMin
		case in.backoff < GuardRetryMax:
			in.backoff = min(2*in.backoff, GuardRetryMax)
		}
		in.pending, in.retryAt = reason, time.Now().Add(in.backoff)
		in.log.Error("fence guard: releasing failed; retrying", zap.String("reason", reason),
			zap.Duration("retry-in", in.backoff), zap.Error(err))
		return false
	}
	in.pending = ""
	if removed {
		in.log.Warn("fence guard removed the VIPs", zap.String("reason", reason))
	} else {
		in.log.Debug("fence guard: nothing bound", zap.String("reason", reason))
	}
	return true
}

// releaseAll releases every instance, retrying each until it succeeds or ctx is done: the daemon
// is gone (or not to be trusted), and this is the guard's last duty. With end (the daemon exited),
// each instance's candidacy is ended once its release has succeeded, while the others' releases
// go on.
func (g *guardState) releaseAll(ctx context.Context, reason string, end bool) error {
	var ends sync.WaitGroup
	defer ends.Wait()
	left := slices.Clone(g.order)
	for _, in := range left {
		in.holding = false
	}
	first := true
	for len(left) > 0 {
		var still []*guardInstance
		now := time.Now()
		for _, in := range left {
			if !first && now.Before(in.retryAt) {
				still = append(still, in)
				continue
			}
			if !g.attempt(in, reason) {
				still = append(still, in)
				continue
			}
			if end {
				ends.Go(func() { g.endCandidacy(ctx, in) })
			}
		}
		first, left = false, still
		if len(left) == 0 {
			break
		}
		next := left[0].retryAt
		for _, in := range left[1:] {
			if in.retryAt.Before(next) {
				next = in.retryAt
			}
		}
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// guardCommand is one line from the daemon, parsed.
type guardCommand struct {
	verb     string
	inst     string
	deadline int64          // hold: CLOCK_MONOTONIC ns, 0: none
	text     string         // candidacy: the text, "" for none
	dev      string         // vips
	vips     []netip.Prefix // vips
	words    []string       // ipvs
}

const (
	verbHold      = "hold"
	verbRelease   = "release"
	verbCandidacy = "candidacy"
	verbVIPs      = "vips"
	verbVIPsMore  = "vips+"
	verbIPVS      = "ipvs"
	verbIPVSMore  = "ipvs+"
)

func parseGuardCommand(s string) (guardCommand, error) {
	bad := func(why string) (guardCommand, error) {
		return guardCommand{}, fmt.Errorf("fencing: guard: %s: %q", why, s)
	}
	verb, rest, _ := strings.Cut(strings.TrimLeft(s, " \t"), " ")
	rawInst, rest, _ := strings.Cut(strings.TrimLeft(rest, " \t"), " ")
	rest = strings.TrimSpace(rest)
	inst, err := url.PathUnescape(rawInst)
	if err != nil || inst == "" {
		if !slices.Contains([]string{verbHold, verbRelease, verbCandidacy, verbVIPs, verbVIPsMore, verbIPVS, verbIPVSMore}, verb) {
			return bad("unknown command")
		}
		return bad("no instance")
	}
	c := guardCommand{verb: verb, inst: inst}
	switch verb {
	case verbRelease:
		if rest != "" {
			return bad("release takes an instance only")
		}
	case verbHold:
		ns, err := strconv.ParseInt(rest, 10, 64)
		if err != nil || ns < 0 {
			return bad("bad hold")
		}
		c.deadline = ns
	case verbCandidacy:
		c.text = rest
	case verbVIPs, verbVIPsMore:
		f := strings.Fields(rest)
		if len(f) == 0 {
			return bad("vips without a device")
		}
		if c.dev, err = url.PathUnescape(f[0]); err != nil || c.dev == "" {
			return bad("bad device")
		}
		for _, w := range f[1:] {
			p, err := netip.ParsePrefix(w)
			if err != nil {
				return bad("bad VIP")
			}
			c.vips = append(c.vips, p)
		}
	case verbIPVS, verbIPVSMore:
		c.words = strings.Fields(rest)
	default:
		return bad("unknown command")
	}
	return c, nil
}

// GuardConn is the daemon's end of the pipe to its guard. Its methods are safe from any goroutine.
// Each write is bounded by GuardWriteTimeout when the writer supports write deadlines (an *os.File
// from os.Pipe does); otherwise it blocks until the guard reads.
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

// Hold tells the guard instance's VIPs are (about to be) held until the self-fencing deadline
// until (a time.Time from time.Now, with its monotonic reading; zero: no deadline). Send it before
// binding, and again on every renewal. An error other than ErrGuardDeadline means the guard did
// not get it and goes by the previous deadline.
func (g *GuardConn) Hold(instance string, until time.Time) error {
	var ns int64
	if !until.IsZero() {
		if !time.Now().Before(until) {
			return ErrGuardDeadline
		}
		ns = g.clock.nanos(until)
	}
	return g.send(verbHold, instance, strconv.FormatInt(ns, 10))
}

// Release tells the guard instance's VIPs are no longer held. Send it after removing them.
func (g *GuardConn) Release(instance string) error { return g.send(verbRelease, instance, "") }

// Candidacy tells the guard what to end in the store for instance once the daemon is dead (see
// GuardActions): one line of text without a newline ("": none). Send it before the candidacy can
// win, so the guard knows it before the first hold.
func (g *GuardConn) Candidacy(instance, text string) error {
	if strings.ContainsAny(text, "\r\n") {
		return fmt.Errorf("fencing: guard: candidacy of %s: not one line", instance)
	}
	return g.send(verbCandidacy, instance, text)
}

// VIPs tells the guard the VIPs it removes from device dev when it releases instance (none:
// nothing there), in as many lines as they take.
func (g *GuardConn) VIPs(instance, dev string, vips []netip.Prefix) error {
	words := make([]string, len(vips))
	for i, v := range vips {
		if !v.IsValid() {
			return fmt.Errorf("fencing: guard: vips of %s on %s: invalid prefix", instance, dev)
		}
		words[i] = v.String()
	}
	if dev == "" {
		return fmt.Errorf("fencing: guard: vips of %s: no device", instance)
	}
	return g.sendWords(verbVIPs, verbVIPsMore, instance, url.PathEscape(dev), words)
}

// IPVS tells the guard what it withdraws from the IPVS table when it releases instance: words
// without white space that GuardActions.Release understands (none: nothing), in as many lines as
// they take.
func (g *GuardConn) IPVS(instance string, words []string) error {
	for _, w := range words {
		if w == "" || strings.ContainsAny(w, " \t\r\n") {
			return fmt.Errorf("fencing: guard: ipvs of %s: %q is not one word", instance, w)
		}
	}
	return g.sendWords(verbIPVS, verbIPVSMore, instance, "", words)
}

// sendWords sends verb instance [lead] words..., split into lines of at most maxGuardLine bytes:
// the first with verb, the rest with more. The lines go out under one lock, back to back.
func (g *GuardConn) sendWords(verb, more, instance, lead string, words []string) error {
	prefix := func(v string) string {
		p := v + " " + url.PathEscape(instance)
		if lead != "" {
			p += " " + lead
		}
		return p
	}
	var lines []string
	cur := prefix(verb)
	n := 0 // words on cur
	for _, w := range words {
		if len(cur)+1+len(w) >= maxGuardLine && n > 0 {
			lines, cur, n = append(lines, cur), prefix(more), 0
		}
		if len(prefix(more))+1+len(w) >= maxGuardLine {
			return fmt.Errorf("fencing: guard: %s of %s: a word of %d bytes", verb, instance, len(w))
		}
		cur, n = cur+" "+w, n+1
	}
	lines = append(lines, cur)
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, l := range lines {
		if err := g.writeLocked(l); err != nil {
			return err
		}
	}
	return nil
}

func (g *GuardConn) send(verb, instance, rest string) error {
	if instance == "" {
		return fmt.Errorf("fencing: guard: %s: no instance", verb)
	}
	l := verb + " " + url.PathEscape(instance)
	if rest != "" {
		l += " " + rest
	}
	if len(l) >= maxGuardLine {
		return fmt.Errorf("fencing: guard: %s of %s: longer than %d bytes", verb, instance, maxGuardLine)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.writeLocked(l)
}

func (g *GuardConn) writeLocked(l string) error {
	verb, _, _ := strings.Cut(l, " ")
	line := l + "\n"
	// A line is shorter than PIPE_BUF, so it is written whole or not at all. Try once without a
	// deadline first: arming one for every write (hold, at every renewal) leaves a runtime timer
	// that wakes the process GuardWriteTimeout later, even once the write is done and the deadline
	// cleared. Only a full pipe (a guard that is not reading) takes the bounded wait.
	if done, err := tryWrite(g.w, line); done {
		if err != nil {
			return fmt.Errorf("fencing: guard: %s: %w", verb, err)
		}
		return nil
	}
	d, ok := g.w.(interface{ SetWriteDeadline(time.Time) error })
	if ok {
		if err := d.SetWriteDeadline(time.Now().Add(GuardWriteTimeout)); err != nil && !errors.Is(err, os.ErrNoDeadline) {
			return fmt.Errorf("fencing: guard: %s: %w", verb, err)
		}
	}
	_, err := io.WriteString(g.w, line)
	if ok {
		_ = d.SetWriteDeadline(time.Time{})
	}
	if err != nil {
		return fmt.Errorf("fencing: guard: %s: %w", verb, err)
	}
	return nil
}

// tryWrite writes line to w in one non-blocking write(2) if w is a file the runtime polls (a pipe
// from os.Pipe), and reports whether that settled it: written, or failed for another reason than a
// full pipe. It is false (nothing written) when the pipe is full or w is no such file.
func tryWrite(w io.Writer, line string) (bool, error) {
	sc, ok := w.(syscall.Conn)
	if !ok {
		return false, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, nil
	}
	var n int
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		n, werr = syscall.Write(int(fd), []byte(line))
		return true // never wait in the poller here
	}); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return false, nil // a deadline someone else left: the bounded write sets its own
		}
		return true, err // closed
	}
	switch {
	case errors.Is(werr, syscall.EAGAIN):
		return false, nil
	case werr != nil:
		return true, werr
	case n != len(line):
		return true, io.ErrShortWrite // cannot happen below PIPE_BUF
	}
	return true, nil
}
