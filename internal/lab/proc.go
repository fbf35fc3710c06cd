package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hacoord/hacoord/internal/netnstest"
)

// maxLines bounds the log lines a Proc keeps in memory (the log file keeps them all).
const maxLines = 20000

// Proc is one program the lab runs inside a namespace (`ip netns exec NS prog args...`; ip execs the
// program, so the PID is the program's own and signals reach it directly). Its stdout and stderr go
// to a log file and are kept in memory for WaitLine and Tail. Proc is safe for concurrent use.
//
// Children are started in their own process group (a terminal's Ctrl-C reaches only the lab, which
// then stops them in order) with Pdeathsig SIGKILL, so they die with the lab process even when it is
// SIGKILLed; namespaces such a run leaves behind are swept by the next lab (see Sweep).
type Proc struct {
	Name    string // "n1/hacoord"
	LogPath string

	cmd *exec.Cmd
	// group: signals go to the whole process group (keepalived's parent and its VRRP child).
	group bool
	done  chan struct{} // closed when the process has exited and its output is drained
	err   error         // Wait's result, valid after done

	mu      sync.Mutex
	lines   []string
	partial []byte
	changed chan struct{} // closed and replaced on every new line
	file    *os.File
}

// startProc starts bin with args inside ns, logging to logPath.
func startProc(ns *netnstest.NS, name, logPath, bin string, args ...string) (*Proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab: log file for %s: %w", name, err)
	}
	p := &Proc{Name: name, LogPath: logPath, done: make(chan struct{}), changed: make(chan struct{}), file: f}
	fmt.Fprintf(f, "### %s: %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, bin}, args...)...)
	cmd.Stdout = p
	cmd.Stderr = p
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("lab: start %s (%s): %w", name, bin, err)
	}
	p.cmd = cmd
	go func() {
		p.err = cmd.Wait()
		p.mu.Lock()
		if len(p.partial) > 0 {
			p.addLine(string(p.partial))
			p.partial = nil
		}
		fmt.Fprintf(p.file, "### %s: exited: %v\n", time.Now().Format(time.RFC3339Nano), p.err)
		p.file.Close()
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Write implements io.Writer for the child's output.
func (p *Proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, _ = p.file.Write(b)
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		p.addLine(string(p.partial[:i]))
		p.partial = p.partial[i+1:]
	}
	return len(b), nil
}

// addLine records one line; p.mu is held.
func (p *Proc) addLine(s string) {
	p.lines = append(p.lines, s)
	if len(p.lines) > maxLines {
		p.lines = append([]string(nil), p.lines[len(p.lines)-maxLines/2:]...)
	}
	close(p.changed)
	p.changed = make(chan struct{})
}

// PID returns the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Signal sends sig to the process; signalling an exited process is not an error.
func (p *Proc) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	if p.group {
		if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("lab: signal %v to %s's group: %w", sig, p.Name, err)
		}
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("lab: signal %v to %s: %w", sig, p.Name, err)
	}
	return nil
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits until the process exits or ctx is done, and returns its exit error.
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("lab: wait for %s to exit: %w", p.Name, context.Cause(ctx))
	}
}

// Stop sends SIGTERM (after SIGCONT, in case it is stopped), waits up to grace, then SIGKILLs and
// waits for the exit. It is idempotent.
func (p *Proc) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.Signal(syscall.SIGCONT)
	_ = p.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return
	case <-t.C:
	}
	p.Kill()
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *Proc) Kill() {
	_ = p.Signal(syscall.SIGKILL)
	<-p.done
	if p.group { // a child may outlive the group leader: kill it and wait until the group is gone
		pgid := p.cmd.Process.Pid
		deadline := time.Now().Add(5 * time.Second)
		for syscall.Kill(-pgid, syscall.SIGKILL) == nil && time.Now().Before(deadline) {
			// Polling is the only way to wait for processes that are not our children.
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// WaitLine waits until an output line containing substr has been written (also before the call)
// and returns it. It fails when the process exits first or ctx is done.
func (p *Proc) WaitLine(ctx context.Context, substr string) (string, error) {
	seen := 0
	for {
		p.mu.Lock()
		for ; seen < len(p.lines); seen++ {
			if strings.Contains(p.lines[seen], substr) {
				l := p.lines[seen]
				p.mu.Unlock()
				return l, nil
			}
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-p.done:
			// Output is fully drained once done is closed: check the remaining lines once more.
			p.mu.Lock()
			for ; seen < len(p.lines); seen++ {
				if strings.Contains(p.lines[seen], substr) {
					l := p.lines[seen]
					p.mu.Unlock()
					return l, nil
				}
			}
			p.mu.Unlock()
			return "", fmt.Errorf("lab: %s exited (%v) before printing %q", p.Name, p.err, substr)
		case <-ctx.Done():
			return "", fmt.Errorf("lab: %s: waiting for %q: %w", p.Name, substr, context.Cause(ctx))
		}
	}
}

// Lines returns a copy of the output lines kept in memory.
func (p *Proc) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Tail returns the last n output lines, joined.
func (p *Proc) Tail(n int) string {
	l := p.Lines()
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
