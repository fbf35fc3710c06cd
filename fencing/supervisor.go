package fencing

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// GuardReady is the line a fence guard process prints on its stdout once it is watching (once it
// can remove the VIPs); until then it is no guard.
const GuardReady = "ready"

// Supervisor is the daemon's side of the fence guard (see Guard): it runs the guard process, tells
// it over the guard's stdin (a GuardConn) when the VIPs are held and until when, and what to end in
// the store should the daemon die, and restarts a guard that died, replaying the candidacy and the
// hold. Hold, Release, Candidacy and Close are safe from any goroutine; the process and the
// goroutines that wait for it and read its stdout end by Close.
type Supervisor struct {
	argv         []string
	stderr       io.Writer // the guard logs where the daemon does
	log          *zap.Logger
	readyTimeout time.Duration

	mu      sync.Mutex
	cmd     *exec.Cmd
	stdin   *os.File
	conn    *GuardConn
	exited  chan struct{}
	holding bool
	until   time.Time
	cand    string // the candidacy named last ("": none)
}

// StartSupervisor starts the guard argv (for hacoord, `hacoord fence-guard --interface eth0 --vip
// ...`) in a process group of its own, its stderr going to stderr, and waits at most 5s until it
// says GuardReady. log (nil: none) is used as given.
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
	s := &Supervisor{argv: argv, stderr: stderr, log: log, readyTimeout: readyTimeout}
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

// send runs f on the guard's connection, restarting a guard that died (and replaying the hold).
func (s *Supervisor) send(f func(*GuardConn) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
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
	if s.cand != "" {
		_ = s.conn.Candidacy(s.cand)
	}
	if s.holding {
		_ = s.conn.Hold(s.until)
	}
	return f(s.conn)
}

// Hold tells the guard the VIPs are held until until (zero: no deadline). A guard that died is
// restarted first.
func (s *Supervisor) Hold(until time.Time) error {
	err := s.send(func(c *GuardConn) error { return c.Hold(until) })
	if err == nil {
		s.mu.Lock()
		s.holding, s.until = true, until
		s.mu.Unlock()
	}
	return err
}

// Release tells the guard the VIPs are released.
func (s *Supervisor) Release() error {
	s.mu.Lock()
	s.holding = false
	s.mu.Unlock()
	return s.send(func(c *GuardConn) error { return c.Release() })
}

// Candidacy tells the guard what ends the daemon's candidacy in the store (GuardConn.Candidacy):
// the guard ends it once the daemon has died and the VIPs are gone. A guard that died is
// restarted first; a restarted guard hears the latest candidacy again.
func (s *Supervisor) Candidacy(text string) error {
	return s.send(func(c *GuardConn) error { // with s.mu held
		err := c.Candidacy(text)
		if err == nil {
			s.cand = text
		}
		return err
	})
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
