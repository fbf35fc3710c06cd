package fencing

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// GuardReady is the line a fence guard process prints on its stdout once it is watching (once it
// can remove the VIPs); until then it is no guard.
const GuardReady = "ready"

// Supervisor is the daemon's side of the fence guard (see Guard): it runs the one guard process of
// the daemon, tells it over the guard's stdin (a GuardConn) what each instance holds (VIPs by
// device, IPVS services), when it holds them and until when, and what to end in the store should
// the daemon die, and restarts a guard that died, replaying all of that for every instance. Its
// methods are safe from any goroutine; the process and the goroutines that wait for it and read its
// stdout end by Close.
type Supervisor struct {
	argv         []string
	stderr       io.Writer // the guard logs where the daemon does
	log          *zap.Logger
	readyTimeout time.Duration

	mu     sync.Mutex
	cmd    *exec.Cmd
	stdin  *os.File
	conn   *GuardConn
	exited chan struct{}
	insts  map[string]*supervised
	order  []string // instances in the order first named, for the replay
}

// supervised is what the Supervisor told the guard of one instance, to replay it to a new guard.
type supervised struct {
	holding bool
	until   time.Time
	cand    string                    // the candidacy named last ("": none)
	latest  map[string][]netip.Prefix // by device: the VIPs the daemon named last
	told    map[string][]netip.Prefix // by device: what the guard removes (latest, and more, see VIPs)
	devs    []string                  // devices in the order first named
	ipvs    []string
}

// StartSupervisor starts the guard argv (for hacoord, `hacoord fence-guard --log-level info`) in a
// process group of its own, its stderr going to stderr, and waits at most 5s until it says
// GuardReady. log (nil: none) is used as given.
func StartSupervisor(argv []string, stderr io.Writer, log *zap.Logger) (*Supervisor, error) {
	return startSupervisor(argv, stderr, log, 5*time.Second)
}

func startSupervisor(argv []string, stderr io.Writer, log *zap.Logger, readyTimeout time.Duration) (*Supervisor, error) {
	if len(argv) == 0 {
		return nil, errors.New("fencing: fence guard: no command")
	}
	if log == nil {
		log = zap.NewNop()
	}
	s := &Supervisor{argv: argv, stderr: stderr, log: log, readyTimeout: readyTimeout, insts: map[string]*supervised{}}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.startLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Supervisor) startLocked() error {
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	cmd.Stderr = s.stderr
	// Its own process group: a Ctrl-C in a terminal reaches the daemon, which releases in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// The daemon's end of the pipe is an *os.File of its own (not exec's StdinPipe) so that the
	// GuardConn can bound each write with a deadline.
	pr, stdin, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("fencing: fence guard: pipe: %w", err)
	}
	cmd.Stdin = pr
	conn, err := NewGuardConn(stdin)
	if err != nil {
		pr.Close()
		stdin.Close()
		return fmt.Errorf("fencing: fence guard: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		pr.Close()
		stdin.Close()
		return fmt.Errorf("fencing: fence guard: %w", err)
	}
	err = cmd.Start()
	pr.Close() // the guard's end, now in the guard
	if err != nil {
		stdin.Close()
		return fmt.Errorf("fencing: fence guard: start %s: %w", s.argv[0], err)
	}
	ready := make(chan error, 1)
	go func() { // ends when the guard's stdout does: when it exits
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != GuardReady {
			err = fmt.Errorf("unexpected %q", line)
		}
		ready <- err
		_, _ = io.Copy(io.Discard, stdout)
	}()
	exited := make(chan struct{})
	var werr error
	go func() { // ends when the guard exits; Close waits for it
		werr = cmd.Wait()
		s.log.Debug("fence guard exited", zap.Int("pid", cmd.Process.Pid), zap.Error(werr))
		close(exited)
	}()
	t := time.NewTimer(s.readyTimeout)
	defer t.Stop()
	select {
	case err = <-ready:
	case <-t.C:
		err = fmt.Errorf("not ready after %v", s.readyTimeout)
	}
	if err != nil {
		_ = cmd.Process.Kill()
		<-exited
		stdin.Close()
		return fmt.Errorf("fencing: fence guard did not start (%v): %w", werr, err)
	}
	s.cmd, s.stdin, s.conn, s.exited = cmd, stdin, conn, exited
	s.log.Debug("fence guard started", zap.Int("pid", cmd.Process.Pid))
	return nil
}

