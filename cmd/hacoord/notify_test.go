package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/internal/etcdtest"
	"github.com/hacoord/hacoord/internal/testenv"
)

// fakeNotifySocket listens on a unixgram socket in a temp dir, as systemd does, points
// NOTIFY_SOCKET at it (and the watchdog variables at this process, with watchdog), and returns
// the datagrams it receives.
func fakeNotifySocket(t *testing.T, watchdog time.Duration) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	if watchdog > 0 {
		t.Setenv("WATCHDOG_USEC", strconv.FormatInt(watchdog.Microseconds(), 10))
		t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	}
	ch, done := make(chan string, 1024), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			select {
			case ch <- string(buf[:n]):
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() { close(done); conn.Close(); wg.Wait() })
	return ch
}

// expect reads datagrams until one satisfies ok, and fails after timeout; it returns the others.
func expect(t *testing.T, ch <-chan string, timeout time.Duration, what string, ok func(string) bool) []string {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var seen []string
	for {
		select {
		case m := <-ch:
			if ok(m) {
				return seen
			}
			seen = append(seen, m)
		case <-deadline.C:
			t.Fatalf("no %s within %v; received %q", what, timeout, seen)
		}
	}
}

// fakeLoop is a Coordinator as the notifier sees it: a Status and a loop that turns (LastTurn
// is now) until wedged.
type fakeLoop struct {
	mu          sync.Mutex
	st          election.Status
	wedgedAt    time.Time
	neverTurned bool // LastTurn is zero: Run has not started
}

func (f *fakeLoop) Status() election.Status { f.mu.Lock(); defer f.mu.Unlock(); return f.st }

func (f *fakeLoop) LastTurn() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.neverTurned {
		return time.Time{}
	}
	if !f.wedgedAt.IsZero() {
		return f.wedgedAt
	}
	return time.Now()
}

func (f *fakeLoop) set(st election.Status) { f.mu.Lock(); f.st = st; f.mu.Unlock() }
func (f *fakeLoop) notStarted(on bool)     { f.mu.Lock(); f.neverTurned = on; f.mu.Unlock() }
func (f *fakeLoop) wedge(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.wedgedAt = time.Time{}
	if on {
		f.wedgedAt = time.Now().Add(-wedgedAfter) // stuck for a while already
	}
}

// The notify protocol over a fake NOTIFY_SOCKET: WATCHDOG=1 every half watchdog period while
// the loops turn, READY=1 only once every instance knows its state, STATUS= with role and term,
// no WATCHDOG=1 while a loop is wedged (and again once it turns), STOPPING=1 at the end.
func TestSystemdNotifyProtocol(t *testing.T) {
	ch := fakeNotifySocket(t, 200*time.Millisecond)
	a, b := &fakeLoop{}, &fakeLoop{}
	core, logs := observer.New(zap.InfoLevel)
	n := newSdNotifier([]namedLoop{{"a", a}, {"b", b}}, zap.New(core))
	if n == nil || n.watchdog != 200*time.Millisecond || n.tick != 100*time.Millisecond {
		t.Fatalf("notifier %+v: want one with a 200ms watchdog pinging every 100ms", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	defer func() { cancel(); <-done }()

	pings := 0
	a.notStarted(true) // the instances have not started yet: not wedged
	b.notStarted(true)
	seen := expect(t, ch, 5*time.Second, "three watchdog pings", func(m string) bool {
		if m == "WATCHDOG=1" {
			pings++
		}
		return pings == 3
	})
	for _, m := range seen {
		if m == "READY=1" {
			t.Fatalf("READY=1 before any instance knew its state: %q", seen)
		}
	}

	if logs.FilterMessageSnippet("wedged").Len() > 0 {
		t.Fatal("loops that have not started yet were called wedged")
	}
	a.notStarted(false)
	b.notStarted(false)
	a.set(election.Status{State: election.State{Role: election.Backup, Term: 7, Leader: election.Record{Node: "n2", Term: 7}}})
	n.changed()
	b.set(election.Status{State: election.State{Role: election.Master, Term: 9}, Promoted: true})
	n.changed()
	expect(t, ch, 5*time.Second, "READY=1", func(m string) bool { return m == "READY=1" })
	expect(t, ch, 5*time.Second, "STATUS= with both roles", func(m string) bool {
		return m == "STATUS=a: backup, master n2 term 7; b: master, term 9"
	})

	b.wedge(true)
	deadline := time.NewTimer(5 * time.Second)
	poll := time.NewTicker(20 * time.Millisecond)
	for logs.FilterMessageSnippet("wedged").Len() == 0 {
		select {
		case <-ch:
		case <-poll.C:
		case <-deadline.C:
			t.Fatal("the notifier never saw the wedged loop")
		}
	}
	poll.Stop()
	if f := logs.FilterMessageSnippet("wedged").All()[0].ContextMap(); f["instance"] != "b" {
		t.Fatalf("wedge logged for %v, want instance b", f)
	}
	// Ten watchdog periods' worth of silence: systemd would have restarted the daemon.
	quiet := time.NewTimer(2 * time.Second)
	for waiting := true; waiting; {
		select {
		case m := <-ch:
			if m == "WATCHDOG=1" {
				t.Fatal("WATCHDOG=1 sent while a Coordinator loop was wedged")
			}
		case <-quiet.C:
			waiting = false
		}
	}
	b.wedge(false)
	expect(t, ch, 5*time.Second, "WATCHDOG=1 once the loop turns again", func(m string) bool { return m == "WATCHDOG=1" })
	cancel()
	expect(t, ch, 5*time.Second, "STOPPING=1", func(m string) bool { return m == "STOPPING=1" })
}

// Without NOTIFY_SOCKET nothing is set up.
func TestSystemdNotifyOffWithoutSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if n := newSdNotifier(nil, zap.NewNop()); n != nil {
		t.Fatal("a notifier without NOTIFY_SOCKET")
	}
}

// The real daemon under a fake systemd: READY=1 once it knows its state (master of a one-node
// group), STATUS= with its role and term, watchdog pings, STOPPING=1 when told to stop.
func TestDaemonTellsSystemd(t *testing.T) {
	testenv.RequireRoot(t)
	ch := fakeNotifySocket(t, time.Second)
	srv := etcdtest.Start(t)
	a, _ := twoNodes(t)
	n := startNode(t, a, "n1", "http://"+srv.Endpoints()[0], etcdWebNode)
	seen := expect(t, ch, 15*time.Second, "READY=1", func(m string) bool { return m == "READY=1" })
	expect(t, ch, 15*time.Second, "STATUS= master", func(m string) bool {
		return strings.HasPrefix(m, "STATUS=web: master, term ")
	})
	if n.status(t, "web").Role == "" {
		t.Fatalf("READY=1 before the status file knew a role; before it: %q", seen)
	}
	expect(t, ch, 5*time.Second, "WATCHDOG=1", func(m string) bool { return m == "WATCHDOG=1" })
	n.exit(t)
	expect(t, ch, 5*time.Second, "STOPPING=1", func(m string) bool { return m == "STOPPING=1" })
}
