package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hacoord/hacoord/internal/lab"
)

// setup is one lab configuration the bench measures: a backend, what runs on the nodes, and the
// scenarios.
type setup struct {
	backend, impl string
	advert        time.Duration
	members       uint // store members; 0 takes --store-members
	// profile, if set, is a timing profile (lab.SoakProfile: the store's timing and the TTL).
	profile   string
	scenarios []string
}

func (s setup) String() string {
	switch {
	case s.backend == "vrrp":
		return fmt.Sprintf("%s vrrp %v", s.impl, s.advert)
	case s.profile != "":
		return fmt.Sprintf("%s %s %s", s.impl, s.backend, s.profile)
	case s.members > 1:
		return fmt.Sprintf("%s %s x%d", s.impl, s.backend, s.members)
	default:
		return s.impl + " " + s.backend
	}
}

// sharedScenarios are the node faults keepalived can take too: the bench runs them for every
// setup and prints hacoord's outage as a ratio of keepalived's in the same run.
var sharedScenarios = []string{lab.Crash, lab.Kill, lab.Term, lab.Pause, lab.Partition}

// suite is what `make bench` runs: keepalived (1s and 100ms adverts) and hacoord's VRRP mode,
// then etcd and ZooKeeper in both timing profiles (lab.ProfileFast, lab.ProfileDefault), each
// with sharedScenarios (the quorum backends also resign, a planned move through the control
// socket), and, unless noStore, the store scenarios against 3-member stores.
func suite(noStore bool) []setup {
	quorum := append(slices.Clone(sharedScenarios), lab.Resign)
	var out []setup
	for _, adv := range []time.Duration{time.Second, 100 * time.Millisecond} {
		for _, impl := range []string{lab.ImplKeepalived, lab.ImplHacoord} {
			out = append(out, setup{backend: "vrrp", impl: impl, advert: adv, members: 1, scenarios: sharedScenarios})
		}
	}
	for _, b := range []string{"etcd", "zk"} {
		for _, p := range []string{lab.ProfileFast, lab.ProfileDefault} {
			out = append(out, setup{backend: b, impl: lab.ImplHacoord, members: 1, profile: p, scenarios: quorum})
		}
	}
	if !noStore {
		for _, b := range []string{"etcd", "zk"} {
			out = append(out, setup{backend: b, impl: lab.ImplHacoord, members: 3, scenarios: lab.StoreScenarios})
		}
	}
	return out
}

