package fencing

import (
	"fmt"
	"os"
	"path/filepath"
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

func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(strings.ReplaceAll(string(b), "hold ", "hold:"))
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

// The guard hears each hold and release in order; Close ends it (its stdin closes) and waits.
func TestSupervisorTellsTheGuard(t *testing.T) {
	argv, log := fakeGuard(t)
	s, err := StartSupervisor(argv, os.Stderr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Hold(time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	select {
	case <-s.exited:
	default:
		t.Fatal("Close returned before the guard exited")
	}
	got := lines(t, log)
	if len(got) != 2 || !strings.HasPrefix(got[0], "hold:") || got[1] != "release" {
		t.Fatalf("the guard read %q, want a hold then a release", got)
	}
}

// A guard that died is restarted at the next command, and first hears the hold it was watching.
func TestSupervisorRestartsADeadGuardAndReplaysTheHold(t *testing.T) {
	argv, log := fakeGuard(t)
	s, err := StartSupervisor(argv, os.Stderr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Hold(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	first := waitLines(t, log, 1) // the first guard has read it
	s.mu.Lock()
	pid, exited := s.cmd.Process.Pid, s.exited
	s.mu.Unlock()
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	if err := s.Hold(time.Now().Add(2 * time.Hour)); err != nil {
		t.Fatalf("Hold after the guard died: %v", err)
	}
	s.mu.Lock()
	newPid := s.cmd.Process.Pid
	s.mu.Unlock()
	if newPid == pid {
		t.Fatal("the guard was not restarted")
	}
	if err := s.Release(); err != nil { // the restarted guard has read both holds before this
		t.Fatal(err)
	}
	s.Close()
	got := lines(t, log)
	// The replayed hold names the same instant (each connection maps it to CLOCK_MONOTONIC anew).
	same := func(a, b string) bool {
		var x, y int64
		_, errA := fmt.Sscanf(a, "hold:%d", &x)
		_, errB := fmt.Sscanf(b, "hold:%d", &y)
		return errA == nil && errB == nil && time.Duration(x-y).Abs() < time.Millisecond
	}
	if len(first) != 1 || len(got) != 4 || !same(got[1], first[0]) || same(got[2], first[0]) || got[3] != "release" {
		t.Fatalf("the guards read %q (first %q); want the first hold, it again from the new guard, the new hold, a release", got, first)
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

// A restarted guard hears the candidacy named last first (and no hold: the daemon is releasing):
// should the daemon die now, the new guard knows what to end.
func TestSupervisorReplaysTheCandidacy(t *testing.T) {
	argv, log := fakeGuard(t)
	s, err := StartSupervisor(argv, os.Stderr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Candidacy("lease-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Candidacy("lease-2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Hold(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	waitLines(t, log, 5) // "candidacy lease-1" "candidacy lease-2" "hold:..." as fields
	s.mu.Lock()
	pid, exited := s.cmd.Process.Pid, s.exited
	s.mu.Unlock()
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	if err := s.Release(); err != nil {
		t.Fatalf("Release after the guard died: %v", err)
	}
	s.Close()
	got := lines(t, log)
	want := []string{"candidacy", "lease-1", "candidacy", "lease-2", "hold:", "candidacy", "lease-2", "release"}
	if len(got) != len(want) {
		t.Fatalf("the guards read %q, want %q (holds abbreviated)", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Fatalf("the guards read %q, want %q (holds abbreviated)", got, want)
		}
	}
}
