// Command hacoord keeps one node of a group holding the group's virtual IPs, with a quorum store
// (etcd or ZooKeeper) or native VRRP deciding which node that is. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hacoord/hacoord/internal/oneproc"
)

// Exit statuses.
const (
	exitOK     = 0
	exitError  = 1 // the daemon or a subcommand failed at run time
	exitConfig = 2 // bad flags or configuration
)

func main() {
	// The daemon's idle wake-ups cost less on one P (internal/oneproc); the other commands need no
	// more.
	oneproc.Set()
	ignoreHUPUntilDaemon(os.Args[1:]) // a SIGHUP during start-up must not end the daemon
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes hacoord with args and returns the process exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	reportAllFlagErrors(root, args) // every bad flag, not the first only (flagerrors.go)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	printError(stderr, err)
	var ce configError
	if errors.As(err, &ce) {
		return exitConfig
	}
	return exitError
}

// printError prints err; several problems (errors.Join) go one a line under a count.
func printError(w io.Writer, err error) {
	lines := strings.Split(err.Error(), "\n")
	if len(lines) == 1 {
		fmt.Fprintf(w, "hacoord: %v\n", err)
		return
	}
	fmt.Fprintf(w, "hacoord: %d problems:\n", len(lines))
	for _, l := range lines {
		fmt.Fprintf(w, "  %s\n", l)
	}
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	fv := defaultFlagValues()
	var configPath string
	root := &cobra.Command{
		Use:   "hacoord",
		Short: "Consensus-backed virtual IP failover (a keepalived with a quorum)",
		Long: `hacoord runs on every node of a group. Exactly one node, the master, holds the group's
virtual IPs: it binds them, announces them with gratuitous ARP (unsolicited NA for IPv6) and
publishes a master record under /hacoord/<group>/leader. When the master dies, stops or loses
the store, another node takes over.

Backends: etcd and ZooKeeper decide with a quorum, so a cut-off master lets go (self-fencing)
before anyone else can take over. The native VRRP backend (wire-compatible with keepalived) has
NO quorum: when the VRRP path between nodes is cut, both sides become master (split brain).

SIGTERM releases the VIPs and resigns; SIGHUP reads the configuration again and applies it without
a failover, or refuses it (naming what) and runs on with the old one (docs/config.md, "Reload").`,
		Example: `  # etcd, three nodes run the same command with their own --name
  hacoord --backend etcd --endpoints http://10.0.0.1:2379,http://10.0.0.2:2379 \
      --name node1 --interface eth0 --vip 10.0.0.100/24 --group web --lease-ttl 2s

  # ZooKeeper ensemble with a chroot and digest auth
  hacoord --backend zk --endpoints zk1:2181,zk2:2181,zk3:2181/ha --zk-auth hacoord:secret \
      --name node1 --interface eth0 --vip 10.0.0.100/24

  # native VRRP next to keepalived (same virtual_router_id)
  hacoord --backend vrrp --interface eth0 --vip 10.0.0.100/24 --vrid 51 --priority 150

  # settings from a file, flags override it
  hacoord --config /etc/hacoord/hacoord.yaml --name node2

  # several instances (and sync groups) in one daemon: see docs/config.md
  hacoord --config /etc/hacoord/instances.yaml`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, p, err := resolve(cmd, &fv, configPath)
			if err != nil {
				return err
			}
			reread := func() (*plan, error) { _, p, err := resolve(cmd, &fv, configPath); return p, err }
			return storeRefused(runDaemon(cmd.Context(), p, stderr, reread))
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return configError{err} })
	root.Flags().StringVar(&configPath, "config", "", "YAML settings file; flags given on the command line override it")
	registerFlags(root.Flags(), &fv)
	root.AddCommand(newVersionCommand(stdout), newCheckConfigCommand(stdout), newWatchCommand(stdout, stderr),
		newStatusCommand(stdout), newIPVSCommand(stdout), newFenceGuardCommand(stderr),
		newImportKeepalivedCommand(stdout, stderr))
	root.AddCommand(newRealServerCommand(stdout, stderr))
	root.AddCommand(newExplainCommand(stdout))
	root.AddCommand(newResignCommand(stdout), newTransferCommand(stdout), newMaintenanceCommand(stdout))
	return root
}

// resolve decodes the command line (and the file, if configPath is set), maps it onto every
// package's Config and validates the result, against this machine too: what the daemon runs and
// check-config prints.
func resolve(cmd *cobra.Command, fv *flagValues, configPath string) (settings, *plan, error) {
	return resolveFlags(cmd.Flags(), fv, configPath)
}

// resolveFlags is resolve over the flag set fs (flagerrors.go parses one of its own).
func resolveFlags(fs *pflag.FlagSet, fv *flagValues, configPath string) (settings, *plan, error) {
	s, err := load(fs, fv, configPath)
	if err != nil {
		return s, nil, err
	}
	p, perr := buildPlan(s)
	serr := checkSystem(s, p)
	if perr != nil || serr != nil {
		return s, nil, configError{errors.Join(perr, serr)}
	}
	return s, p, nil
}

// noArgs rejects positional arguments as a usage error (exit 2).
func noArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return configError{err}
	}
	return nil
}
