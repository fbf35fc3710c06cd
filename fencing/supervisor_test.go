package fencing

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeGuard is a guard process that says ready and appends every line it reads to a file.
func fakeGuard(t *testing.T) ([]string, string) {
	t.Helper()
	log := filepath.Join(t.TempDir(), "lines")
	return []string{"sh", "-c", `echo ready; while read l; do echo "$l" >> "$0"; done`, log}, log
}

// startFake starts a Supervisor of a fakeGuard and returns it with the file of the lines its guards
// read; it is closed when the test ends, if the test has not closed it.
func startFake(t *testing.T) (*Supervisor, string) {
	t.Helper()
	argv, log := fakeGuard(t)
	s, err := StartSupervisor(argv, os.Stderr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, log
}

// must fails the test at the first of errs that is not nil.
func must(t *testing.T, errs ...error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// holdNs matches the deadline of a hold line, which the tests abbreviate.
var holdNs = regexp.MustCompile(`^(hold \S+) [0-9]+$`)

// lines returns the lines the fake guards read, the deadlines of holds replaced by "T".
func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" {
			out = append(out, holdNs.ReplaceAllString(l, "$1 T"))
		}
	}
	return out
}

// rawLines returns the lines the fake guards read, as they are.
func rawLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// waitLines waits (at most 5s) until the guard's file has n lines and returns them.
func waitLines(t *testing.T, path string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got := lines(t, path); len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(5 * time.Millisecond) // polling a file another process writes
	}
}

func killGuard(t *testing.T, s *Supervisor) int {
	t.Helper()
	s.mu.Lock()
	pid, exited := s.cmd.Process.Pid, s.exited
	s.mu.Unlock()
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	return pid
}

func wantLines(t *testing.T, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("the guards read\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The guard hears each line in order, naming its instance; Close ends it (its stdin closes) and
// waits.
func TestSupervisorTellsTheGuard(t *testing.T) {
	s, log := startFake(t)
	if err := s.VIPs("web", "eth0", []netip.Prefix{netip.MustParsePrefix("192.0.2.10/24")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Hold("web", time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.Release("web"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	select {
	case <-s.exited:
	default:
		t.Fatal("Close returned before the guard exited")
	}
	wantLines(t, lines(t, log), []string{"vips web eth0 192.0.2.10/24", "hold web T", "release web"})
}

// A guard that died is restarted at the next command, and first hears what every instance holds:
// its VIPs, IPVS and candidacy, and the hold of those that hold.
func TestSupervisorRestartsADeadGuardAndReplaysEveryInstance(t *testing.T) {
	s, log := startFake(t)
	p := netip.MustParsePrefix
	must(t,
		s.VIPs("web", "eth0", []netip.Prefix{p("192.0.2.10/24")}),
		s.VIPs("web", "eth1", []netip.Prefix{p("198.51.100.10/24")}),
		s.VIPs("db", "eth0", []netip.Prefix{p("192.0.2.20/24")}),
		s.IPVS("web", []string{"TCP/192.0.2.10:80"}),
		s.Candidacy("db", "lease-1"),
		s.Hold("web", time.Now().Add(time.Hour)),
		s.Hold("db", time.Now().Add(time.Hour)),
		s.Release("db"),
	)
	first := waitLines(t, log, 8)
	holdWeb := rawLines(t, log)[5]
	pid := killGuard(t, s)
	if err := s.Hold("web", time.Now().Add(2*time.Hour)); err != nil {
		t.Fatalf("Hold after the guard died: %v", err)
	}
	s.mu.Lock()
	newPid := s.cmd.Process.Pid
	s.mu.Unlock()
	if newPid == pid {
		t.Fatal("the guard was not restarted")
	}
	s.Close()
	got := lines(t, log)
	wantLines(t, got[len(first):], []string{
		"vips web eth0 192.0.2.10/24", "vips web eth1 198.51.100.10/24", "ipvs web TCP/192.0.2.10:80", "hold web T",
		"vips db eth0 192.0.2.20/24", "candidacy db lease-1",
		"hold web T",
	})
	// The replayed hold names the same instant (each connection maps it to CLOCK_MONOTONIC anew).
	raw := rawLines(t, log)
	var x, y int64
	_, errA := fmt.Sscanf(holdWeb, "hold web %d", &x)
	_, errB := fmt.Sscanf(raw[len(first)+3], "hold web %d", &y)
	if errA != nil || errB != nil || time.Duration(x-y).Abs() >= time.Millisecond {
		t.Fatalf("replayed %q for %q", raw[len(first)+3], holdWeb)
	}
}

// A guard that never says ready is no guard: starting it fails, and it is killed.
func TestSupervisorRefusesAGuardThatIsNotReady(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	_, err := startSupervisor([]string{"sh", "-c", `echo $$ > "$0"; exec sleep 60`, pidFile}, os.Stderr, nil, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "not ready after 200ms") {
		t.Fatalf("start = %v, want not ready", err)
	}
	b, _ := os.ReadFile(pidFile)
	var pid int
	if _, perr := fmt.Sscan(strings.TrimSpace(string(b)), &pid); perr == nil && syscall.Kill(pid, 0) == nil {
		t.Errorf("the guard that was not ready (pid %d) is still running", pid)
	}
}

// A restarted guard hears the candidacy named last (and no hold: the instance is releasing):
// should the daemon die now, the new guard knows what to end.
func TestSupervisorReplaysTheCandidacy(t *testing.T) {
	s, log := startFake(t)
	must(t, s.Candidacy("a", "lease-1"), s.Candidacy("a", "lease-2"), s.Hold("a", time.Now().Add(time.Hour)))
	waitLines(t, log, 3)
	killGuard(t, s)
	if err := s.Release("a"); err != nil {
		t.Fatalf("Release after the guard died: %v", err)
	}
	s.Close()
	wantLines(t, lines(t, log), []string{"candidacy a lease-1", "candidacy a lease-2", "hold a T", "candidacy a lease-2", "release a"})
}

// The VIPs of an instance may change while it holds them (a reload), the daemon binding the new and
// removing the old in any order: until the instance's next release the guard removes the old ones
// too, and a restarted guard hears the same; after the release, only the latest.
func TestSupervisorKeepsReplacedVIPsUntilTheRelease(t *testing.T) {
	s, log := startFake(t)
	p := netip.MustParsePrefix
	a, b, c := p("192.0.2.1/24"), p("192.0.2.2/24"), p("192.0.2.3/24")
	must(t,
		s.VIPs("web", "eth0", []netip.Prefix{a, b}),
		s.Hold("web", time.Now().Add(time.Hour)),
		s.VIPs("web", "eth0", []netip.Prefix{b, c}), // a removed, c added, while master
	)
	n := len(waitLines(t, log, 3))
	killGuard(t, s)
	if err := s.Release("web"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	wantLines(t, lines(t, log)[n:], []string{
		"vips web eth0 192.0.2.1/24 192.0.2.2/24 192.0.2.3/24", // replayed to the new guard (no hold: releasing)
		"release web", "vips web eth0 192.0.2.2/24 192.0.2.3/24",
	})
	wantLines(t, lines(t, log)[:n], []string{
		"vips web eth0 192.0.2.1/24 192.0.2.2/24", "hold web T", "vips web eth0 192.0.2.1/24 192.0.2.2/24 192.0.2.3/24",
	})
}
