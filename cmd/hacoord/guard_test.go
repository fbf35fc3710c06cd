package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/hacoord/hacoord/fencing"
	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
)

// These tests run the real `hacoord fence-guard` in a network namespace, with the test as its
// daemon: the test binds the VIP, talks the guard's protocol on its stdin (fencing.GuardConn) and
// times the VIP's removal from the kernel's own notifications.

// guardLateness bounds how late after a deadline the guard may remove the VIPs: the smallest
// self-fencing margin (fencing.DefaultMargin's floor). A guard later than the margin removes them
// after the instant another node may bind them.
const guardLateness = 100 * time.Millisecond

var guardVIP = netip.MustParsePrefix("192.0.2.100/24")

// guardInst is the instance the tests' guard watches.
const guardInst = "web"

type guardProc struct {
	cmd    *exec.Cmd
	stdin  *os.File
	conn   *fencing.GuardConn
	stdout *bufio.Reader
	outR   io.ReadCloser // the read end of the guard's stdout
	stderr *lockedBuffer
	done   chan error // cmd.Wait
	ns     *netnstest.NS

	mu   sync.Mutex
	gone time.Time // when the kernel reported the VIP removed
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startFenceGuard binds guardVIP in a fresh namespace and starts the fence guard for it. waitReady
// waits for its "ready".
func startFenceGuard(t *testing.T, waitReady bool) *guardProc {
	t.Helper()
	testenv.RequireRoot(t)
	bin := os.Getenv("HACOORD_BIN")
	if bin == "" {
		testenv.Unavailable(t, "HACOORD_BIN not set (make test builds bin/hacoord and sets it)")
	}
	a, b := netnstest.New(t, "ga"), netnstest.New(t, "gb")
	if _, _, err := netnstest.Veth(a, "eth0", netip.MustParsePrefix("192.0.2.1/24"), b, "eth0", netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	a.Run(t, "ip", "addr", "add", guardVIP.String(), "dev", "eth0")
	g := &guardProc{ns: a, stderr: &lockedBuffer{}, done: make(chan error, 1)}

	updates := make(chan netlink.AddrUpdate, 64)
	stop := make(chan struct{})
	if err := netlink.AddrSubscribeAt(a.Handle, updates, stop); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for u := range updates {
			at := time.Now()
			if !u.NewAddr && u.LinkAddress.IP.Equal(guardVIP.Addr().AsSlice()) {
				g.mu.Lock()
				if g.gone.IsZero() {
					g.gone = at
				}
				g.mu.Unlock()
			}
		}
	})
	t.Cleanup(func() { close(stop); wg.Wait() })

	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	g.stdin = pw
	if g.conn, err = fencing.NewGuardConn(pw); err != nil {
		t.Fatal(err)
	}
	g.cmd = a.Command(context.Background(), bin, "fence-guard", "--log-level", "debug")
	g.cmd.Stdin, g.cmd.Stderr = pr, g.stderr
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // as the daemon starts it
	out, err := g.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	go func() { g.done <- g.cmd.Wait() }()
	t.Cleanup(func() {
		pw.Close()
		select {
		case <-g.done:
		case <-time.After(5 * time.Second):
			_ = g.cmd.Process.Kill()
			<-g.done
		}
	})
	g.outR, g.stdout = out, bufio.NewReader(out)
	// The daemon names the instance's VIPs first (a daemon that died at once has named them too:
	// the line is in the pipe before it closes).
	if err := g.conn.VIPs(guardInst, "eth0", []netip.Prefix{guardVIP}); err != nil {
		t.Fatal(err)
	}
	if waitReady {
		line, err := g.stdout.ReadString('\n')
		if err != nil || strings.TrimSpace(line) != guardReady {
			t.Fatalf("fence guard said %q, %v; want %q\n%s", line, err, guardReady, g.stderr.String())
		}
	}
	return g
}

// removed waits (at most d) for the kernel to report the VIP removed and returns when it did.
func (g *guardProc) removed(t *testing.T, d time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		g.mu.Lock()
		gone := g.gone
		g.mu.Unlock()
		if !gone.IsZero() {
			return gone
		}
		if time.Now().After(deadline) {
			t.Fatalf("VIP not removed within %v\nguard log:\n%s", d, g.stderr.String())
		}
		time.Sleep(5 * time.Millisecond) // polling what the notification goroutine recorded
	}
}

func (g *guardProc) bound(t *testing.T) bool {
	t.Helper()
	return strings.Contains(g.ns.Run(t, "ip", "-o", "addr", "show", "dev", "eth0"), guardVIP.Addr().String())
}

