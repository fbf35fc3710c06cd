package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/hacoord/hacoord/internal/lab"
)

func newSoakCommand(stdout io.Writer) *cobra.Command {
	var (
		hacoord, backend, profile, dir string
		duration                       time.Duration
		burners                        int
		verbose                        bool
	)
	cmd := &cobra.Command{
		Use:   "soak",
		Short: "Run a profile's 3-node lab for a while with both CPUs loaded and count spurious failovers (root)",
		Long: `soak builds a 3-node lab over one store member with a profile's timing (--profile fast:
ZooKeeper tickTime 100ms and a 300ms session, etcd election timeout 500ms and a 1s lease TTL;
--profile default: ZooKeeper tickTime 2s and a 4s session, etcd's 1s election timeout and a 2s TTL),
waits for a steady state, then runs --burners CPU-bound processes (default one per CPU) for
--duration and injects nothing: every failover is spurious (goal 0), and the VIP must never be on
two nodes. Drops (the master let go at its deadline and took the VIP back) are counted too. It
prints the figures and exits non-zero when the VIP was on two nodes or moved to another node.`,
		Example: `  hacoord-lab soak --backend zk --profile fast --duration 10m`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := labFlags{hacoord: hacoord, dir: dir}
			return soak(cmd.Context(), &f, backend, profile, duration, burners, verbose, stdout)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&hacoord, "hacoord", "", `hacoord binary (default: $HACOORD_BIN, else "hacoord" next to this binary, else in PATH)`)
	fs.StringVar(&backend, "backend", "etcd", "store: etcd or zk")
	fs.StringVar(&profile, "profile", lab.ProfileFast, "timing profile: fast or default")
	fs.DurationVar(&duration, "duration", 10*time.Minute, "how long to soak once steady")
	fs.IntVar(&burners, "burners", 0, "CPU-bound processes meanwhile (0: one per CPU; -1: none)")
	fs.StringVar(&dir, "dir", "", "directory for logs and store data, kept afterwards")
	fs.BoolVarP(&verbose, "verbose", "v", false, "print lab progress")
	return cmd
}

func soak(ctx context.Context, f *labFlags, backend, profile string, d time.Duration, burners int, verbose bool, out io.Writer) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root (network namespaces): run with sudo")
	}
	if d <= 0 {
		return fmt.Errorf("--duration %v: must be positive", d)
	}
	o, err := lab.SoakProfile(backend, profile)
	if err != nil {
		return err
	}
	if o.HacoordBin, err = f.hacoordBin(); err != nil {
		return err
	}
	o.Dir = f.dir
	if verbose {
		o.Logf = func(format string, args ...any) { fmt.Fprintf(out, "  lab: "+format+"\n", args...) }
	}
	bctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	l, err := lab.New(bctx, o)
	cancel()
	if err != nil {
		return err
	}
	defer func() { f.teardown(ctx, l, out, err, "%s\n") }()
	fmt.Fprintf(out, "soak: backend %s, profile %s (TTL/session %v), %v\n", backend, profile, o.TTL, d)
	rep, err := l.Soak(ctx, lab.SoakOptions{Duration: d, Burners: burners,
		Logf: func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s %s: %s\n", backend, profile, rep)
	if len(rep.Changes) > 0 {
		fmt.Fprintf(out, "holder changes:\n%s", lab.FormatSoakChanges(rep))
	}
	switch {
	case rep.TwoHolders > 0:
		return fmt.Errorf("the VIP was on two nodes for %v", rep.TwoHolders)
	case rep.Failovers > 0:
		return fmt.Errorf("%d spurious failovers with nothing injected (and %d drops of the VIP)", rep.Failovers, rep.Drops)
	}
	return nil
}
