package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/hacoord/hacoord/internal/lab"
)

func newFootprintCommand(stdout io.Writer) *cobra.Command {
	var f labFlags
	var window time.Duration
	var rounds int
	cmd := &cobra.Command{
		Use:   "footprint",
		Short: "Measure the daemons' memory and idle CPU in a steady lab (root)",
		Long: `footprint builds a lab (--backend, --profile, --impl as for bench), waits for a steady state and
measures, per node, the daemon and its child processes (hacoord's fence guard; keepalived's VRRP
child) over --window of idleness: resident memory at the end (VmRSS, and VmHWM as the peak) and
the CPU time spent, as a share of one core. --rounds repeats the window in the same lab and
prints min / median / max of the master's figures. The goal (issue 14): daemon plus guard at most
25 MB and an idle master at most 0.2% of a core.`,
		Example: `  hacoord-lab footprint --backend etcd --profile fast --window 1m`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if window <= 0 || rounds < 1 {
				return fmt.Errorf("--window %v, --rounds %d: need a positive window and at least one round", window, rounds)
			}
			if f.profile != "" {
				o, err := lab.SoakProfile(f.backend, f.profile)
				if err != nil {
					return fmt.Errorf("--profile: %w", err)
				}
				f.ttl = o.TTL
			}
			if f.jitter < 0 {
				f.jitter = 0
			}
			l, err := f.newLab(cmd.Context(), stdout)
			if err != nil {
				return err
			}
			defer func() {
				if err != nil && cmd.Context().Err() == nil {
					fmt.Fprintln(stdout, l.Tails(15))
				}
				l.Close()
				fmt.Fprintln(stdout, f.finish(l, err))
			}()
			return footprint(cmd.Context(), l, window, rounds, stdout)
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().DurationVar(&window, "window", time.Minute, "how long each measurement lasts")
	cmd.Flags().IntVar(&rounds, "rounds", 1, "measurements in a row")
	return cmd
}

func footprint(ctx context.Context, l *lab.Lab, window time.Duration, rounds int, out io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root (network namespaces): run with sudo")
	}
	var rss, cpu []float64 // the master's: MB, % of a core
	for i := 1; i <= rounds; i++ {
		fs, err := l.Footprint(ctx, window)
		if err != nil {
			return fmt.Errorf("round %d: %w", i, err)
		}
		fmt.Fprintf(out, "round %d:\n", i)
		for _, f := range fs {
			fmt.Fprint(out, f)
			if f.Master {
				rss = append(rss, float64(f.RSS())/(1<<20))
				cpu = append(cpu, 100*f.CPUShare())
			}
		}
	}
	fmt.Fprintf(out, "master over %d rounds of %v (min / median / max): RSS %s MB, CPU %s %% of a core\n", rounds, window, floatStats(rss, "%.1f"), floatStats(cpu, "%.3f"))
	return nil
}

// floatStats renders min / median / max of v in format.
func floatStats(v []float64, format string) string {
	if len(v) == 0 {
		return "-"
	}
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return fmt.Sprintf(format+" / "+format+" / "+format, v[0], med, v[len(v)-1])
}
