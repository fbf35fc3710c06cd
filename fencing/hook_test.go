package fencing

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHookGetsTokenAndArgs(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	h := Hook{Path: script(t, `echo "$1 $2 $3 $4 $HACOORD_TERM $HACOORD_REASON" > `+out), Timeout: 5 * time.Second}
	if err := h.Run(t.Context(), Event{Group: "web", Node: "n1", Role: "master", Term: 42, Reason: "elected"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	if got := strings.TrimSpace(string(b)); got != "web n1 master 42 42 elected" {
		t.Fatalf("hook saw %q", got)
	}
}

// The fence hook run for a conflict is told which host answers for which VIP.
func TestHookGetsConflict(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	h := Hook{Path: script(t, `echo "$HACOORD_REASON $HACOORD_CONFLICT" > `+out), Timeout: 5 * time.Second}
	e := Event{Role: "master", Reason: "conflict", Conflict: "10.0.0.100/24=02:00:00:00:00:99"}
	if err := h.Run(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	if got := strings.TrimSpace(string(b)); got != "conflict 10.0.0.100/24=02:00:00:00:00:99" {
		t.Fatalf("hook saw %q", got)
	}
}

func TestHookFailureCarriesOutput(t *testing.T) {
	h := Hook{Path: script(t, `echo "storage refuses token $HACOORD_TERM"; exit 3`)}
	err := h.Run(t.Context(), Event{Role: "master", Term: 7})
	if err == nil || !strings.Contains(err.Error(), "storage refuses token 7") {
		t.Fatalf("err = %v, want the hook's output", err)
	}
}

// A hook that outlives its timeout is killed with its whole process group: its children too, not
// only the shell (whose orphans would otherwise go on, and Run would return anyway after
// WaitDelay). The hook records its children's PIDs; after Run, each must be gone.
func TestHookTimeoutKillsProcessGroup(t *testing.T) {
	pids := filepath.Join(t.TempDir(), "pids")
	h := Hook{Path: script(t, `sleep 60 & echo $! >> `+pids+`
sleep 60 & echo $! >> `+pids+`
wait`), Timeout: time.Second}
	start := time.Now()
	err := h.Run(t.Context(), Event{Role: "master", Term: 1})
	if err == nil {
		t.Fatal("a hung hook did not fail")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("hung hook held the caller for %v", d)
	}
	b, rerr := os.ReadFile(pids)
	children := strings.Fields(string(b))
	if rerr != nil || len(children) != 2 {
		t.Fatalf("the hook had not started its two children by its timeout: %q, %v", b, rerr)
	}
	for _, c := range children {
		pid, err := strconv.Atoi(c)
		if err != nil {
			t.Fatal(err)
		}
		// SIGKILL is delivered at once, but the process goes away as its exit completes: wait for
		// that, with a deadline.
		deadline := time.Now().Add(5 * time.Second)
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("the hook's child %d is still running after the hook timed out", pid)
			}
			time.Sleep(10 * time.Millisecond) // polling another process's state
		}
	}
}

// alive reports whether process pid exists and is not a zombie (a killed orphan waits as a zombie
// until its new parent reaps it).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may contain spaces, the state follows the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || (b[i+2] != 'Z' && b[i+2] != 'X')
}

func TestNotifierRunsInOrderAndDrainsOnStop(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	n, err := NewNotifier(Hook{Path: script(t, `echo "$3 $4" >> `+out), Timeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	n.Notify(Event{Role: "master", Term: 1})
	n.Notify(Event{Role: "backup", Term: 1})
	cancel() // events queued before the stop still run
	if err := n.Run(ctx); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	if got := string(b); got != "master 1\nbackup 1\n" {
		t.Fatalf("notify order = %q", got)
	}
}

func TestDeadlineAndMargin(t *testing.T) {
	sent := time.Now()
	if d := Deadline(sent, 2*time.Second, DefaultMargin(2*time.Second)); d.Sub(sent) != 1800*time.Millisecond {
		t.Fatalf("deadline = sent+%v, want 1.8s", d.Sub(sent))
	}
	for ttl, want := range map[time.Duration]time.Duration{time.Second: 100 * time.Millisecond, 30 * time.Second: time.Second, 5 * time.Second: 500 * time.Millisecond} {
		if got := DefaultMargin(ttl); got != want {
			t.Errorf("DefaultMargin(%v) = %v, want %v", ttl, got, want)
		}
	}
	if CheckMargin(2*time.Second, 1500*time.Millisecond) == nil || CheckMargin(2*time.Second, 0) == nil || CheckMargin(2*time.Second, 200*time.Millisecond) != nil {
		t.Fatal("CheckMargin accepts or refuses the wrong margins")
	}
}

// The fence hook is told which node was master before, and which attempt this is.
func TestHookGetsPreviousMaster(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	h := Hook{Path: script(t, `echo "$HACOORD_PREVIOUS_MASTER $HACOORD_PREVIOUS_ADDRESS $HACOORD_ATTEMPT" > `+out), Timeout: 5 * time.Second}
	e := Event{Role: "master", PreviousMaster: "n1", PreviousAddress: "192.0.2.1", Attempt: 2}
	if err := h.Run(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	if got := strings.TrimSpace(string(b)); got != "n1 192.0.2.1 2" {
		t.Fatalf("hook saw %q", got)
	}
}
