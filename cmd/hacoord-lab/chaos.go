package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hacoord/hacoord/internal/lab"
)

func newChaosCommand(stdout io.Writer) *cobra.Command {
	var f labFlags
	var o lab.ChaosOptions
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Inject a seeded, random schedule of node and store faults for a while and report the cost per fault kind (root)",
		Long: `chaos builds a lab of 3 nodes and a 3-member store (--store-members) and runs the nemesis for
--duration: fault after fault, each drawn from a schedule that the seed fixes (the order of the
kinds, every duration, loss rate and pick among backups or store followers), held, undone, and
followed by a steady state and a quiet gap. Node faults hit the VIP holder three times in four, a
backup otherwise: crash, kill (SIGKILL), pause-short and pause-long (SIGSTOP shorter and longer
than the lease), cut-store, cut-peers and cut-clients (nftables in the node's namespace drop its
traffic to and from the store, the other nodes or the client only). Store faults: the store
scenarios (leader kill and cut, member restart, quorum loss and return) and store-loss (every
member drops 10-50% of its packets).

It prints the seed first; the same seed replays the same schedule. The report gives per fault kind
the time with two holders (must be 0), the time with none, the failovers, the spurious ones (the
VIP moved though its holder was not hit), the worst takeover and the worst client outage. It exits
non-zero when the VIP was ever on two nodes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("store-members") {
				f.members = 3
			}
			if f.jitter < 0 {
				f.jitter = 0 // the schedule has its own gaps
			}
			return chaos(cmd.Context(), &f, o, stdout)
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().DurationVar(&o.Duration, "duration", 10*time.Minute, "how long to inject faults")
	cmd.Flags().Uint64Var(&o.Seed, "seed", 0, "schedule seed (0: a random one, printed)")
	cmd.Flags().StringSliceVar(&o.Kinds, "faults", nil, "fault kinds, comma-separated (default all): "+strings.Join(lab.ChaosKinds, ","))
	return cmd
}

func chaos(ctx context.Context, f *labFlags, o lab.ChaosOptions, out io.Writer) (err error) {
	if f.backend == "vrrp" {
		return fmt.Errorf("chaos needs a store: --backend etcd or zk")
	}
	l, err := f.newLab(ctx, out)
	if err != nil {
		return err
	}
	defer func() { f.teardown(ctx, l, out, err, "%s\n") }()
	o.Logf = func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	rep, err := l.Chaos(ctx, o)
	if f.verbose {
		for _, fl := range rep.Faults {
			fmt.Fprintln(out, "  "+fl.Line(rep.Start))
		}
	}
	fmt.Fprintf(out, "\n%s\n", rep)
	if err != nil {
		return err
	}
	if two := rep.TwoHolders(); two > 0 {
		return fmt.Errorf("the VIP was on two nodes for %v (seed %d)", two, rep.Seed)
	}
	return nil
}
