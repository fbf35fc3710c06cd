package lab

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// The nemesis's fault kinds. Node faults hit the VIP holder (three times in four) or a backup;
// store faults hit the store (Options.StoreMembers >= 3).
const (
	ChaosCrash      = "crash"       // the node dies (Node.Crash) and reboots after the hold
	ChaosKill       = "kill"        // the daemon gets SIGKILL and is started again after the hold
	ChaosPauseShort = "pause-short" // SIGSTOP shorter than the lease (TTL/20..TTL/2), then SIGCONT
	ChaosPauseLong  = "pause-long"  // SIGSTOP longer than the lease (1.5..3 TTLs), then SIGCONT
	ChaosCutStore   = "cut-store"   // the node cut from the store only (TTL/4..3 TTLs)
	ChaosCutPeers   = "cut-peers"   // the node cut from the other nodes only
	ChaosCutClients = "cut-clients" // the node cut from the client only
	// The store scenarios' faults (StoreLeaderKill, StoreLeaderCut, StoreMemberRestart,
	// StoreQuorumLoss) with random durations, and:
	ChaosStoreLoss = "store-loss" // every store member drops 10-50% of its packets each way
)

// ChaosKinds lists every fault kind of the nemesis.
var ChaosKinds = []string{ChaosCrash, ChaosKill, ChaosPauseShort, ChaosPauseLong, ChaosCutStore, ChaosCutPeers,
	ChaosCutClients, StoreLeaderKill, StoreLeaderCut, StoreMemberRestart, StoreQuorumLoss, ChaosStoreLoss}

func isNodeChaos(kind string) bool {
	return slices.Contains([]string{ChaosCrash, ChaosKill, ChaosPauseShort, ChaosPauseLong, ChaosCutStore, ChaosCutPeers, ChaosCutClients}, kind)
}

// chaosHold returns the range a fault of kind lasts, from the lease TTL.
func chaosHold(kind string, ttl time.Duration) (lo, hi time.Duration) {
	switch kind {
	case ChaosPauseShort:
		return ttl / 20, ttl / 2
	case ChaosPauseLong, StoreQuorumLoss:
		return 3 * ttl / 2, 3 * ttl
	case ChaosCutStore:
		return ttl / 4, 3 * ttl
	case ChaosKill, ChaosCutClients:
		return ttl / 2, 2 * ttl
	case StoreMemberRestart:
		return 0, 0 // stopped, then started at once
	default:
		return ttl, 3 * ttl
	}
}

// ChaosOptions configures Lab.Chaos.
type ChaosOptions struct {
	// Seed fixes the schedule: the order of the kinds, every duration, loss rate and pick among
	// backups or followers (the targets themselves — "the holder", "the store leader" — are
	// whoever they are at the time). 0 draws one; the report says which.
	Seed uint64
	// Duration is how long to keep injecting faults; the last one runs to its end.
	Duration time.Duration
	// Kinds restricts the fault kinds; default ChaosKinds.
	Kinds []string
	// Logf receives a line per fault as it is injected; nil: the lab's Logf.
	Logf func(format string, args ...any)
}

// chaosPlan is one fault of the schedule, drawn from the seed alone.
type chaosPlan struct {
	kind     string
	onHolder bool          // node faults: the holder, else a backup
	pick     int           // which backup or follower
	hold     time.Duration // how long the fault lasts
	pct      int           // store-loss: the share of packets dropped
	gap      time.Duration // quiet time before the fault
}

// chaosSchedule draws plans from a seeded generator in a fixed order: each cycle is a shuffle of
// the kinds, each fault takes the same five draws whatever its kind.
type chaosSchedule struct {
	rng   *rand.Rand
	kinds []string
	cycle []string
	ttl   time.Duration
}

func newChaosSchedule(seed uint64, kinds []string, ttl time.Duration) *chaosSchedule {
	return &chaosSchedule{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), kinds: kinds, ttl: ttl}
}

func (s *chaosSchedule) next() chaosPlan {
	if len(s.cycle) == 0 {
		s.cycle = slices.Clone(s.kinds)
		s.rng.Shuffle(len(s.cycle), func(i, j int) { s.cycle[i], s.cycle[j] = s.cycle[j], s.cycle[i] })
	}
	kind := s.cycle[0]
	s.cycle = s.cycle[1:]
	u := [5]float64{s.rng.Float64(), s.rng.Float64(), s.rng.Float64(), s.rng.Float64(), s.rng.Float64()}
	lo, hi := chaosHold(kind, s.ttl)
	return chaosPlan{
		kind:     kind,
		onHolder: u[0] < 0.75,
		pick:     int(u[1] * 1024),
		hold:     lo + time.Duration(u[2]*float64(hi-lo)),
		pct:      10 + int(u[3]*41),
		gap:      time.Duration(u[4] * float64(s.ttl)),
	}
}

