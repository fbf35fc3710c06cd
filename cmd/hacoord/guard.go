package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/fencing"
	"github.com/hacoord/hacoord/vip"
)

// guard supervises the fence guard process (`hacoord fence-guard`, see fencing.Guard): it starts
// it, tells it when the VIPs are held and until when, and restarts it if it dies. Safe from any
// goroutine.
type guard struct {
	argv   []string
	stderr io.Writer // the guard logs where the daemon does
	log    *zap.Logger

	mu      sync.Mutex
	cmd     *exec.Cmd
	stdin   *os.File
	conn    *fencing.GuardConn
	exited  chan struct{}
	holding bool
	until   time.Time
}

// startGuard starts the fence guard for the daemon's interface and VIPs.
func startGuard(s Settings, stderr io.Writer, log *zap.Logger) (*guard, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("fence guard: %w", err)
	}
	argv := []string{exe, "fence-guard", "--interface", s.Interface, "--log-format", s.Log.Format, "--log-level", s.Log.Level}
	for _, v := range s.VIPs {
		argv = append(argv, "--vip", v)
	}
	g := &guard{argv: argv, stderr: stderr, log: log}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.startLocked(); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *guard) startLocked() error {
	cmd := exec.Command(g.argv[0], g.argv[1:]...)
	cmd.Stderr = g.stderr
	// Its own process group: a Ctrl-C in a terminal reaches the daemon, which releases in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// The daemon's end of the pipe is an *os.File of its own (not exec's StdinPipe) so that
	// fencing.GuardConn can bound each write with a deadline.
	pr, stdin, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("fence guard: pipe: %w", err)
	}
	cmd.Stdin = pr
	conn, err := fencing.NewGuardConn(stdin)
	if err != nil {
		pr.Close()
		stdin.Close()
		return fmt.Errorf("fence guard: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		pr.Close()
		stdin.Close()
		return fmt.Errorf("fence guard: %w", err)
	}
	err = cmd.Start()
	pr.Close() // the guard's end, now in the guard
	if err != nil {
		stdin.Close()
		return fmt.Errorf("fence guard: start %s: %w", g.argv[0], err)
	}
	// The guard says "ready" once it can remove the VIPs; until then it is no guard.
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != guardReady {
			err = fmt.Errorf("unexpected %q", line)
		}
		ready <- err
		_, _ = io.Copy(io.Discard, stdout)
	}()
	exited := make(chan struct{})
	var werr error
	go func() {
		werr = cmd.Wait()
		g.log.Debug("fence guard exited", zap.Int("pid", cmd.Process.Pid), zap.Error(werr))
		close(exited)
	}()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case err = <-ready:
	case <-t.C:
		err = errors.New("not ready after 5s")
	}
	if err != nil {
		_ = cmd.Process.Kill()
		<-exited
		stdin.Close()
		return fmt.Errorf("fence guard did not start (%v): %w", werr, err)
	}
	g.cmd, g.stdin, g.conn, g.exited = cmd, stdin, conn, exited
	g.log.Debug("fence guard started", zap.Int("pid", cmd.Process.Pid))
	return nil
}

// guardReady is the line the guard prints on stdout once it is watching.
const guardReady = "ready"

// send runs f on the guard's connection, restarting a guard that died (and replaying the hold).
func (g *guard) send(f func(*fencing.GuardConn) error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	err := f(g.conn)
	if err == nil || errors.Is(err, fencing.ErrGuardDeadline) {
		return err
	}
	select {
	case <-g.exited:
	default:
		return err // alive but the write failed: nothing a restart would fix
	}
	g.log.Error("fence guard died; restarting it", zap.Error(err))
	_ = g.stdin.Close() // the dead guard's pipe
	if serr := g.startLocked(); serr != nil {
		return errors.Join(err, serr)
	}
	g.log.Warn("fence guard restarted", zap.Int("pid", g.cmd.Process.Pid))
	if g.holding {
		_ = g.conn.Hold(g.until)
	}
	return f(g.conn)
}

// Hold tells the guard the VIPs are held until until (zero: no deadline).
func (g *guard) Hold(until time.Time) error {
	err := g.send(func(c *fencing.GuardConn) error { return c.Hold(until) })
	if err == nil {
		g.mu.Lock()
		g.holding, g.until = true, until
		g.mu.Unlock()
	}
	return err
}

// Release tells the guard the VIPs are released.
func (g *guard) Release() error {
	g.mu.Lock()
	g.holding = false
	g.mu.Unlock()
	return g.send(func(c *fencing.GuardConn) error { return c.Release() })
}

// Close ends the guard (its stdin closes; it checks nothing is left bound and exits) and waits
// for it, at most 5s.
func (g *guard) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	_ = g.stdin.Close()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-g.exited:
	case <-t.C:
		_ = g.cmd.Process.Kill()
		<-g.exited
	}
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
