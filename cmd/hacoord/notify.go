package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/hacoord/hacoord/election"
)

// The systemd notify protocol (sd_notify(3)) for a unit of Type=notify: the daemon says READY=1
// once every instance knows its first election state, keeps STATUS= up to date with each
// instance's role and term, sends WATCHDOG=1 while every instance's Coordinator loop turns, and
// STOPPING=1 when it lets go. Without NOTIFY_SOCKET (not run by systemd) nothing is sent.

// loopWatch is what the notifier reads of an instance: its Coordinator.
type loopWatch interface {
	Status() election.Status
	LastTurn() time.Time
}

// namedLoop is one instance's Coordinator, with the instance's name for STATUS=.
type namedLoop struct {
	name string
	loop loopWatch
}

// wedgedAfter is how long a Coordinator loop may be busy with one event (LastTurn: an idle loop
// counts as turning now) before the watchdog pings stop: three election.TurnIntervals mean it is
// stuck in an Action. systemd restarts the daemon once WatchdogSec passes without a ping, and the fence
// guard then removes the VIPs of the dead daemon; WatchdogSec must exceed the longest legitimate
// stall (a Demote is bounded by election.DemoteTimeout, a Promote by the lease's validity).
const wedgedAfter = 3 * election.TurnInterval

// sdNotifier runs the protocol for the daemon's instances. Run owns its goroutine.
type sdNotifier struct {
	loops    []namedLoop
	watchdog time.Duration // WATCHDOG_USEC; 0: no watchdog
	tick     time.Duration // how often it looks (and pings): watchdog/2, at most 1s
	kick     chan struct{} // a Status changed (buffered: 1)
	started  time.Time     // when Run started
	send     func(state string) error
	log      *zap.Logger
}

// newSdNotifier returns a notifier for loops, or nil when systemd does not listen (no
// NOTIFY_SOCKET).
func newSdNotifier(loops []namedLoop, log *zap.Logger) *sdNotifier {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return nil
	}
	n := &sdNotifier{loops: loops, kick: make(chan struct{}, 1), log: log, tick: time.Second}
	n.send = func(state string) error { _, err := daemon.SdNotify(false, state); return err }
	wd, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog settings", zap.Error(err))
	}
	if wd > 0 {
		n.watchdog = wd
		n.tick = min(wd/2, time.Second)
	}
	return n
}

// changed tells the notifier that a Status changed (OnChange; never blocks).
func (n *sdNotifier) changed() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// Run sends READY=1 once every loop knows its first state, STATUS= on every change, WATCHDOG=1
// every tick while every loop turned within wedgedAfter, and STOPPING=1 when ctx is done.
func (n *sdNotifier) Run(ctx context.Context) error {
	n.started = time.Now()
	t := time.NewTicker(n.tick)
	defer t.Stop()
	ready, status, wedged := false, "", ""
	for {
		if !ready && n.known() {
			ready = true
			n.notify("READY=1")
		}
		if s := n.status(); s != status {
			status = s
			n.notify("STATUS=" + s)
		}
		if n.watchdog > 0 {
			w := n.wedged(time.Now())
			switch {
			case w == "":
				n.notify("WATCHDOG=1")
			case w != wedged:
				n.log.Error("a Coordinator loop is wedged: watchdog pings stopped, systemd will restart the daemon",
					zap.String("instance", w), zap.Duration("watchdog", n.watchdog))
			}
			wedged = w
		}
		select {
		case <-ctx.Done():
			n.notify("STOPPING=1")
			return nil
		case <-t.C:
		case <-n.kick:
		}
	}
}

func (n *sdNotifier) notify(state string) {
	if err := n.send(state); err != nil {
		n.log.Warn("systemd notify", zap.String("state", state), zap.Error(err))
	}
}

// known reports whether every loop has heard its first election state.
func (n *sdNotifier) known() bool {
	for _, l := range n.loops {
		if l.loop.Status().State.Role == election.Init {
			return false
		}
	}
	return true
}

// wedged returns the name of a loop that has not turned within wedgedAfter of now, or, for one
// that has not started, of the notifier's start ("" if none).
func (n *sdNotifier) wedged(now time.Time) string {
	for _, l := range n.loops {
		lt := l.loop.LastTurn()
		if lt.IsZero() {
			lt = n.started
		}
		if now.Sub(lt) > wedgedAfter {
			return l.name
		}
	}
	return ""
}

// status is the STATUS= line: each instance's role, term and master, "; " between instances.
func (n *sdNotifier) status() string {
	parts := make([]string, len(n.loops))
	for i, l := range n.loops {
		parts[i] = l.name + ": " + statusLine(l.loop.Status())
	}
	return strings.Join(parts, "; ")
}

// statusLine says one instance's standing: "master, term 42", "backup, master n1 term 42",
// "preparing (fence hook), term 43", "fault: etcd unreachable".
func statusLine(cs election.Status) string {
	s := cs.State
	switch {
	case cs.Promoted:
		return fmt.Sprintf("master, term %d", s.Term)
	case cs.Preparing:
		return fmt.Sprintf("master in the store, running the fence hook, term %d", s.Term)
	case cs.Fenced:
		return "fenced itself: no lease renewal acknowledged in time"
	case s.Role == election.Init:
		return "starting"
	case s.Role == election.Fault:
		return "fault: " + s.Reason
	case s.Role == election.Master:
		return fmt.Sprintf("master in the store, holding nothing (%s), term %d", cs.Reason, s.Term)
	case s.Leader.Node != "":
		return fmt.Sprintf("%s, master %s term %d", s.Role, s.Leader.Node, s.Leader.Term)
	}
	return s.Role.String() + ", no master"
}

// startSdNotify starts the notify protocol for insts in g, if systemd listens. Call it before the
// instances run (it registers with their Coordinators' OnChange).
func startSdNotify(ctx context.Context, g *errgroup.Group, insts []*instance, log *zap.Logger) {
	loops := make([]namedLoop, len(insts))
	for i, in := range insts {
		loops[i] = namedLoop{name: in.plan.name, loop: in.co}
	}
	n := newSdNotifier(loops, log)
	if n == nil {
		return
	}
	for _, in := range insts {
		in.co.OnChange(func(election.Status) { n.changed() })
	}
	log.Info("telling systemd: READY=1 once every instance knows its state", zap.Duration("watchdog", n.watchdog))
	g.Go(func() error { return n.Run(ctx) })
}
