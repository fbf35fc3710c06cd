package lab

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Scenario names. The node scenarios inject a fault into the current VIP holder.
const (
	// Crash: the whole node dies: daemon and service SIGKILLed, its link cut.
	Crash = "crash"
	// Kill: only the daemon gets SIGKILL; the kernel keeps the VIP until its lifetime ends.
	Kill = "kill"
	// Term: the daemon gets SIGTERM: graceful, fast handover.
	Term = "term"
	// Interrupt is Term with SIGINT (Ctrl-C): the same clean stop, exit status 0.
	Interrupt = "interrupt"
	// Pause: the daemon is SIGSTOPped until another node holds the VIP and its own (kernel) VIP is
	// gone, then SIGCONTed; it must not announce the VIP after resuming.
	Pause = "pause"
	// Partition: nftables in the holder's namespace drop everything but loopback.
	Partition = "partition"
	// Resign: `hacoord resign` on the holder (a planned move: demote, then give up the term).
	Resign = "resign"
	// Transfer: `hacoord transfer --to <the last other node>` on the holder.
	Transfer = "transfer"
)

// The store scenarios hit the store (of Options.StoreMembers >= 3 members), never a node: any
// change of VIP holder they cause is a spurious failover. Each restores the store before it ends.
const (
	// StoreLeaderKill: the store's leader member is SIGKILLed, stays down for storeDown (2 TTLs),
	// then starts again on its data and rejoins.
	StoreLeaderKill = "store-leader-kill"
	// StoreLeaderCut: the leader member is cut off the bridge (nftables in its namespace) for
	// storeCut (3 TTLs: 6s with the default TTL), then healed.
	StoreLeaderCut = "store-leader-cut"
	// StoreMemberRestart: a follower member is stopped (SIGTERM) and started again at once.
	StoreMemberRestart = "store-member-restart"
	// StoreQuorumLoss: the leader and a follower are SIGKILLed (two of three members down) for
	// storeDown (2 TTLs, longer than any lease or session), then both start again. The master
	// must let go of the VIP by its deadline; the result says who takes it once the quorum is back.
	StoreQuorumLoss = "store-quorum-loss"
)

// Scenarios lists every scenario name; NodeScenarios and StoreScenarios the two kinds.
var (
	NodeScenarios  = []string{Crash, Kill, Term, Pause, Partition}
	StoreScenarios = []string{StoreLeaderKill, StoreLeaderCut, StoreMemberRestart, StoreQuorumLoss}
	Scenarios      = append(append(slices.Clone(NodeScenarios), StoreScenarios...), Interrupt, Resign, Transfer)
)

// IsStoreScenario reports whether name is one of StoreScenarios.
func IsStoreScenario(name string) bool { return slices.Contains(StoreScenarios, name) }

// Result is what one scenario run measured. Times are absolute; durations are from the sampler
// (resolution: Sampler.Resolution) and the prober (resolution: ProbeEvery).
type Result struct {
	Scenario string
	// Old is the holder before the fault; New the node that took over (node scenarios), or the node
	// holding the VIP at End (store scenarios: Old itself when the VIP stayed or came back).
	Old, New string
	// Target is what the fault hit: Old, or the store members ("s1", "s1,s2").
	Target string
	Fault  time.Time // when the fault was injected
	End    time.Time // end of the measurement window

	// Outage is the client-visible outage. Node scenarios: from the fault (or the last reply from
	// Old after it, if later) to the first reply from New. Store scenarios: the longest gap between
	// client replies in [Fault, End) (0 if no probe failed).
	Outage time.Duration
	// FailedProbes counts the client probes that failed in that gap.
	FailedProbes int
	// Failovers counts the times in [Fault, End) a node other than the last holder bound the VIP;
	// Spurious those no fault of a node called for: every one in a store scenario, those after the
	// first in a node scenario.
	Failovers, Spurious int
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
	// Store scenarios. StoreLeader is the store's leader before the fault, NewStoreLeader the one
	// after it; StoreElection is from Fault to another member leading (-1: none seen; not for
	// member restarts). Rejoined is from Fault to the faulty member(s) serving again.
	StoreLeader, NewStoreLeader string
	StoreElection, Rejoined     time.Duration
	// Quorum loss: QuorumBack is from Fault to the store having a leader again, Back the first node
	// to hold the VIP after that (Old: the same master took it back) and BackAfter from QuorumBack to
	// that node binding it (-1: nobody did within the window).
	QuorumBack, BackAfter time.Duration
	Back                  string

	// Actions are the steps the scenario took (signals, restarts, cuts), for the timeline.
	Actions []Event
	// Exited (term and interrupt) says the daemon was waited for; ExitErr is its exit error (nil:
	// status 0).
	Exited  bool
	ExitErr error
	// Notes are observations worth a line in a report (the kernel VIP outliving a pause, say).
	Notes []string
	// Timeline is what happened, in order.
	Timeline []Event
}