// ChaosFault is one fault the nemesis injected and what it cost, measured over its window: from
// Start to the next fault's start (the recovery and the quiet gap included).
type ChaosFault struct {
	Seq    int
	Kind   string
	Target string // node or store members
	// HitHolder: a node fault on the VIP holder. The VIP moving in any other fault is spurious.
	HitHolder bool
	Detail    string        // "for 1.2s", "30% loss for 3s"
	Old       string        // the holder at Start
	Start     time.Time     // injected
	Healed    time.Time     // undone (the lab then waited for a steady state)
	End       time.Time     // end of the window
	Hold      time.Duration // planned length

	TwoHolders, NoHolder time.Duration
	Failovers, Spurious  int
	// Takeover is from Start to another node holding the VIP alone (-1: the VIP did not move).
	Takeover time.Duration
	// Outage is the longest gap between client replies in the window.
	Outage time.Duration
}

// Group is the row a fault counts in: its kind, with " (backup)" for node faults on a backup.
func (f ChaosFault) Group() string {
	if isNodeChaos(f.Kind) && !f.HitHolder {
		return f.Kind + " (backup)"
	}
	return f.Kind
}

// ChaosReport is the record of one nemesis run.
type ChaosReport struct {
	Backend    string
	Seed       uint64
	Duration   time.Duration // as asked
	Kinds      []string      // as asked (nil: all)
	Start, End time.Time
	Faults     []ChaosFault
}

// TwoHolders returns the total time the VIP was on two nodes.
func (r ChaosReport) TwoHolders() time.Duration {
	var d time.Duration
	for _, f := range r.Faults {
		d += f.TwoHolders
	}
	return d
}

// ChaosKindStats sums up the faults of one group (ChaosFault.Group).
type ChaosKindStats struct {
	Group                string
	Faults               int
	TwoHolders, NoHolder time.Duration
	Failovers, Spurious  int
	// WorstTakeover is the longest Takeover (-1: the VIP never moved); WorstOutage the longest Outage.
	WorstTakeover, WorstOutage time.Duration
}

// ByKind returns the statistics per group, in the order of ChaosKinds, then a total.
func (r ChaosReport) ByKind() []ChaosKindStats {
	m := map[string]*ChaosKindStats{}
	total := &ChaosKindStats{Group: "total", WorstTakeover: -1}
	for _, f := range r.Faults {
		g := m[f.Group()]
		if g == nil {
			g = &ChaosKindStats{Group: f.Group(), WorstTakeover: -1}
			m[f.Group()] = g
		}
		for _, s := range []*ChaosKindStats{g, total} {
			s.Faults++
			s.TwoHolders += f.TwoHolders
			s.NoHolder += f.NoHolder
			s.Failovers += f.Failovers
			s.Spurious += f.Spurious
			s.WorstTakeover = max(s.WorstTakeover, f.Takeover)
			s.WorstOutage = max(s.WorstOutage, f.Outage)
		}
	}
	var out []ChaosKindStats
	for _, k := range ChaosKinds {
		for _, g := range []string{k, k + " (backup)"} {
			if s := m[g]; s != nil {
				out = append(out, *s)
			}
		}
	}
	return append(out, *total)
}

// ReplayCommand is the command line that replays the run's schedule.
func (r ChaosReport) ReplayCommand() string {
	s := fmt.Sprintf("hacoord-lab chaos --backend %s --duration %v --seed %d", r.Backend, r.Duration, r.Seed)
	if len(r.Kinds) > 0 {
		s += " --faults " + strings.Join(r.Kinds, ",")
	}
	return s
}

// String renders the report: a header with the seed and a table per group.
func (r ChaosReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos %s, seed %d: %d faults in %v (replay: %s)\n", r.Backend, r.Seed, len(r.Faults),
		r.End.Sub(r.Start).Round(time.Second), r.ReplayCommand())
	tw := tabwriter.NewWriter(&b, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "fault\tfaults\ttwo holders\tno holder\tfailovers\tspurious\tworst takeover\tworst outage\t")
	d := func(d time.Duration) string {
		if d < 0 {
			return "-"
		}
		return d.Round(time.Millisecond).String()
	}
	for _, s := range r.ByKind() {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%d\t%s\t%s\t\n", s.Group, s.Faults, d(s.TwoHolders), d(s.NoHolder),
			s.Failovers, s.Spurious, d(s.WorstTakeover), d(s.WorstOutage))
	}
	tw.Flush()
	return b.String()
}

