package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"

	"github.com/hacoord/hacoord/election"
)

// fakeState is what a statusWriter under test snapshots; block makes the snapshot hang (a wedged
// netlink call, a slow disk).
type fakeState struct {
	mu    sync.Mutex
	st    Status
	snaps int
	block chan struct{} // non-nil: snap waits for it to close
}

func (f *fakeState) snap() Status {
	f.mu.Lock()
	block := f.block
	f.mu.Unlock()
	if block != nil {
		<-block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snaps++
	return f.st
}

func (f *fakeState) set(change func(*Status)) {
	f.mu.Lock()
	change(&f.st)
	f.mu.Unlock()
}

func readStatus(t *testing.T, path string) Status {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// The status file is written when its content changes, not every second: at once when told, within
// statusPoll of a change nobody told of (a VIP removed by hand, IPVS health), and never for nothing.
func TestStatusWrittenOnChangeOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s.json")
		f := &fakeState{st: Status{Group: "web", Node: "n1", Role: "backup", BoundVIPs: []string{}}}
		w := newStatusWriter(path, f.snap, zap.NewNop())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { w.run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done }) // a failed test leaves nothing blocked
		synctest.Wait()
		start := time.Now()
		if st := readStatus(t, path); st.Role != "backup" || !st.Updated.Equal(start.UTC()) {
			t.Fatalf("first status %+v, want backup written at start", st)
		}

		time.Sleep(time.Minute) // nothing changes: no write
		synctest.Wait()
		if st := readStatus(t, path); !st.Updated.Equal(start.UTC()) {
			t.Fatalf("status rewritten at %v with nothing changed", st.Updated.Sub(start))
		}

		f.set(func(s *Status) { s.Role, s.Promoted = "master", true })
		w.changed() // the Coordinator's OnChange
		synctest.Wait()
		if st := readStatus(t, path); st.Role != "master" || !st.Promoted || !st.Updated.Equal(time.Now().UTC()) {
			t.Fatalf("status after a told change %+v, want master written at once", st)
		}

		changedAt := time.Now()
		f.set(func(s *Status) { s.Eligible = true }) // nobody tells the writer
		time.Sleep(statusPoll)
		synctest.Wait()
		if st := readStatus(t, path); !st.Eligible || st.Updated.Sub(changedAt) > statusPoll {
			t.Fatalf("status %+v, want the untold change within %v", st, statusPoll)
		}
		cancel()
		<-done
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("status file left after the daemon stopped: %v", err)
		}
	})
}

// Telling the writer never blocks, however stuck the writer is (the Coordinator's loop tells it);
// what was told meanwhile comes out as one write of the latest state.
func TestStatusChangedNeverBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s.json")
		f := &fakeState{st: Status{Role: "backup", BoundVIPs: []string{}}}
		w := newStatusWriter(path, f.snap, zap.NewNop())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { w.run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done }) // a failed test leaves nothing blocked
		synctest.Wait()
		unblock := make(chan struct{})
		f.set(func(*Status) {})
		f.mu.Lock()
		f.block = unblock
		f.mu.Unlock()
		w.changed() // the writer takes this one and hangs in snap
		synctest.Wait()
		for i := range 1000 {
			f.set(func(s *Status) { s.Term = uint64(i) })
			w.changed() // must return at once
		}
		f.mu.Lock()
		f.block = nil
		snaps := f.snaps
		f.mu.Unlock()
		close(unblock)
		synctest.Wait()
		if st := readStatus(t, path); st.Term != 999 {
			t.Fatalf("status term %d, want the latest (999)", st.Term)
		}
		f.mu.Lock()
		if n := f.snaps - snaps; n > 2 {
			t.Errorf("%d snapshots for 1000 changes told while the writer was stuck, want at most 2", n)
		}
		f.mu.Unlock()
		cancel()
		<-done
	})
}

// hacoord status prints the daemon's snapshot, fails without one, and fails when the daemon that
// wrote it was killed (the file is left behind) or is stopped.
func TestStatusCommand(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.json")
	code, _, stderr := runCLI(t, "status", "--status-file", p)
	if code != exitError || !strings.Contains(stderr, "is the daemon") {
		t.Fatalf("missing file: exit %d, %q", code, stderr)
	}
	st := Status{Group: "web", Node: "n1", Role: "master", Term: 7, PID: os.Getpid(), Updated: time.Now().Add(-time.Hour).UTC(), BoundVIPs: []string{"10.0.0.100/24"}}
	if err := writeJSONFile(p, st); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, "status", "--status-file", p)
	var back Status
	if code != exitOK || json.Unmarshal([]byte(out), &back) != nil || back.Role != "master" || back.Term != 7 {
		t.Fatalf("an hour-old snapshot of a running daemon: exit %d, out %q, stderr %q; want it printed", code, out, stderr)
	}

	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	st.PID = gone.Process.Pid
	if err := writeJSONFile(p, st); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr = runCLI(t, "status", "--status-file", p); code != exitError || !strings.Contains(stderr, "is not running") {
		t.Fatalf("killed daemon: exit %d, %q", code, stderr)
	}

	stopped := exec.Command("sleep", "60")
	if err := stopped.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stopped.Process.Kill(); _ = stopped.Wait() }()
	if err := stopped.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !processStopped(t, stopped.Process.Pid) { // the stop is delivered asynchronously
		if time.Now().After(deadline) {
			t.Fatal("sleep did not stop")
		}
		time.Sleep(10 * time.Millisecond) // polling another process's state
	}
	st.PID = stopped.Process.Pid
	if err := writeJSONFile(p, st); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr = runCLI(t, "status", "--status-file", p); code != exitError || !strings.Contains(stderr, "is stopped") {
		t.Fatalf("stopped daemon: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(p + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
}

func processStopped(t *testing.T, pid int) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && (b[i+2] == 'T' || b[i+2] == 't')
}

// gateElector is an Elector a Gate can withdraw (the quorum backends).
type gateElector struct{}

func (gateElector) Run(context.Context, *election.Outbox) error { return nil }
func (gateElector) SetEligible(bool)                            {}

// A health verdict reaches the status file at once, told by the Gate (as the daemon wires it), with
// no poll: the writer's timer never fires in this test.
func TestStatusToldOfHealthChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, err := election.NewGate(gateElector{}, 100, []election.Check{{Name: "nginx", Up: true}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "s.json")
		snap := func() Status {
			eligible, _ := g.Eligible()
			return Status{Role: "master", Eligible: eligible, Checks: g.Verdicts(), BoundVIPs: []string{}}
		}
		w := newStatusWriter(path, snap, zap.NewNop())
		g.OnChange(w.changed)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { w.run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		synctest.Wait()
		if st := readStatus(t, path); !st.Eligible || !st.Checks["nginx"] {
			t.Fatalf("first status %+v, want eligible, nginx passing", st)
		}
		time.Sleep(statusPoll / 2)
		g.Set("nginx", false)
		synctest.Wait()
		if st := readStatus(t, path); st.Eligible || st.Checks["nginx"] || !st.Updated.Equal(time.Now().UTC()) {
			t.Fatalf("status after the check failed %+v, want ineligible, written at once", st)
		}
	})
}
