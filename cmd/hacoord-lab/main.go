// Command hacoord-lab runs the pieces of hacoord's network-namespace lab (internal/lab) and the lab
// itself:
//
//	hacoord-lab etcd --listen-client http://10.77.0.2:2379 --dir D   serve a single-member embedded etcd
//	hacoord-lab etcd --name s1 --listen-client http://10.77.0.2:2379 --listen-peer http://10.77.0.2:2380 \
//	    --initial-cluster s1=http://10.77.0.2:2380,s2=...,s3=... --heartbeat-ms 100 --election-ms 1000 --dir D
//	                                                                 one member of a cluster
//	hacoord-lab serve --listen :8080 --name n1                      reply with the node name, close
//	hacoord-lab demo  --hacoord bin/hacoord                         a 3-node failover, as a timeline
//	hacoord-lab bench --hacoord bin/hacoord --runs 5 --scenarios crash,term,partition
//	hacoord-lab bench --backend zk --store-members 3 --scenarios store-leader-kill,store-quorum-loss
//	hacoord-lab chaos --backend etcd --duration 10m --seed 42            the nemesis, replayable by seed
//	hacoord-lab soak --backend zk --profile fast --duration 10m          a fast profile under CPU load, no faults
//	hacoord-lab footprint --backend etcd --profile fast --window 1m      idle RSS and CPU of each daemon and its guard
//	hacoord-lab bench --all --no-store-scenarios --runs 3               every profile, keepalived alongside, with ratios
//
// demo, bench and chaos need root; they build the lab, clean it up on exit and on Ctrl-C, and sweep
// what an earlier killed run left behind.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:           "hacoord-lab",
		Short:         "hacoord's network-namespace lab: store, service, demo and bench",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetArgs(args)
	root.AddCommand(newEtcdCommand(stderr), newServeCommand(stdout),
		newDemoCommand(stdout), newBenchCommand(stdout), newChaosCommand(stdout))
	root.AddCommand(newComposeCommand(stdout, stderr))
	root.AddCommand(newSoakCommand(stdout))
	root.AddCommand(newFootprintCommand(stdout))
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "hacoord-lab: %v\n", err)
		return 1
	}
	return 0
}