// send runs f on the guard's connection, restarting a guard that died (and replaying what every
// instance holds). It is called with s.mu held.
func (s *Supervisor) sendLocked(f func(*GuardConn) error) error {
	err := f(s.conn)
	if err == nil || errors.Is(err, ErrGuardDeadline) {
		return err
	}
	select {
	case <-s.exited:
	default:
		return err // alive but the write failed: nothing a restart would fix
	}
	s.log.Error("fence guard died; restarting it", zap.Error(err))
	_ = s.stdin.Close() // the dead guard's pipe
	if serr := s.startLocked(); serr != nil {
		return errors.Join(err, serr)
	}
	s.log.Warn("fence guard restarted", zap.Int("pid", s.cmd.Process.Pid))
	s.replayLocked()
	return f(s.conn)
}

// replayLocked tells a new guard what every instance holds: VIPs, IPVS, candidacy, then the hold.
func (s *Supervisor) replayLocked() {
	for _, name := range s.order {
		in := s.insts[name]
		for _, dev := range in.devs {
			_ = s.conn.VIPs(name, dev, in.told[dev])
		}
		if len(in.ipvs) > 0 {
			_ = s.conn.IPVS(name, in.ipvs)
		}
		if in.cand != "" {
			_ = s.conn.Candidacy(name, in.cand)
		}
		if in.holding {
			_ = s.conn.Hold(name, in.until)
		}
	}
}

// instanceLocked returns the state of instance name, new if it was not named before.
func (s *Supervisor) instanceLocked(name string) *supervised {
	in := s.insts[name]
	if in == nil {
		in = &supervised{latest: map[string][]netip.Prefix{}, told: map[string][]netip.Prefix{}}
		s.insts[name] = in
		s.order = append(s.order, name)
	}
	return in
}

// Hold tells the guard instance's VIPs are held until until (zero: no deadline). A guard that
// died is restarted first.
func (s *Supervisor) Hold(instance string, until time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.sendLocked(func(c *GuardConn) error { return c.Hold(instance, until) })
	if err == nil {
		in := s.instanceLocked(instance)
		in.holding, in.until = true, until
	}
	return err
}

// Release tells the guard instance's VIPs are released (send it once they are gone). The guard
// then forgets the VIPs the instance no longer has (see VIPs).
func (s *Supervisor) Release(instance string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instanceLocked(instance)
	in.holding = false
	err := s.sendLocked(func(c *GuardConn) error { return c.Release(instance) })
	if err != nil {
		return err
	}
	for _, dev := range in.devs {
		if !slices.Equal(in.told[dev], in.latest[dev]) {
			in.told[dev] = slices.Clone(in.latest[dev])
			if err := s.sendLocked(func(c *GuardConn) error { return c.VIPs(instance, dev, in.told[dev]) }); err != nil {
				return err
			}
		}
	}
	return nil
}

// VIPs tells the guard the VIPs instance has on device dev now (none: nothing there). It is safe
// while the instance holds them, whatever the order in which the daemon then binds the new ones
// and removes the old: until the instance's next Release, the guard removes the VIPs named before
// too (removing an address that is not there is a no-op), so it is never without one that may be
// bound. Tell it before the first Hold.
func (s *Supervisor) VIPs(instance, dev string, vips []netip.Prefix) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instanceLocked(instance)
	told := slices.Clone(in.told[dev])
	for _, v := range vips {
		if !slices.Contains(told, v) {
			told = append(told, v)
		}
	}
	if err := s.sendLocked(func(c *GuardConn) error { return c.VIPs(instance, dev, told) }); err != nil {
		return err
	}
	if !slices.Contains(in.devs, dev) {
		in.devs = append(in.devs, dev)
	}
	in.latest[dev], in.told[dev] = slices.Clone(vips), told
	return nil
}

// IPVS tells the guard what it withdraws from the IPVS table for instance should the daemon die
// or pass the instance's deadline (GuardConn.IPVS); the latest wins.
func (s *Supervisor) IPVS(instance string, words []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.sendLocked(func(c *GuardConn) error { return c.IPVS(instance, words) })
	if err == nil {
		s.instanceLocked(instance).ipvs = slices.Clone(words)
	}
	return err
}

// Candidacy tells the guard what ends instance's candidacy in the store (GuardConn.Candidacy):
// the guard ends it once the daemon has died and the instance's VIPs are gone. A guard that died
// is restarted first; a restarted guard hears the latest candidacy again.
func (s *Supervisor) Candidacy(instance, text string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.sendLocked(func(c *GuardConn) error { return c.Candidacy(instance, text) })
	if err == nil {
		s.instanceLocked(instance).cand = text
	}
	return err
}

// Close ends the guard (its stdin closes; it checks nothing is left bound and exits) and waits
// for it, at most 5s, then kills it.
func (s *Supervisor) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.stdin.Close()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-s.exited:
	case <-t.C:
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}
