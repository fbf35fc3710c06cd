package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/fencing"
	"github.com/hacoord/hacoord/vip"
)

// guard is the daemon's side of a fence guard process (`hacoord fence-guard`, see fencing.Guard):
// fencing.Supervisor starts it, tells it when the VIPs are held and until when, and restarts it if
// it dies.
type guard = fencing.Supervisor

// guardReady is the line the guard prints on stdout once it is watching.
const guardReady = fencing.GuardReady

// startGuard starts a fence guard for s's interface and VIPs, logging as the daemon does.
func startGuard(s Settings, stderr io.Writer, log *zap.Logger) (*guard, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("fence guard: %w", err)
	}
	argv := []string{exe, "fence-guard", "--interface", s.Interface, "--log-format", s.Log.Format, "--log-level", s.Log.Level}
	for _, v := range s.VIPs {
		argv = append(argv, "--vip", v)
	}
	return fencing.StartSupervisor(argv, stderr, log)
}

func newFenceGuardCommand(stderr io.Writer) *cobra.Command {
	var (
		ifname string
		vips   []string
		ls     = LogSettings{Format: "console", Level: "info"}
	)
	cmd := &cobra.Command{
		Use:    "fence-guard",
		Short:  "The daemon's watchdog process (started by the daemon; not for direct use)",
		Hidden: true,
		Args:   noArgs,
		RunE: func(*cobra.Command, []string) error {
			// The daemon handles SIGINT/SIGTERM and releases in order; the guard goes on until its
			// stdin closes, which happens however the daemon ends. SIGPIPE too: if the daemon is
			// already dead, writing "ready" (or a log line to a dead log reader) must not kill the
			// guard before it has released.
			signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
			// The guard's log never blocks it: a reader that stopped reading (the daemon's stderr is
			// a full pipe) must not keep the guard from its next release.
			sink := newLogSink(stderr)
			defer sink.Close()
			log, err := newLogger(ls, sink)
			if err != nil {
				return configError{err}
			}
			defer func() { _ = log.Sync() }()
			s := Settings{VIPs: vips}
			pfx, err := s.vipPrefixes()
			if err != nil {
				return err
			}
			c := vip.DefaultConfig()
			c.Interface, c.VIPs, c.Lifetime = ifname, pfx, false
			c.Announce.Count, c.Announce.Repeat, c.Announce.Refresh = 0, 0, 0 // the guard only ever removes
			m, err := vip.New(c, nil)
			if err != nil {
				return err
			}
			defer m.Close()
			// Every configured VIP is deleted without listing first (a delete of an absent address is
			// no error); fencing.Guard retries a release that fails.
			release := func(string) (bool, error) {
				removed, err := m.Remove(context.Background())
				return len(removed) > 0, err
			}
			// A failed write means the daemon is gone: Guard then reads EOF and releases.
			_, _ = fmt.Println(guardReady)
			return fencing.Guard(context.Background(), os.Stdin, release, log.Named("fence-guard"))
		},
	}
	cmd.Flags().StringVar(&ifname, "interface", "", "interface carrying the VIPs")
	cmd.Flags().StringArrayVar(&vips, "vip", nil, "VIP (repeat)")
	cmd.Flags().StringVar(&ls.Format, "log-format", ls.Format, "console or json")
	cmd.Flags().StringVar(&ls.Level, "log-level", ls.Level, "log level")
	return cmd
}