func (r *Result) act(what string) { r.Actions = append(r.Actions, Event{time.Now(), what}) }

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

// RestoreAll undoes every fault (the store's first: it heals cut members and starts those that are
// down, then waits for a store leader), starts every stopped process and waits (each restarted daemon's
// "starting" log line, then WaitSteady) for a steady state again.
func (l *Lab) RestoreAll(ctx context.Context) (*Node, error) {
	if err := l.restoreStore(ctx); err != nil {
		return nil, err
	}
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

// RunScenario waits for a steady state (then Options.Jitter) and runs the named scenario.
//
// A node scenario injects the fault into the holder and waits, bounded by ctx and by 3×(detection
// time)+15s, until another node holds the VIP and answers the client, the old holder has let go of
// it (kill: its kernel lifetime) and the client's neighbour entry names the new holder; for pause it
// then continues the daemon and watches max(TTL, 1s) for stale announcements. It leaves the faulty
// node as it is: call RestoreAll before the next run.
//
// A store scenario (StoreScenarios) faults store members as its constant says, restores them and
// watches one TTL more; see runStoreScenario.
//
// It returns the measurements.
func (l *Lab) RunScenario(ctx context.Context, name string) (Result, error) {
	if !slices.Contains(Scenarios, name) {
		return Result{}, fmt.Errorf("lab: unknown scenario %q (have %s)", name, strings.Join(Scenarios, ", "))
	}
	if IsStoreScenario(name) {
		if _, ok := l.Store.(MemberStore); !ok || len(l.StoreMembers) < 3 {
			return Result{}, fmt.Errorf("lab: %s needs a store of 3 or more members (Options.StoreMembers), not %d", name, len(l.StoreMembers))
		}
	}
	old, err := l.steadyBeforeFault(ctx, name)
	if err != nil {
		return Result{}, err
	}
	if IsStoreScenario(name) {
		return l.runStoreScenario(ctx, name, old)
	}
	return l.runNodeScenario(ctx, name, old)
}

// steadyBeforeFault waits (at most 60s) for a steady state, then a random time below
// Options.Jitter, and returns the holder.
func (l *Lab) steadyBeforeFault(ctx context.Context, name string) (*Node, error) {
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	old, err := l.WaitSteady(sctx)
	if err != nil {
		return nil, fmt.Errorf("lab: %s: no steady state before the fault: %w", name, err)
	}
	if j := l.opts.Jitter; j > 0 {
		// Deliberate randomisation of the fault's phase, not synchronisation.
		if err := hold(ctx, rand.N(j)); err != nil {
			return nil, err
		}
		if h := l.Sampler.Holders(); len(h) != 1 || h[0] != old.Name {
			return nil, fmt.Errorf("lab: %s: holder changed from %s to %v in steady state", name, old.Name, h)
		}
	}
	return old, nil
}

// hold lets d pass (the length of a fault or of an observation window, never synchronisation), or
// returns early when ctx is done.
func hold(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// runNodeScenario injects the node fault name into old, the holder; see RunScenario.
func (l *Lab) runNodeScenario(ctx context.Context, name string, old *Node) (Result, error) {
	ttl := l.detectTime()
	var err error
	wctx, wcancel := context.WithTimeout(ctx, 3*ttl+15*time.Second)
	defer wcancel()
	r := Result{Scenario: name, Old: old.Name, Target: old.Name, OldReleased: -1, NeighSwitched: -1,
		StoreElection: -1, Rejoined: -1, QuorumBack: -1, BackAfter: -1, Fault: time.Now()}
	var transferTo string // Transfer's target
	if name == Resign || name == Transfer {
		// A planned move needs someone to move to: every other node queued (a backup in its status
		// file), else resign is refused and transfer names no candidate.
		if err := l.waitBackups(wctx, old); err != nil {
			return Result{}, fmt.Errorf("lab: %s %s: %w", name, old.Name, err)
		}
	}
	switch name {
	case Crash:
		err = old.Crash()
	case Kill:
		err = old.Kill()
	case Term:
		err = old.Term()
	case Interrupt:
		err = old.signalDaemon(syscall.SIGINT)
	case Pause:
		err = old.Pause()
	case Partition:
		err = old.Partition(wctx)
	case Resign:
		err = old.Resign(wctx)
	case Transfer:
		transferTo = l.transferTarget(old).Name
		err = old.TransferTo(wctx, transferTo)
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
	if transferTo != "" && r.New != transferTo {
		r.Notes = append(r.Notes, fmt.Sprintf("transfer to %s, but %s took over", transferTo, r.New))
	}
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
	if name == Term || name == Interrupt {
		r.Exited = true
		if err := old.Daemon().Wait(wctx); err != nil {
			r.ExitErr = err
			r.Notes = append(r.Notes, fmt.Sprintf("daemon did not exit cleanly after %s: %v", name, err))
		}
	}
	if name == Pause {
		r.Resumed = time.Now()
		if err := old.Resume(); err != nil {
			return r, err
		}
		r.act("SIGCONT to " + r.Old)
		// Negative check: watch for a while that the resumed daemon does not claim the VIP.
		if err := hold(ctx, max(ttl, time.Second)); err != nil {
			return r, err
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
	l.measure(&r)
	return r, nil
}

// Store fault timing, from the lease TTL: a leader killed or members lost stay down storeDown, a
// cut leader stays cut storeCut; after the store is whole again the window goes on for settle, so
// that a master that lost its lease or session meanwhile shows.
func (l *Lab) storeDown() time.Duration { return 2 * l.opts.TTL }
func (l *Lab) storeCut() time.Duration  { return 3 * l.opts.TTL }
func (l *Lab) settle() time.Duration    { return l.opts.TTL }

// runStoreScenario runs the store scenario name (see StoreScenarios): it finds the store's leader,
// faults the members the scenario names, waits for the rest of the store to elect a leader (leader
// kill and cut), lets the fault last, restores the members and waits until they serve (quorum loss:
// until the store has a leader, then until a node holds the VIP), and watches settle more. Bounded
// by ctx and by storeCut+3 TTLs+60s.
func (l *Lab) runStoreScenario(ctx context.Context, name string, old *Node) (Result, error) {
	ttl := l.opts.TTL
	lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
	leader, _, err := l.WaitStoreLeader(lctx, nil)
	lcancel()
	if err != nil {
		return Result{}, fmt.Errorf("lab: %s: before the fault: %w", name, err)
	}
	wctx, wcancel := context.WithTimeout(ctx, l.storeCut()+3*ttl+60*time.Second)
	defer wcancel()
	followers := l.StoreFollowers(leader)
	var hit []*StoreMember
	switch name {
	case StoreLeaderKill, StoreLeaderCut:
		hit = []*StoreMember{leader}
	case StoreMemberRestart:
		hit = followers[:1]
	case StoreQuorumLoss:
		hit = []*StoreMember{leader, followers[0]}
	}
	r := Result{Scenario: name, Old: old.Name, Target: memberNames(hit), StoreLeader: leader.Name, OldReleased: -1,
		NeighSwitched: -1, StoreElection: -1, Rejoined: -1, QuorumBack: -1, BackAfter: -1}
	fail := func(err error) (Result, error) { return r, fmt.Errorf("lab: %s %s: %w", name, r.Target, err) }

	r.Fault = time.Now()
	switch name {
	case StoreLeaderKill:
		err = leader.Kill()
		r.act("SIGKILL to store leader " + leader.Name)
	case StoreLeaderCut:
		err = leader.Cut(wctx)
		r.act("store leader " + leader.Name + " cut off the bridge")
	case StoreMemberRestart:
		err = hit[0].Stop()
		r.act("store member " + hit[0].Name + " stopped")
	case StoreQuorumLoss:
		err = eachMember(hit, func(m *StoreMember) error { return m.Kill() })
		r.act("SIGKILL to store members " + r.Target + ": no quorum")
	}
	if err != nil {
		return fail(err)
	}

	if name == StoreLeaderKill || name == StoreLeaderCut {
		nl, at, err := l.WaitStoreLeader(wctx, func(m *StoreMember) bool { return m != leader })
		if err != nil {
			return fail(err)
		}
		r.NewStoreLeader, r.StoreElection = nl.Name, at.Sub(r.Fault)
		r.Actions = append(r.Actions, Event{at, "store leader " + nl.Name})
	}
	switch name {
	case StoreLeaderKill, StoreQuorumLoss:
		err = hold(wctx, time.Until(r.Fault.Add(l.storeDown())))
	case StoreLeaderCut:
		err = hold(wctx, time.Until(r.Fault.Add(l.storeCut())))
	}
	if err != nil {
		return fail(err)
	}

	// Restore the members: start them (concurrently: after a quorum loss each needs the other) or
	// heal the cut, and wait until they serve.
	switch name {
	case StoreLeaderCut:
		err = leader.Heal(wctx)
		r.act("store leader " + leader.Name + " healed")
		if err == nil {
			err = l.waitMemberServing(wctx, leader)
		}
	default:
		r.act("starting store members " + r.Target)
		err = eachMember(hit, func(m *StoreMember) error { return m.Start(wctx) })
	}
	if err != nil {
		return fail(err)
	}
	r.Rejoined = time.Since(r.Fault)
	r.act("store members " + r.Target + " serve again")
	if name == StoreMemberRestart {
		r.NewStoreLeader = leader.Name
	}

	if name == StoreQuorumLoss {
		nl, at, err := l.WaitStoreLeader(wctx, nil)
		if err != nil {
			return fail(err)
		}
		r.NewStoreLeader, r.QuorumBack = nl.Name, at.Sub(r.Fault)
		r.Actions = append(r.Actions, Event{at, "quorum back: store leader " + nl.Name})
		holders, bound, err := l.Sampler.WaitHolders(wctx, func(h []string) bool { return len(h) > 0 })
		if err != nil {
			r.Notes = append(r.Notes, fmt.Sprintf("no node took the VIP back within the window: %v", err))
		} else {
			r.Back, r.BackAfter = holders[0], max(0, bound.Sub(at))
		}
	}
	if err := hold(wctx, l.settle()); err != nil {
		return fail(err)
	}
	if nl, err := l.StoreLeader(wctx); err == nil && r.NewStoreLeader == "" {
		r.NewStoreLeader = nl.Name
	}
	r.End = time.Now()
	if h := l.Sampler.Holders(); len(h) == 1 {
		r.New = h[0]
	}
	l.measure(&r)
	return r, nil
}

// eachMember runs f for every member concurrently and joins the errors.
func eachMember(ms []*StoreMember, f func(*StoreMember) error) error {
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = f(m) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitMemberServing polls m's status every storePoll until it serves.
func (l *Lab) waitMemberServing(ctx context.Context, m *StoreMember) error {
	t := time.NewTicker(storePoll)
	defer t.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, statusTimeout)
		st, err := m.Status(sctx)
		cancel()
		if err == nil && st.Serving {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: store member %s not serving (last %+v, %v): %w", m.Name, st, err, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// measure fills in what every scenario reports from the observers' records in [Fault, End): the
// time with two holders and with none, the old holder's release, the failovers, the client outage
// and the timeline.
func (l *Lab) measure(r *Result) {
	r.TwoHolders, r.NoHolder = l.Sampler.HolderTimes(r.Fault, r.End)
	hh := l.Sampler.HolderHistory()
	for _, c := range hh {
		if c.At.After(r.Fault) && !slices.Contains(c.Holders, r.Old) {
			r.OldReleased = c.At.Sub(r.Fault)
			break
		}
	}
	r.Failovers = failovers(hh, r.Old, r.Fault, r.End)
	if IsStoreScenario(r.Scenario) {
		r.Spurious = r.Failovers
		r.Outage, r.FailedProbes = longestGap(l.Prober.Probes(r.Fault.Add(-5*time.Second), r.End), r.Fault, r.End)
	} else {
		r.Spurious = max(0, r.Failovers-1)
		l.outage(r)
	}
	r.Timeline = l.timeline(*r)
}

// failovers counts the changes in hh within (from, to) to a single holder other than the last
// single holder (starting with old): a VIP that leaves and comes back to the same node, or that
// is briefly on two nodes and stays where it was, did not fail over.
func failovers(hh []HolderChange, old string, from, to time.Time) int {
	last, n := old, 0
	for _, c := range hh {
		if !c.At.After(from) || !c.At.Before(to) || len(c.Holders) != 1 {
			continue
		}
		if c.Holders[0] != last {
			n++
			last = c.Holders[0]
		}
	}
	return n
}

// longestGap returns the longest time in (from, to) without a client reply that some failed probe
// fell into — from the end of the reply before it (or from) to the end of the next reply (or to)
// — and how many probes failed in it; 0, 0 when none failed. probes are in the order they ended.
func longestGap(probes []Probe, from, to time.Time) (gap time.Duration, failed int) {
	last, run := from, 0
	for _, p := range probes {
		if p.Node != "" && !p.End.After(from) {
			last = p.End
		}
	}
	for _, p := range probes {
		if !p.End.After(from) || !p.End.Before(to) {
			continue
		}
		if p.Node == "" {
			run++
			continue
		}
		if run > 0 && p.End.Sub(last) > gap {
			gap, failed = p.End.Sub(last), run
		}
		last, run = p.End, 0
	}
	if run > 0 && to.Sub(last) > gap {
		gap, failed = to.Sub(last), run
	}
	return gap, failed
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
	// From the fault, or from a later reply of the old holder (kill, term, partition: it may go on
	// answering a while): a reply it gave before the fault does not start the outage, the fault
	// does; counting from it added up to one probe period to every crash.
	lastOld := r.Fault
	for _, p := range probes {
		if p.Node == r.Old && p.End.Before(first.End) && p.End.After(lastOld) {
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
	ev := []Event{{r.Fault, fmt.Sprintf("fault %q injected into %s", r.Scenario, r.Target)}}
	ev = append(ev, r.Actions...)
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
	if IsStoreScenario(r.Scenario) {
		return r.storeSummary()
	}
	s := fmt.Sprintf("%s: %s -> %s, client outage %v (%d failed probes), takeover %v, two holders %v, no holder %v",
		r.Scenario, r.Old, r.New, r.Outage.Round(time.Millisecond), r.FailedProbes, r.Takeover.Round(time.Millisecond),
		r.TwoHolders.Round(time.Millisecond), r.NoHolder.Round(time.Millisecond))
	if r.OldReleased >= 0 {
		s += fmt.Sprintf(", old released after %v", r.OldReleased.Round(time.Millisecond))
	}
	if r.Scenario == Pause {
		s += fmt.Sprintf(", stale ARP after resume %d, neighbour entry stayed %v", len(r.StaleARP), r.NeighStayed)
	}
	return s + r.notes()
}

func (r Result) storeSummary() string {
	ms := func(d time.Duration) string {
		if d < 0 {
			return "-"
		}
		return d.Round(time.Millisecond).String()
	}
	s := fmt.Sprintf("%s: store %s hit (leader %s -> %s", r.Scenario, r.Target, r.StoreLeader, r.NewStoreLeader)
	if r.StoreElection >= 0 {
		s += " after " + ms(r.StoreElection)
	}
	s += fmt.Sprintf(", rejoined after %s); VIP %s -> %s, %d spurious failovers, client outage %v (%d failed probes), two holders %v, no holder %v",
		ms(r.Rejoined), r.Old, cmp.Or(r.New, "none"), r.Spurious, r.Outage.Round(time.Millisecond), r.FailedProbes,
		r.TwoHolders.Round(time.Millisecond), r.NoHolder.Round(time.Millisecond))
	if r.OldReleased >= 0 {
		s += ", " + r.Old + " released after " + ms(r.OldReleased)
	}
	if r.Scenario == StoreQuorumLoss {
		s += ", quorum back after " + ms(r.QuorumBack)
		if r.Back != "" {
			s += fmt.Sprintf(", %s took the VIP %s after", r.Back, ms(r.BackAfter))
			if r.Back == r.Old {
				s += " (the same master)"
			}
		}
	}
	return s + r.notes()
}

func (r Result) notes() string {
	var s string
	for _, n := range r.Notes {
		s += "; " + n
	}
	return s
}
