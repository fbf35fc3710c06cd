package lab

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"
)

// Scenario names: the faults the spec names, injected into the current VIP holder.
const (
	// Crash: the whole node dies: daemon and service SIGKILLed, its link cut.
	Crash = "crash"
	// Kill: only the daemon gets SIGKILL; the kernel keeps the VIP until its lifetime ends.
	Kill = "kill"
	// Term: the daemon gets SIGTERM: graceful, fast handover.
	Term = "term"
	// Pause: the daemon is SIGSTOPped until another node holds the VIP and its own (kernel) VIP is
	// gone, then SIGCONTed; it must not announce the VIP after resuming.
	Pause = "pause"
	// Partition: nftables in the holder's namespace drop everything but loopback.
	Partition = "partition"
)

// Scenarios lists every scenario name.
var Scenarios = []string{Crash, Kill, Term, Pause, Partition}

// Result is what one scenario run measured. Times are absolute; durations are from the sampler
// (resolution: Sampler.Resolution) and the prober (resolution: ProbeEvery).
type Result struct {
	Scenario string
	Old, New string    // holder before the fault, node that took over
	Fault    time.Time // when the fault was injected
	End      time.Time // end of the measurement window

	// Outage is the client-visible outage: last reply from Old to first reply from New.
	Outage time.Duration
	// FailedProbes counts the client probes that failed in between.
	FailedProbes int
	// TwoHolders and NoHolder are how long two or more nodes, and no node, held the VIP in
	// [Fault, End). A crashed node counts as holding nothing.
	TwoHolders, NoHolder time.Duration
	// Takeover is from Fault to the sample showing New holding the VIP.
	Takeover time.Duration
	// OldReleased is from Fault to the sample showing Old without the VIP (-1: never in the window).
	OldReleased time.Duration
	// NeighSwitched is from Fault to the client's neighbour entry resolving to New's MAC (-1: never).
	NeighSwitched time.Duration
	// Resumed (pause only) is when the daemon was continued; StaleARP are the ARP packets claiming the
	// VIP with Old's MAC seen from then to End, and NeighStayed whether the client's entry kept
	// New's MAC all that time.
	Resumed     time.Time
	StaleARP    []ARPEvent
	NeighStayed bool
	// Notes are observations worth a line in a report (the kernel VIP outliving a pause, say).
	Notes []string
	// Timeline is what happened, in order.
	Timeline []Event
}

// Event is one line of a timeline.
type Event struct {
	At   time.Time
	What string
}

// WaitSteady waits until exactly one node holds the VIP, the client's neighbour entry resolves to its
// MAC and a client probe got a reply from it, and returns that node.
func (l *Lab) WaitSteady(ctx context.Context) (*Node, error) {
	for {
		holders, _, err := l.Sampler.WaitHolders(ctx, func(h []string) bool { return len(h) == 1 })
		if err != nil {
			return nil, err
		}
		n := l.Node(holders[0])
		since := time.Now()
		// A probe from the holder, or a change of holder (then start over).
		pctx, cancel := context.WithCancel(ctx)
		moved := make(chan struct{})
		go func() {
			defer close(moved)
			_, _, _ = l.Sampler.WaitHolders(pctx, func(h []string) bool { return !slices.Equal(h, holders) })
		}()
		_, err = l.Prober.WaitReply(pctx, since, func(p Probe) bool {
			select {
			case <-moved:
				return true
			default:
			}
			return p.Node == n.Name
		})
		cancel()
		<-moved
		if err != nil {
			return nil, err
		}
		if !slices.Equal(l.Sampler.Holders(), holders) {
			continue
		}
		if _, err := l.Sampler.WaitNeigh(ctx, n.MAC); err != nil {
			return nil, err
		}
		return n, nil
	}
}

