package main

import (
	"bufio"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hacoord/hacoord/fencing"
	"github.com/hacoord/hacoord/internal/exepages"
	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
)

// guardBin is $HACOORD_GUARD_BIN (make test builds bin/hacoord-guard), else this package built
// into a temporary directory.
func guardBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HACOORD_GUARD_BIN"); p != "" {
		return p
	}
	p := filepath.Join(t.TempDir(), "hacoord-guard")
	out, err := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", p, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return p
}

// vmRSS is the process's VmRSS in bytes.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// The separate guard binary does the guard's work — the daemon it watches died, so it removes the
// VIPs it was told of — in a fraction of the daemon's memory: under 12 MB resident once it watches
// a VIP (the daemon re-executed as its own guard took 17 MB).
func TestGuardBinaryRemovesTheVIPsOfADeadDaemonInLittleMemory(t *testing.T) {
	testenv.RequireRoot(t)
	bin := guardBin(t)
	vipAddr := netip.MustParsePrefix("192.0.2.100/24")
	a, b := netnstest.New(t, "hga"), netnstest.New(t, "hgb")
	if _, _, err := netnstest.Veth(a, "eth0", netip.MustParsePrefix("192.0.2.1/24"), b, "eth0", netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	a.Run(t, "ip", "addr", "add", vipAddr.String(), "dev", "eth0")

	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	conn, err := fencing.NewGuardConn(pw)
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd := a.Command(context.Background(), bin, "--log-level", "debug", "--log-format", "json")
	cmd.Stdin, cmd.Stderr = pr, &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		pw.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != fencing.GuardReady {
		t.Fatalf("guard said %q, %v; want %q\n%s", line, err, fencing.GuardReady, stderr.String())
	}
	if err := conn.VIPs("web", "eth0", []netip.Prefix{vipAddr}); err != nil {
		t.Fatal(err)
	}
	if err := conn.Hold("web", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(a.Run(t, "ip", "-o", "addr", "show", "dev", "eth0"), "192.0.2.100") {
		t.Fatal("VIP not bound before the daemon's death")
	}
	rss := vmRSS(t, cmd.Process.Pid)
	t.Logf("guard VmRSS %.1f MB", float64(rss)/(1<<20))
	if rss > 12<<20 {
		t.Errorf("guard VmRSS %.1f MB, want at most 12 MB", float64(rss)/(1<<20))
	}

	// Once running, the guard gives back the pages of its binary that only start-up touched
	// (exepages.StartupDone): it then holds under 5 MB (6 MB and more without), and still does its
	// work below with the code that needs faulting back in.
	deadline := time.Now().Add(exepages.StartupDone[0] + 20*time.Second)
	for rss = vmRSS(t, cmd.Process.Pid); rss > 5<<20; rss = vmRSS(t, cmd.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatalf("guard VmRSS %.1f MB %v after it started, want at most 5 MB once it gave back its start-up pages", float64(rss)/(1<<20), exepages.StartupDone[0]+20*time.Second)
		}
		time.Sleep(100 * time.Millisecond) // polling /proc: there is no event to wait on
	}
	t.Logf("guard VmRSS %.1f MB once running", float64(rss)/(1<<20))

	start := time.Now()
	pw.Close() // the daemon dies: its end of the pipe closes
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Fatalf("guard exited with %v\n%s", err, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("guard still running 5s after its daemon died\n%s", stderr.String())
	}
	if s := a.Run(t, "ip", "-o", "addr", "show", "dev", "eth0"); strings.Contains(s, "192.0.2.100") {
		t.Fatalf("VIP still bound after the guard exited:\n%s\nguard log:\n%s", s, stderr.String())
	}
	t.Logf("VIP removed and guard exited %v after the daemon's end of the pipe closed", time.Since(start).Round(time.Millisecond))
}

// Bad arguments exit 2 naming the flag, before anything is guarded.
func TestGuardBinaryBadArguments(t *testing.T) {
	bin := guardBin(t)
	for _, args := range [][]string{{"--log-level", "loud"}, {"--log-format", "xml"}, {"extra"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 {
			t.Errorf("hacoord-guard %q: %v, want exit status 2\n%s", args, err, out)
			continue
		}
		want := strings.TrimPrefix(args[0], "--")
		if !strings.Contains(string(out), want) {
			t.Errorf("hacoord-guard %q said %q: want it to name %q", args, out, want)
		}
	}
}

// The guard waits for the daemon's lines in Go's poller, not in a read(2) on its stdin that holds a
// thread in the kernel (every line woke it, and the runtime moved its P away and back).
func TestGuardBinaryWaitsInThePoller(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("reads syscall numbers of x86-64")
	}
	bin := guardBin(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	cmd := exec.Command(bin, "--log-format", "json")
	cmd.Stdin = pr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		pw.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || strings.TrimSpace(line) != fencing.GuardReady {
		t.Fatalf("guard said %q, %v; want %q", line, err, fencing.GuardReady)
	}
	conn, err := fencing.NewGuardConn(pw)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Hold("web", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// Every thread of the idle guard, by the syscall it sleeps in: none in read(2) on fd 0.
	tasks, err := filepath.Glob("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/task/*/syscall")
	if err != nil || len(tasks) == 0 {
		t.Fatalf("no threads listed: %v", err)
	}
	var seen []string
	for range 50 { // the guard may still be handling the hold: look until all its threads sleep
		seen = seen[:0]
		blockedRead, running := false, false
		for _, p := range tasks {
			b, err := os.ReadFile(p)
			if err != nil {
				if os.IsPermission(err) {
					t.Skipf("cannot read %s: %v", p, err)
				}
				continue // a thread that ended
			}
			f := strings.Fields(string(b))
			seen = append(seen, strings.Join(f[:min(2, len(f))], " "))
			switch {
			case len(f) < 2 || f[0] == "running":
				running = true
			case f[0] == "0" && f[1] == "0x0": // read(0, ...) on x86-64
				blockedRead = true
			}
		}
		if !running {
			if blockedRead {
				t.Fatalf("a guard thread sleeps in read(2) on stdin: %q", seen)
			}
			return
		}
		time.Sleep(20 * time.Millisecond) // polling /proc: there is no event to wait on
	}
	t.Fatalf("guard threads never all asleep: %q", seen)
}
