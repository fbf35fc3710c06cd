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

func newDemoCommand(stdout io.Writer) *cobra.Command {
	var f labFlags
	var scenario string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Build a 3-node lab, show who holds the VIP, fail the holder and print the failover timeline (root)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return demo(cmd.Context(), &f, scenario, stdout)
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().StringVar(&scenario, "scenario", lab.Crash, "fault to inject: into the holder "+strings.Join(lab.NodeScenarios, ", ")+
		"; into the store (with --store-members 3) "+strings.Join(lab.StoreScenarios, ", "))
	return cmd
}

func demo(ctx context.Context, f *labFlags, scenario string, out io.Writer) (err error) {
	if f.jitter < 0 {
		f.jitter = 0
	}
	fmt.Fprintf(out, "Building the lab: %d nodes, %s store, VIP %s, lease TTL %v ...\n", f.nodes, f.backend, lab.VIP, f.ttl)
	l, err := f.newLab(ctx, out)
	if err != nil {
		return err
	}
	defer func() { f.teardown(ctx, l, out, err, "Tore down the lab: %s.\n") }()
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	holder, err := l.WaitSteady(sctx)
	cancel()
	if err != nil {
		return fmt.Errorf("no steady state: %w", err)
	}
	fmt.Fprintf(out, "\nSteady state after %v:\n", time.Since(l.Start).Round(time.Millisecond))
	fmt.Fprintf(out, "  %-6s %-12s %-18s %s\n", "node", "address", "eth0 MAC", "VIP")
	for _, n := range l.Nodes {
		has, _ := n.HasVIP()
		mark := ""
		if has {
			mark = "holds " + lab.VIP.String()
		}
		fmt.Fprintf(out, "  %-6s %-12s %-18s %s\n", n.Name, n.Addr, n.MAC, mark)
	}
	fmt.Fprintf(out, "  client %s: %s:%d answered by %s; neighbour entry %s -> %s\n",
		lab.ClientAddr, lab.VIP.Addr(), lab.ServicePort, holder.Name, lab.VIP.Addr(), l.Sampler.NeighMAC())

	target := holder.Name
	if lab.IsStoreScenario(scenario) {
		target = "the store (" + l.Store.Backend() + ")"
	}
	fmt.Fprintf(out, "\nInjecting %q into %s ...\n", scenario, target)
	r, err := l.RunScenario(ctx, scenario)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nWhat the client saw (t = fault):\n%s", lab.FormatTimeline(r))
	fmt.Fprintf(out, "\n%s -> %s\n", r.Old, r.New)
	fmt.Fprintf(out, "  client-visible outage  %v (%d failed probes, one every %v)\n", ms(r.Outage), r.FailedProbes, 10*time.Millisecond)
	if lab.IsStoreScenario(scenario) {
		fmt.Fprintf(out, "  %s\n", r.Summary())
	} else {
		fmt.Fprintf(out, "  new holder bound VIP   %v after the fault\n", ms(r.Takeover))
	}
	fmt.Fprintf(out, "  time with two holders  %v\n", ms(r.TwoHolders))
	fmt.Fprintf(out, "  time with no holder    %v\n", ms(r.NoHolder))
	if r.NeighSwitched >= 0 {
		fmt.Fprintf(out, "  client neighbour entry -> %s after %v\n", r.New, ms(r.NeighSwitched))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(out, "  note: %s\n", n)
	}
	period, round, _ := l.Sampler.Resolution()
	fmt.Fprintf(out, "  (sampler every %v, slowest netlink round %v)\n\n", period, round.Round(time.Microsecond))
	return nil
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
}