// RestoreAll undoes every fault, starts every stopped process and waits (each restarted daemon's
// "starting" log line, then WaitSteady) for a steady state again.
func (l *Lab) RestoreAll(ctx context.Context) (*Node, error) {
	for _, n := range l.Nodes {
		before := n.Daemon()
		if err := n.Restore(ctx); err != nil {
			return nil, err
		}
		if d := n.Daemon(); d != before {
			if _, err := d.WaitLine(ctx, n.readyLine()); err != nil {
				return nil, err
			}
		}
	}
	if err := l.waitPreferred(ctx); err != nil {
		return nil, err
	}
	return l.WaitSteady(ctx)
}

// waitPreferred, in VRRP, waits until the preferred node (n1, the highest priority) holds the VIP:
// VRRP preempts, so after a (re)start whoever became master first hands over to it a
// Master_Down_Interval later. Waiting for that keeps it out of the next measurement.
func (l *Lab) waitPreferred(ctx context.Context) error {
	if l.Store.Backend() != "vrrp" {
		return nil
	}
	if _, _, err := l.Sampler.WaitHolders(ctx, func(h []string) bool { return len(h) == 1 && h[0] == l.Nodes[0].Name }); err != nil {
		return fmt.Errorf("lab: the preferred node %s does not hold the VIP: %w", l.Nodes[0].Name, err)
	}
	return nil
}

// detectTime is how long the nodes take to notice a dead master: the lease TTL, or in VRRP the
// Master_Down_Interval (3 adverts plus a skew of at most one).
func (l *Lab) detectTime() time.Duration {
	if l.Store.Backend() == "vrrp" {
		return 4 * l.opts.AdvertInt
	}
	return l.opts.TTL
}