// exit closes the guard's stdin (the daemon is gone) and waits for it to exit.
func (g *guardProc) exit(t *testing.T) {
	t.Helper()
	g.stdin.Close()
	select {
	case err := <-g.done:
		g.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("fence guard: %v\n%s", err, g.stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("fence guard did not exit at EOF\n%s", g.stderr.String())
	}
}

// checkRelease asserts the VIP went at the deadline until: not before it, and within guardLateness.
func checkRelease(t *testing.T, gone, until time.Time, log string) {
	t.Helper()
	late := gone.Sub(until)
	t.Logf("VIP removed %v after the deadline", late)
	if late < 0 || late > guardLateness {
		t.Errorf("VIP removed %v after the deadline, want within [0, %v]\nguard log:\n%s", late, guardLateness, log)
	}
}

// The fence guard process removes the VIPs when its daemon is gone, even when the daemon died
// while the guard was starting: its "ready" then goes to a closed pipe (SIGPIPE must not kill it)
// and its stdin is at EOF.
func TestFenceGuardReleasesWhenDaemonDiedDuringStart(t *testing.T) {
	g := startFenceGuard(t, false)
	// The "daemon" is dead before the guard gets going: both ends of its pipes are closed.
	g.outR.Close()
	g.exit(t)
	if g.bound(t) {
		t.Fatalf("VIP still bound after the guard's daemon died\nguard log:\n%s", g.stderr.String())
	}
	if !strings.Contains(g.stderr.String(), "fence guard removed the VIPs") {
		t.Errorf("guard did not say it removed the VIPs:\n%s", g.stderr.String())
	}
}

// A stopped daemon (SIGSTOP, a frozen cgroup) keeps its end of the pipe open and says nothing: the
// guard removes the VIPs at the deadline of the last hold, within guardLateness, not before.
func TestFenceGuardReleasesAtTheDeadlineOfAStoppedDaemon(t *testing.T) {
	g := startFenceGuard(t, true)
	const validity = 600 * time.Millisecond
	var until time.Time
	tick := time.NewTicker(150 * time.Millisecond) // the daemon renews, a keepalive cadence
	for range 5 {
		until = time.Now().Add(validity)
		if err := g.conn.Hold(guardInst, until); err != nil {
			t.Fatal(err)
		}
		<-tick.C
	}
	tick.Stop() // and stops: SIGSTOP
	checkRelease(t, g.removed(t, 5*time.Second), until, g.stderr.String())
	g.exit(t) // the guard's log goes through its non-blocking sink: complete once it has exited
	if !strings.Contains(g.stderr.String(), "did not renew its hold before the deadline") {
		t.Errorf("guard log does not say why it released:\n%s", g.stderr.String())
	}
}

// The deadline in a hold is an instant, not a duration counted from when the guard reads it: a line
// that reaches the guard late (the daemon's write was held up, the guard was not scheduled) still
// releases at its deadline. A guard that counted from the read would release 300 ms late.
func TestFenceGuardLateHoldDoesNotExtendTheDeadline(t *testing.T) {
	g := startFenceGuard(t, true)
	until := time.Now().Add(500 * time.Millisecond)
	r, w, err := os.Pipe() // the line is made now and reaches the guard 300 ms later
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	c, err := fencing.NewGuardConn(w)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hold(guardInst, until); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	late := time.NewTimer(300 * time.Millisecond) // the scenario's delay, not synchronisation
	<-late.C
	_ = g.stdin.SetWriteDeadline(time.Time{}) // the GuardConn's last write left one
	if _, err := g.stdin.WriteString(line); err != nil {
		t.Fatal(err)
	}
	checkRelease(t, g.removed(t, 5*time.Second), until, g.stderr.String())
	g.exit(t)
}

// The guard ignores SIGINT and SIGTERM (a Ctrl-C or a service stop is for the daemon, which
// releases in order): after both, it still holds until the deadline of a hold sent afterwards, and
// exits 0 at EOF.
func TestFenceGuardIgnoresSIGINTAndSIGTERM(t *testing.T) {
	g := startFenceGuard(t, true)
	ignored, err := ignoredSignals(g.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE} {
		if ignored&(1<<(sig-1)) == 0 {
			t.Errorf("the guard does not ignore %v (SigIgn %#x)", sig, ignored)
		}
	}
	if err := g.conn.Hold(guardInst, time.Time{}); err != nil { // held, no deadline
		t.Fatal(err)
	}
	// To the process and to its group, as a terminal's Ctrl-C and systemd's stop would.
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		if err := syscall.Kill(g.cmd.Process.Pid, sig); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(-g.cmd.Process.Pid, sig); err != nil {
			t.Fatal(err)
		}
	}
	until := time.Now().Add(300 * time.Millisecond)
	if err := g.conn.Hold(guardInst, until); err != nil {
		t.Fatalf("the guard's pipe after the signals: %v", err)
	}
	checkRelease(t, g.removed(t, 5*time.Second), until, g.stderr.String())
	g.exit(t)
}

// ignoredSignals returns the SigIgn mask of process pid.
func ignoredSignals(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "SigIgn:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no SigIgn in /proc/pid/status")
}

// One guard serves every instance of the daemon: when one instance's deadline passes, the guard
// removes that instance's VIPs only (the other instance, renewing, keeps its own on the same
// device); when the daemon dies, it removes the rest.
func TestFenceGuardReleasesOnlyTheInstanceWhoseDeadlinePassed(t *testing.T) {
	g := startFenceGuard(t, true)
	other := netip.MustParsePrefix("192.0.2.101/24")
	g.ns.Run(t, "ip", "addr", "add", other.String(), "dev", "eth0")
	if err := g.conn.VIPs("db", "eth0", []netip.Prefix{other}); err != nil {
		t.Fatal(err)
	}
	if err := g.conn.Hold("db", time.Time{}); err != nil { // VRRP: no deadline
		t.Fatal(err)
	}
	until := time.Now().Add(300 * time.Millisecond)
	if err := g.conn.Hold(guardInst, until); err != nil {
		t.Fatal(err)
	}
	checkRelease(t, g.removed(t, 5*time.Second), until, g.stderr.String())
	addrs := g.ns.Run(t, "ip", "-o", "addr", "show", "dev", "eth0")
	if !strings.Contains(addrs, other.Addr().String()+"/") {
		t.Fatalf("db's VIP went with web's deadline:\n%s\nguard log:\n%s", addrs, g.stderr.String())
	}
	g.exit(t)
	if addrs := g.ns.Run(t, "ip", "-o", "addr", "show", "dev", "eth0"); strings.Contains(addrs, other.Addr().String()+"/") {
		t.Fatalf("db's VIP still bound after the daemon died:\n%s", addrs)
	}
	if log := g.stderr.String(); !strings.Contains(log, `"instance": "web"`) {
		t.Errorf("the guard's log does not name the instance:\n%s", log)
	}
}
