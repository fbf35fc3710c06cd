package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hacoord/hacoord/internal/lab"
)

func newBenchCommand(stdout io.Writer) *cobra.Command {
	var f labFlags
	var runs int
	var scenarios []string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Run fault scenarios repeatedly in one lab and print min/median/max of outage, two-holder and no-holder time (root)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, s := range scenarios {
				if !slices.Contains(lab.Scenarios, s) {
					return fmt.Errorf("unknown scenario %q (have %s)", s, strings.Join(lab.Scenarios, ","))
				}
			}
			if runs < 1 {
				return fmt.Errorf("--runs %d: need at least 1", runs)
			}
			return bench(cmd.Context(), &f, runs, scenarios, stdout)
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().IntVar(&runs, "runs", 5, "runs per scenario")
	cmd.Flags().StringSliceVar(&scenarios, "scenarios", []string{lab.Crash, lab.Term, lab.Partition}, "scenarios, comma-separated: "+strings.Join(lab.Scenarios, ","))
	return cmd
}

func bench(ctx context.Context, f *labFlags, runs int, scenarios []string, out io.Writer) (err error) {
	if f.jitter < 0 {
		f.jitter = f.ttl / 2
	}
	fmt.Fprintf(out, "hacoord bench: %d nodes, %s store, lease TTL %v, %d runs of %s, fault jitter %v\n", f.nodes, f.backend, f.ttl, runs, strings.Join(scenarios, ","), f.jitter)
	l, err := f.newLab(ctx, out)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil && ctx.Err() == nil {
			fmt.Fprintln(out, l.Tails(15))
		}
		fmt.Fprintf(out, "logs: %s\n", l.Dir())
		l.Close()
	}()
	results := map[string][]lab.Result{}
	for i := 1; i <= runs; i++ {
		for _, s := range scenarios {
			r, err := l.RunScenario(ctx, s)
			if err != nil {
				return fmt.Errorf("run %d %s: %w", i, s, err)
			}
			results[s] = append(results[s], r)
			fmt.Fprintf(out, "  run %d %s\n", i, r.Summary())
			rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			_, err = l.RestoreAll(rctx)
			cancel()
			if err != nil {
				return fmt.Errorf("run %d %s: restore: %w", i, s, err)
			}
		}
	}
	period, round, _ := l.Sampler.Resolution()
	fmt.Fprintf(out, "\nmin / median / max over %d runs (ms); sampler every %v (slowest round %v), client probe every 10ms\n\n",
		runs, period, round.Round(time.Microsecond))
	tw := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "scenario\tclient outage\ttwo holders\tno holder\ttakeover\told released\t")
	for _, s := range scenarios {
		rs := results[s]
		col := func(get func(lab.Result) time.Duration) string {
			var v []time.Duration
			for _, r := range rs {
				if d := get(r); d >= 0 {
					v = append(v, d)
				}
			}
			return stats(v)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", s,
			col(func(r lab.Result) time.Duration { return r.Outage }),
			col(func(r lab.Result) time.Duration { return r.TwoHolders }),
			col(func(r lab.Result) time.Duration { return r.NoHolder }),
			col(func(r lab.Result) time.Duration { return r.Takeover }),
			col(func(r lab.Result) time.Duration { return r.OldReleased }))
	}
	tw.Flush()
	fmt.Fprintln(out)
	return nil
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