// RunScenario waits for a steady state (then Options.Jitter), injects the named fault into the
// holder and waits, bounded by ctx and by 3×(detection time)+15s, until another node holds the VIP and answers the
// client, the old holder has let go of it (kill: its kernel lifetime) and the client's neighbour entry
// names the new holder; for pause it then continues the daemon and watches max(TTL, 1s) for stale
// announcements. It returns the measurements, and leaves the faulty node as it is: call RestoreAll
// before the next run.
func (l *Lab) RunScenario(ctx context.Context, name string) (Result, error) {
	ttl := l.detectTime()
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	old, err := l.WaitSteady(sctx)
	if err != nil {
		return Result{}, fmt.Errorf("lab: %s: no steady state before the fault: %w", name, err)
	}
	if j := l.opts.Jitter; j > 0 {
		// Deliberate randomisation of the fault's phase, not synchronisation.
		t := time.NewTimer(rand.N(j))
		select {
		case <-ctx.Done():
			t.Stop()
			return Result{}, context.Cause(ctx)
		case <-t.C:
		}
		if h := l.Sampler.Holders(); len(h) != 1 || h[0] != old.Name {
			return Result{}, fmt.Errorf("lab: %s: holder changed from %s to %v in steady state", name, old.Name, h)
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, 3*ttl+15*time.Second)
	defer wcancel()
	r := Result{Scenario: name, Old: old.Name, OldReleased: -1, NeighSwitched: -1, Fault: time.Now()}
	switch name {
	case Crash:
		err = old.Crash()
	case Kill:
		err = old.Kill()
	case Term:
		err = old.Term()
	case Pause:
		err = old.Pause()
	case Partition:
		err = old.Partition(wctx)
	default:
		return Result{}, fmt.Errorf("lab: unknown scenario %q (have %s)", name, strings.Join(Scenarios, ", "))
	}
	if err != nil {
		return Result{}, fmt.Errorf("lab: %s %s: %w", name, old.Name, err)
	}

	// Another node binds the VIP.
	holders, at, err := l.Sampler.WaitHolders(wctx, func(h []string) bool {
		return slices.ContainsFunc(h, func(s string) bool { return s != old.Name })
	})
	if err != nil {
		return r, fmt.Errorf("lab: %s: no takeover: %w", name, err)
	}
	for _, h := range holders {
		if h != old.Name {
			r.New = h
		}
	}
	nn := l.Node(r.New)
	r.Takeover = at.Sub(r.Fault)
	// The client reaches it.
	if _, err := l.Prober.WaitReply(wctx, r.Fault, func(p Probe) bool { return p.Node == r.New }); err != nil {
		return r, fmt.Errorf("lab: %s: client never reached the new holder %s: %w", name, r.New, err)
	}
	// The old holder lets go (crash: at once, it is dead), within 2x the detection time of the
	// takeover; in VRRP a killed keepalived or a partitioned master never does.
	rctx, rcancel := context.WithTimeout(wctx, max(2*ttl, 2*time.Second))
	if _, _, err := l.Sampler.WaitHolders(rctx, func(h []string) bool { return !slices.Contains(h, old.Name) }); err != nil {
		r.Notes = append(r.Notes, fmt.Sprintf("%s still holds the VIP %v after the fault", old.Name, time.Since(r.Fault).Round(time.Millisecond)))
	}
	rcancel()
	if t, err := l.Sampler.WaitNeigh(wctx, nn.MAC); err == nil {
		r.NeighSwitched = t.Sub(r.Fault)
	} else {
		r.Notes = append(r.Notes, "client neighbour entry never switched to "+r.New)
	}
	if name == Term {
		if err := old.Daemon().Wait(wctx); err != nil {
			r.Notes = append(r.Notes, fmt.Sprintf("daemon did not exit after SIGTERM: %v", err))
		}
	}
	if name == Pause {
		r.Resumed = time.Now()
		if err := old.Resume(); err != nil {
			return r, err
		}
		// Negative check: watch for a while that the resumed daemon does not claim the VIP.
		window := max(ttl, time.Second)
		t := time.NewTimer(window)
		select {
		case <-ctx.Done():
			t.Stop()
			return r, context.Cause(ctx)
		case <-t.C:
		}
	}
	r.End = time.Now()
	for _, e := range l.ARP.Events(r.Fault, r.End) {
		if name == Pause && e.MAC == old.MAC.String() && !e.At.Before(r.Resumed) {
			r.StaleARP = append(r.StaleARP, e)
		}
	}
	if name == Pause {
		r.NeighStayed = true
		for _, c := range l.Sampler.NeighHistory() {
			if c.At.After(r.Resumed) && c.At.Before(r.End) && c.MAC != nn.MAC.String() {
				r.NeighStayed = false
			}
		}
		if l.Sampler.NeighMAC() != nn.MAC.String() {
			r.NeighStayed = false
		}
	}
	r.TwoHolders, r.NoHolder = l.Sampler.HolderTimes(r.Fault, r.End)
	for _, c := range l.Sampler.HolderHistory() {
		if c.At.After(r.Fault) && !slices.Contains(c.Holders, old.Name) {
			r.OldReleased = c.At.Sub(r.Fault)
			break
		}
	}
	l.outage(&r)
	r.Timeline = l.timeline(r)
	return r, nil
}

// outage fills Outage and FailedProbes from the probes.
func (l *Lab) outage(r *Result) {
	probes := l.Prober.Probes(r.Fault.Add(-5*time.Second), r.End)
	var first *Probe
	for i := range probes {
		p := &probes[i]
		if !p.Start.Before(r.Fault) && p.Node != "" && p.Node != r.Old {
			first = p
			break
		}
	}
	if first == nil {
		return
	}
	lastOld := r.Fault
	for _, p := range probes {
		if p.Node == r.Old && p.End.Before(first.End) {
			lastOld = p.End
		}
	}
	r.Outage = first.End.Sub(lastOld)
	for _, p := range probes {
		if p.Node == "" && p.End.After(lastOld) && p.End.Before(first.End) {
			r.FailedProbes++
		}
	}
}

// timeline merges the observers' records in [Fault, End) into events.
func (l *Lab) timeline(r Result) []Event {
	from := r.Fault
	ev := []Event{{r.Fault, fmt.Sprintf("fault %q injected into %s", r.Scenario, r.Old)}}
	if !r.Resumed.IsZero() {
		ev = append(ev, Event{r.Resumed, "SIGCONT to " + r.Old})
	}
	hh := l.Sampler.HolderHistory()
	for i, c := range hh {
		if i+1 < len(hh) && !hh[i+1].At.After(c.At) {
			continue // superseded in the same instant
		}
		if !c.At.Before(from) && c.At.Before(r.End) {
			ev = append(ev, Event{c.At, "VIP holders: " + holderList(c.Holders)})
		}
	}
	for _, c := range l.Sampler.NeighHistory() {
		if !c.At.Before(from) && c.At.Before(r.End) {
			who := "none"
			if c.MAC != "" {
				who = c.MAC
				for _, n := range l.Nodes {
					if n.MAC.String() == c.MAC {
						who = fmt.Sprintf("%s (%s)", c.MAC, n.Name)
					}
				}
			}
			ev = append(ev, Event{c.At, "client neighbour entry for the VIP -> " + who})
		}
	}
	var prev ARPEvent
	n := 0
	flush := func() {
		if n > 0 {
			s := fmt.Sprintf("ARP %s from %s with the VIP as sender", strings.ToLower(strings.TrimPrefix(prev.Op, "Operation")), l.macName(prev.MAC))
			if prev.Gratuitous {
				s = "gratuitous ARP for the VIP from " + l.macName(prev.MAC)
			}
			if n > 1 {
				s += fmt.Sprintf(" (x%d)", n)
			}
			ev = append(ev, Event{prev.At, s})
		}
	}
	for _, e := range l.ARP.Events(from, r.End) {
		if n > 0 && e.MAC == prev.MAC && e.Gratuitous == prev.Gratuitous && e.At.Sub(prev.At) < 50*time.Millisecond {
			n++
			continue
		}
		flush()
		prev, n = e, 1
	}
	flush()
	state := "?"
	for _, p := range l.Prober.Probes(from, r.End) {
		s := p.Node
		if s == "" {
			s = "fail"
		}
		if s == state {
			continue
		}
		if p.Node != "" {
			ev = append(ev, Event{p.End, "client: reply from " + p.Node})
		} else {
			ev = append(ev, Event{p.End, "client: probe failed (" + p.Err + ")"})
		}
		state = s
	}
	sort.SliceStable(ev, func(i, j int) bool { return ev[i].At.Before(ev[j].At) })
	return ev
}

func (l *Lab) macName(mac string) string {
	for _, n := range l.Nodes {
		if n.MAC.String() == mac {
			return n.Name
		}
	}
	return mac
}

func holderList(h []string) string {
	if len(h) == 0 {
		return "none"
	}
	return strings.Join(h, ",")
}

// FormatTimeline renders r's timeline as "t+ms: event" lines relative to the fault.
func FormatTimeline(r Result) string {
	var b strings.Builder
	for _, e := range r.Timeline {
		fmt.Fprintf(&b, "  t%+7.1fms  %s\n", float64(e.At.Sub(r.Fault).Microseconds())/1000, e.What)
	}
	return b.String()
}

// Summary is a one-line account of r.
func (r Result) Summary() string {
	s := fmt.Sprintf("%s: %s -> %s, client outage %v (%d failed probes), takeover %v, two holders %v, no holder %v",
		r.Scenario, r.Old, r.New, r.Outage.Round(time.Millisecond), r.FailedProbes, r.Takeover.Round(time.Millisecond),
		r.TwoHolders.Round(time.Millisecond), r.NoHolder.Round(time.Millisecond))
	if r.OldReleased >= 0 {
		s += fmt.Sprintf(", old released after %v", r.OldReleased.Round(time.Millisecond))
	}
	if r.Scenario == Pause {
		s += fmt.Sprintf(", stale ARP after resume %d, neighbour entry stayed %v", len(r.StaleARP), r.NeighStayed)
	}
	for _, n := range r.Notes {
		s += "; " + n
	}
	return s
}