func newBenchCommand(stdout io.Writer) *cobra.Command {
	var f labFlags
	var runs int
	var scenarios []string
	var all, noStore bool
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Run fault scenarios repeatedly and print min/median/max of outage, two-holder and no-holder time (root)",
		Long: `bench builds a lab, runs each scenario --runs times (restoring the lab in between) and prints
min / median / max of the client-visible outage (from the fault, or from a later reply of the old
holder, to the first reply from the new one), the time two nodes held the VIP, the time none did,
the takeover and the old holder's release, all from the fault.

The store scenarios (store-leader-kill, store-leader-cut, store-member-restart, store-quorum-loss;
they need --store-members 3) hit the store, never a node, and get a table of their own: the longest
gap in client replies, two-holder and no-holder time, spurious failovers (no node was hit, so every
change of holder is one), the store's election and, for quorum loss, how long after the quorum
returned a node held the VIP again and whether it was the same one.

With --all it runs the whole suite in one go: keepalived on every node at advert intervals 1s and
100ms, hacoord's native VRRP at the same intervals, then etcd and ZooKeeper in their fast and
default profiles (--profile: fast is ZooKeeper tickTime 100ms with a 300ms session, etcd with a
500ms election timeout and a 1s TTL; default is ZooKeeper tickTime 2s with a 4s session, etcd's
1s election timeout and a 2s TTL), each through crash, kill, term, pause and partition (and the
quorum backends resign), then the store scenarios with 3-member stores (not with
--no-store-scenarios). It ends with the ratios of hacoord's median client outage to keepalived's
in the same run, per backend, profile and scenario. A run that fails is reported and counted, and
the bench goes on (it exits non-zero at the end).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, s := range scenarios {
				if !slices.Contains(lab.Scenarios, s) {
					return fmt.Errorf("unknown scenario %q (have %s)", s, strings.Join(lab.Scenarios, ","))
				}
			}
			if runs < 1 {
				return fmt.Errorf("--runs %d: need at least 1", runs)
			}
			setups := []setup{{backend: f.backend, impl: f.impl, advert: f.advert, members: f.members, profile: f.profile, scenarios: scenarios}}
			if all {
				setups = suite(noStore)
			} else if slices.ContainsFunc(scenarios, lab.IsStoreScenario) && f.members < 3 {
				return fmt.Errorf("store scenarios need a store of 3 or more members: add --store-members 3")
			}
			return bench(cmd.Context(), &f, runs, setups, stdout)
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().IntVar(&runs, "runs", 5, "runs per scenario")
	cmd.Flags().BoolVar(&all, "all", false, "run the whole suite (every backend and profile, keepalived alongside); ignores --backend, --impl, --advert-int, --profile, --scenarios")
	cmd.Flags().BoolVar(&noStore, "no-store-scenarios", false, "with --all: leave out the store scenarios (3-member stores)")
	cmd.Flags().StringSliceVar(&scenarios, "scenarios", []string{lab.Crash, lab.Term, lab.Partition}, "scenarios, comma-separated: "+strings.Join(lab.Scenarios, ","))
	return cmd
}

// row is the results of one scenario in one setup.
type row struct {
	setup    setup
	scenario string
	results  []lab.Result
	failed   int // runs that returned an error
}

func bench(ctx context.Context, f *labFlags, runs int, setups []setup, out io.Writer) error {
	var rows []row
	var resolution string
	var errs []error
	for _, s := range setups {
		rs, res, err := benchSetup(ctx, f, runs, s, out)
		rows = append(rows, rs...)
		if res != "" {
			resolution = res
		}
		if err != nil {
			fmt.Fprintf(out, "  %s: %v\n", s, err)
			errs = append(errs, fmt.Errorf("%s: %w", s, err))
			if ctx.Err() != nil {
				break
			}
		}
	}
	fmt.Fprintf(out, "\nmin / median / max over %d runs (ms); %s, client probe every 10ms; '+': the old holder never let go within the window; 'failed n': runs that ended in an error\n\n", runs, resolution)
	nodeTable(out, slices.DeleteFunc(slices.Clone(rows), func(r row) bool { return lab.IsStoreScenario(r.scenario) }))
	storeTable(out, slices.DeleteFunc(slices.Clone(rows), func(r row) bool { return !lab.IsStoreScenario(r.scenario) }))
	ratioTable(out, rows)
	for _, r := range rows {
		if r.failed > 0 {
			errs = append(errs, fmt.Errorf("%s %s: %d of %d runs failed", r.setup, r.scenario, r.failed, r.failed+len(r.results)))
		}
	}
	return errors.Join(errs...)
}

// col renders min / median / max of get over the results where it is not negative.
func (r row) col(get func(lab.Result) time.Duration) string {
	var v []time.Duration
	for _, res := range r.results {
		if d := get(res); d >= 0 {
			v = append(v, d)
		}
	}
	return stats(v)
}

// nodeTable prints the node scenarios' rows.
func nodeTable(out io.Writer, rows []row) {
	if len(rows) == 0 {
		return
	}
	tw := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "setup\tscenario\tclient outage\ttwo holders\tno holder\ttakeover\told released\t")
	for _, r := range rows {
		col := r.col
		two := col(func(r lab.Result) time.Duration { return r.TwoHolders })
		if slices.ContainsFunc(r.results, func(r lab.Result) bool { return r.OldReleased < 0 }) {
			two += "+"
		}
		outage := col(func(r lab.Result) time.Duration { return r.Outage })
		if r.failed > 0 {
			outage += fmt.Sprintf(" (failed %d)", r.failed)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.setup, r.scenario,
			outage, two,
			col(func(r lab.Result) time.Duration { return r.NoHolder }),
			col(func(r lab.Result) time.Duration { return r.Takeover }),
			col(func(r lab.Result) time.Duration { return r.OldReleased }))
	}
	tw.Flush()
	fmt.Fprintln(out)
}

// storeTable prints the store scenarios' rows: the client outage is the longest gap in replies,
// spurious failovers are counts (min / median / max, and the total), the store election is from
// the fault to another member leading, and for quorum loss "back" is from the quorum's return to a
// node holding the VIP, "same master" how many runs the node that held it before took it back.
func storeTable(out io.Writer, rows []row) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(out, "Store faults (no node is hit: every change of holder is a spurious failover):")
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "setup\tscenario\tclient outage\ttwo holders\tno holder\tspurious failovers\tstore election\tback after quorum\tsame master\t")
	for _, r := range rows {
		var spurious []int
		same := 0
		for _, res := range r.results {
			spurious = append(spurious, res.Spurious)
			if res.Back != "" && res.Back == res.Old {
				same++
			}
		}
		sameCol := "-"
		if r.scenario == lab.StoreQuorumLoss {
			sameCol = fmt.Sprintf("%d of %d", same, len(r.results))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.setup, r.scenario,
			r.col(func(r lab.Result) time.Duration { return r.Outage }),
			r.col(func(r lab.Result) time.Duration { return r.TwoHolders }),
			r.col(func(r lab.Result) time.Duration { return r.NoHolder }),
			countStats(spurious),
			r.col(func(r lab.Result) time.Duration { return r.StoreElection }),
			r.col(func(r lab.Result) time.Duration { return r.BackAfter }),
			sameCol)
	}
	tw.Flush()
	fmt.Fprintln(out)
}

// benchSetup runs every scenario of s runs times in one lab.
func benchSetup(ctx context.Context, base *labFlags, runs int, s setup, out io.Writer) (rows []row, resolution string, err error) {
	f := *base
	f.backend, f.impl, f.advert, f.profile = s.backend, s.impl, s.advert, s.profile
	if s.members != 0 {
		f.members = s.members
	}
	for _, sc := range s.scenarios {
		rows = append(rows, row{setup: s, scenario: sc})
	}
	if s.profile != "" {
		o, err := lab.SoakProfile(s.backend, s.profile)
		if err != nil {
			return rows, "", err
		}
		f.ttl = o.TTL
	}
	detect := f.ttl
	if s.backend == "vrrp" {
		detect = 4 * s.advert
	}
	if f.jitter < 0 {
		f.jitter = detect / 2
	}
	fmt.Fprintf(out, "%s: %d nodes, %d store members, lease TTL %v, %d runs of %s, fault jitter %v\n", s, f.nodes, max(f.members, 1), f.ttl, runs, strings.Join(s.scenarios, ","), f.jitter)
	l, err := f.newLab(ctx, out)
	if err != nil {
		return rows, "", err
	}
	defer func() { f.teardown(ctx, l, out, err, "  %s\n") }()
	for i := 1; i <= runs; i++ {
		for j, sc := range s.scenarios {
			r, err := l.RunScenario(ctx, sc)
			if ctx.Err() != nil {
				return rows, "", context.Cause(ctx)
			}
			if err != nil {
				// Counted and reported; the lab is restored and the bench goes on.
				rows[j].failed++
				fmt.Fprintf(out, "  run %d %s: FAILED: %v\n", i, sc, err)
			} else {
				rows[j].results = append(rows[j].results, r)
				fmt.Fprintf(out, "  run %d %s\n", i, r.Summary())
			}
			if n := l.Node(r.Old); n != nil && s.backend == "vrrp" && sc == lab.Partition {
				// VRRP cannot tell a partitioned master that it lost: healed, it stays master (the
				// others defer to its priority) without announcing anew, and the client's neighbour
				// entry names the node that stepped down until it goes stale. Restarted (as an
				// operator would), the node takes the VIP back with gratuitous ARPs.
				_ = n.Crash()
			}
			rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			_, err = l.RestoreAll(rctx)
			cancel()
			if err != nil {
				return rows, "", fmt.Errorf("run %d %s: restore: %w", i, sc, err)
			}
		}
	}
	period, round, _ := l.Sampler.Resolution()
	return rows, fmt.Sprintf("sampler every %v (slowest round %v)", period, round.Round(time.Microsecond)), nil
}

// countStats renders min / median / max of counts, and their total.
func countStats(v []int) string {
	if len(v) == 0 {
		return "-"
	}
	slices.Sort(v)
	total := 0
	for _, n := range v {
		total += n
	}
	return fmt.Sprintf("%d / %d / %d (total %d)", v[0], v[len(v)/2], v[len(v)-1], total)
}

// stats renders min / median / max in milliseconds.
func stats(v []time.Duration) string {
	if len(v) == 0 {
		return "-"
	}
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	f := func(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d.Microseconds())/1000) }
	return f(v[0]) + " / " + f(med) + " / " + f(v[len(v)-1])
}