// Line is a one-line account of the fault, timed from start (the report's).
func (f ChaosFault) Line(start time.Time) string {
	s := fmt.Sprintf("#%d t+%v %s on %s %s: two holders %v, no holder %v, failovers %d (spurious %d), outage %v",
		f.Seq, f.Start.Sub(start).Round(100*time.Millisecond), f.Kind, f.Target, f.Detail, f.TwoHolders.Round(time.Millisecond),
		f.NoHolder.Round(time.Millisecond), f.Failovers, f.Spurious, f.Outage.Round(time.Millisecond))
	if f.Takeover >= 0 {
		s += fmt.Sprintf(", takeover %v", f.Takeover.Round(time.Millisecond))
	}
	return s
}

// Chaos runs the nemesis: from a steady state, fault after fault drawn from the seeded schedule
// (a quiet gap, the fault, its hold, then RestoreAll and a steady state again) until o.Duration
// has passed, over a lab of several nodes and a store of 3 or more members. It returns the report
// of the faults injected; on error (the lab found no steady state within 90s of a restore, or ctx
// is done) the report holds the faults so far.
func (l *Lab) Chaos(ctx context.Context, o ChaosOptions) (ChaosReport, error) {
	if _, ok := l.Store.(MemberStore); !ok || len(l.StoreMembers) < 3 || len(l.Nodes) < 2 {
		return ChaosReport{}, fmt.Errorf("lab: chaos needs 2 or more nodes and a store of 3 or more members, not %d and %d", len(l.Nodes), len(l.StoreMembers))
	}
	kinds := o.Kinds
	if len(kinds) == 0 {
		kinds = ChaosKinds
	}
	for _, k := range kinds {
		if !slices.Contains(ChaosKinds, k) {
			return ChaosReport{}, fmt.Errorf("lab: chaos: unknown fault kind %q (have %s)", k, strings.Join(ChaosKinds, ", "))
		}
	}
	if o.Seed == 0 {
		o.Seed = rand.Uint64()
	}
	logf := o.Logf
	if logf == nil {
		logf = l.opts.Logf
	}
	rep := ChaosReport{Backend: l.Store.Backend(), Seed: o.Seed, Duration: o.Duration, Kinds: o.Kinds, Start: time.Now()}
	err := l.runChaos(ctx, &rep, o.Duration, newChaosSchedule(o.Seed, kinds, l.opts.TTL), logf)
	rep.End = time.Now()
	l.measureChaos(&rep)
	return rep, err
}

func (l *Lab) runChaos(ctx context.Context, rep *ChaosReport, d time.Duration, sched *chaosSchedule, logf func(string, ...any)) error {
	logf("chaos: seed %d, %v", rep.Seed, d)
	for seq := 1; time.Since(rep.Start) < d; seq++ {
		p := sched.next()
		if err := hold(ctx, p.gap); err != nil {
			return err
		}
		f, err := l.chaosFault(ctx, seq, p, func(format string, args ...any) {
			logf("chaos #%d t+%v: "+format, append([]any{seq, time.Since(rep.Start).Round(100 * time.Millisecond)}, args...)...)
		})
		if f.Kind != "" {
			rep.Faults = append(rep.Faults, f)
		}
		if err != nil {
			return fmt.Errorf("lab: chaos #%d %s on %s: %w", seq, p.kind, f.Target, err)
		}
	}
	// The last fault's window: a TTL more, for a late failover.
	return hold(ctx, l.opts.TTL)
}

