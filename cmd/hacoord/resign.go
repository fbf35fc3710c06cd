package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
)

// controlTarget are the flags every control subcommand takes: which daemon (--name, or its
// --control-socket) and which of its instances (--group, --instance).
type controlTarget struct {
	name, socket, group, instance string
}

func (ct *controlTarget) register(cmd *cobra.Command) {
	host, _ := os.Hostname()
	f := cmd.Flags()
	f.StringVar(&ct.name, "name", host, "the node whose daemon to ask (its --name): picks the control socket /run/hacoord/<name>.sock")
	f.StringVar(&ct.socket, "control-socket", "", "the daemon's control socket (default /run/hacoord/<name>.sock)")
	f.StringVar(&ct.group, "group", "", "the instance's group (needed when the daemon runs several instances)")
	f.StringVar(&ct.instance, "instance", "", "the instance's name (needed when the daemon runs several instances)")
}

// call sends req to the daemon picked and prints its answer.
func (ct *controlTarget) call(ctx context.Context, w io.Writer, req controlRequest, wait time.Duration) error {
	path := ct.socket
	if path == "" {
		if ct.name == "" {
			return configError{fmt.Errorf("--name: empty (and the host name is unknown)")}
		}
		path = defaultControlSocket(ct.name)
	}
	req.Group, req.Instance = ct.group, ct.instance
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	msg, err := controlCall(ctx, path, req)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, msg)
	return nil
}

func newResignCommand(stdout io.Writer) *cobra.Command {
	var ct controlTarget
	cmd := &cobra.Command{
		Use:   "resign",
		Short: "Make this node's master step down: it releases the VIPs and another node takes over at once",
		Long: `resign asks the daemon (through its control socket; root only) to step down as master of an
instance: it releases the VIPs first, then gives up its place in the election, so the next node
takes over within a store round trip. The node stays a candidate. A backup refuses, and so does
a master alone in its group (etcd, ZooKeeper: no other candidate could take over), which keeps
its VIPs: use 'hacoord maintenance on' to take it out anyway. VRRP cannot know its backups: it
resigns anyway, and alone it is master again after Master_Down_Interval. For a member of a sync
group the whole group resigns.`,
		Example: `  hacoord resign
  hacoord resign --group lab --name h1`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return ct.call(cmd.Context(), stdout, controlRequest{Op: "resign"}, controlTimeout+5*time.Second)
		},
	}
	ct.register(cmd)
	return cmd
}