// chaosFault injects one planned fault, holds it, undoes it (RestoreAll, bounded by 90s: the lab
// is steady again) and returns it, measured later by measureChaos.
func (l *Lab) chaosFault(ctx context.Context, seq int, p chaosPlan, logf func(string, ...any)) (ChaosFault, error) {
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	holder, err := l.WaitSteady(sctx)
	if err != nil {
		return ChaosFault{}, fmt.Errorf("no steady state before the fault: %w", err)
	}
	f := ChaosFault{Seq: seq, Kind: p.kind, Old: holder.Name, Hold: p.hold, Detail: "for " + p.hold.Round(time.Millisecond).String()}
	var node *Node
	var members []*StoreMember
	if isNodeChaos(p.kind) {
		node, f.HitHolder = holder, p.onHolder
		if !p.onHolder {
			backups := slices.DeleteFunc(slices.Clone(l.Nodes), func(n *Node) bool { return n == holder })
			node = backups[p.pick%len(backups)]
		}
		f.Target = node.Name
		if f.HitHolder {
			f.Target += " (holder)"
		}
	} else {
		leader, _, err := l.WaitStoreLeader(sctx, nil)
		if err != nil {
			return ChaosFault{}, err
		}
		followers := l.StoreFollowers(leader)
		switch p.kind {
		case StoreLeaderKill, StoreLeaderCut:
			members = []*StoreMember{leader}
		case StoreMemberRestart:
			members = []*StoreMember{followers[p.pick%len(followers)]}
		case StoreQuorumLoss:
			members = []*StoreMember{leader, followers[p.pick%len(followers)]}
		case ChaosStoreLoss:
			members = l.StoreMembers
			f.Detail = fmt.Sprintf("%d%% loss %s", p.pct, f.Detail)
		}
		f.Target = "store " + memberNames(members)
	}
	if p.kind == StoreMemberRestart {
		f.Detail = "stop, start"
	}
	logf("%s on %s %s", p.kind, f.Target, f.Detail)

	f.Start = time.Now()
	if err := l.injectChaos(ctx, p, node, members); err != nil {
		return f, err
	}
	if err := hold(ctx, p.hold); err != nil {
		return f, err
	}
	f.Healed = time.Now()
	rctx, rcancel := context.WithTimeout(ctx, 90*time.Second)
	defer rcancel()
	if _, err := l.RestoreAll(rctx); err != nil {
		return f, fmt.Errorf("restore: %w", err)
	}
	return f, nil
}

// injectChaos applies the fault of p to node or members.
func (l *Lab) injectChaos(ctx context.Context, p chaosPlan, node *Node, members []*StoreMember) error {
	switch p.kind {
	case ChaosCrash:
		return node.Crash()
	case ChaosKill:
		return node.Kill()
	case ChaosPauseShort, ChaosPauseLong:
		return node.Pause()
	case ChaosCutStore:
		return node.CutFrom(ctx, storeAddrs(l.StoreMembers))
	case ChaosCutPeers:
		var peers []netip.Addr
		for _, n := range l.Nodes {
			if n != node {
				peers = append(peers, n.Addr)
			}
		}
		return node.CutFrom(ctx, peers)
	case ChaosCutClients:
		return node.CutFrom(ctx, []netip.Addr{ClientAddr})
	case StoreLeaderKill, StoreQuorumLoss:
		return eachMember(members, func(m *StoreMember) error { return m.Kill() })
	case StoreLeaderCut:
		return members[0].Cut(ctx)
	case StoreMemberRestart:
		if err := members[0].Stop(); err != nil {
			return err
		}
		return members[0].Start(ctx)
	case ChaosStoreLoss:
		return eachMember(members, func(m *StoreMember) error { return m.Loss(ctx, p.pct) })
	}
	return fmt.Errorf("unknown fault kind %q", p.kind)
}

func storeAddrs(ms []*StoreMember) []netip.Addr {
	var a []netip.Addr
	for _, m := range ms {
		a = append(a, m.Addr)
	}
	return a
}

// measureChaos measures every fault over its window, from its start to the next one's (the last
// one's to the report's end), with the measures of the scenarios.
func (l *Lab) measureChaos(rep *ChaosReport) {
	hh := l.Sampler.HolderHistory()
	for i := range rep.Faults {
		f := &rep.Faults[i]
		f.End = rep.End
		if i+1 < len(rep.Faults) {
			f.End = rep.Faults[i+1].Start
		}
		f.TwoHolders, f.NoHolder = l.Sampler.HolderTimes(f.Start, f.End)
		f.Failovers = failovers(hh, f.Old, f.Start, f.End)
		if !f.HitHolder {
			f.Spurious = f.Failovers
		}
		f.Takeover = -1
		for _, c := range hh {
			if c.At.After(f.Start) && c.At.Before(f.End) && len(c.Holders) == 1 && c.Holders[0] != f.Old {
				f.Takeover = c.At.Sub(f.Start)
				break
			}
		}
		f.Outage, _ = longestGap(l.Prober.Probes(f.Start.Add(-5*time.Second), f.End), f.Start, f.End)
	}
}
