package main

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/hacoord/hacoord/election"
)

// fakePlanned is an Elector that records the planned moves asked of it.
type fakePlanned struct {
	mu       sync.Mutex
	master   bool
	queued   []string
	resigned int
	to       string
	timeout  time.Duration
	maint    []bool
}

func (f *fakePlanned) Run(ctx context.Context, _ *election.Outbox) error { <-ctx.Done(); return nil }

func (f *fakePlanned) Resign(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.master {
		return election.ErrNotMaster
	}
	f.resigned++
	return nil
}

func (f *fakePlanned) Transfer(_ context.Context, to string, d time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.master {
		return election.ErrNotMaster
	}
	for _, q := range f.queued {
		if q == to {
			f.to, f.timeout = to, d
			return nil
		}
	}
	return election.ErrNoSuchCandidate
}

func (f *fakePlanned) SetMaintenance(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.maint = append(f.maint, on)
}

func controlFixture(t *testing.T, els ...*fakePlanned) (*plan, []*instance) {
	t.Helper()
	dir := t.TempDir()
	p := &plan{node: "h1", control: filepath.Join(dir, "run", "h1.sock"), stateDir: filepath.Join(dir, "state")}
	var insts []*instance
	for i, el := range els {
		name := []string{"web", "db"}[i]
		insts = append(insts, &instance{plan: &instancePlan{name: name, group: name, backend: backendEtcd},
			el: el, log: zaptest.NewLogger(t)})
	}
	return p, insts
}

func listen(t *testing.T, p *plan, insts []*instance) *controlServer {
	t.Helper()
	s, err := listenControl(p, insts, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func call(t *testing.T, path string, req controlRequest) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return controlCall(ctx, path, req)
}

func TestControlSocketOperations(t *testing.T) {
	el := &fakePlanned{master: true, queued: []string{"h2"}}
	p, insts := controlFixture(t, el)
	listen(t, p, insts)
	fi, err := os.Stat(p.control)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("control socket mode %v, want a socket with 0600", fi.Mode())
	}
	if _, err := call(t, p.control, controlRequest{Op: "resign", Group: "web"}); err != nil || el.resigned != 1 {
		t.Fatalf("resign: %v (resigned %d)", err, el.resigned)
	}
	if _, err := call(t, p.control, controlRequest{Op: "transfer", To: "h2", Timeout: "7s"}); err != nil || el.to != "h2" || el.timeout != 7*time.Second {
		t.Fatalf("transfer: %v (to %q, %v)", err, el.to, el.timeout)
	}
	_, err = call(t, p.control, controlRequest{Op: "transfer", To: "h9", Timeout: "7s"})
	if err == nil || !strings.Contains(err.Error(), "--to h9: not a candidate of group web") {
		t.Errorf("transfer to a node not queued: %v", err)
	}
	_, err = call(t, p.control, controlRequest{Op: "resign", Instance: "nope"})
	if err == nil || !strings.Contains(err.Error(), `no instance "nope"`) {
		t.Errorf("unknown instance: %v", err)
	}
	el.master = false
	_, err = call(t, p.control, controlRequest{Op: "resign"})
	if err == nil || !strings.Contains(err.Error(), "h1 is not master of group web") {
		t.Errorf("resign on a backup: %v", err)
	}
}

// Maintenance persists in the state directory and is applied before the election of the next
// daemon starts; off removes it.
func TestControlMaintenancePersists(t *testing.T) {
	el := &fakePlanned{}
	p, insts := controlFixture(t, el)
	s := listen(t, p, insts)
	if _, err := call(t, p.control, controlRequest{Op: "maintenance", On: true}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(p.control); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left after Close: %v", err)
	}
	el2 := &fakePlanned{}
	p2, insts2 := controlFixture(t, el2)
	p2.stateDir, p2.control = p.stateDir, p.control
	listen(t, p2, insts2)
	if len(el2.maint) != 1 || !el2.maint[0] {
		t.Fatalf("restarted daemon: SetMaintenance calls %v, want [true] before the election", el2.maint)
	}
	if _, err := call(t, p2.control, controlRequest{Op: "maintenance", On: false}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(p.stateDir); len(ents) != 0 {
		t.Errorf("state dir after maintenance off: %v", ents)
	}
}

// A socket file its daemon left behind is replaced; a live daemon's is not.
func TestControlSocketStaleAndLive(t *testing.T) {
	p, insts := controlFixture(t, &fakePlanned{})
	if err := os.MkdirAll(filepath.Dir(p.control), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p.control, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // a dead daemon's socket file
	listen(t, p, insts)
	_, err = listenControl(p, insts, zaptest.NewLogger(t))
	if !errors.Is(err, errControlInUse) {
		t.Fatalf("second daemon on the same socket: %v", err)
	}
	_, err = call(t, filepath.Join(filepath.Dir(p.control), "h7.sock"), controlRequest{Op: "resign"})
	if err == nil || !strings.Contains(err.Error(), "no hacoord daemon is running") {
		t.Fatalf("no daemon: %v", err)
	}
}

// A peer whose uid is not the one allowed (root) is refused, by SO_PEERCRED.
func TestControlSocketRefusesOtherUIDs(t *testing.T) {
	el := &fakePlanned{master: true}
	p, insts := controlFixture(t, el)
	s := listen(t, p, insts)
	s.allowUID.Store(uint32(os.Getuid()) + 1)
	_, err := call(t, p.control, controlRequest{Op: "resign"})
	if err == nil || !strings.Contains(err.Error(), "permission denied: only root") {
		t.Fatalf("another uid: %v", err)
	}
	if el.resigned != 0 {
		t.Fatal("a refused peer's request was carried out")
	}
}

// Several instances: the request must name one.
func TestControlSocketPicksTheInstance(t *testing.T) {
	web, db := &fakePlanned{master: true}, &fakePlanned{master: true}
	p, insts := controlFixture(t, web, db)
	listen(t, p, insts)
	_, err := call(t, p.control, controlRequest{Op: "resign"})
	if err == nil || !strings.Contains(err.Error(), "several instances (web, db)") {
		t.Fatalf("unnamed instance: %v", err)
	}
	if _, err := call(t, p.control, controlRequest{Op: "resign", Group: "db"}); err != nil || db.resigned != 1 || web.resigned != 0 {
		t.Fatalf("resign --group db: %v (web %d, db %d)", err, web.resigned, db.resigned)
	}
}

// maintElector is master until put in maintenance, then a backup.
type maintElector struct {
	out   chan *election.Outbox
	maint chan struct{}
}

func (m *maintElector) Run(ctx context.Context, out *election.Outbox) error {
	out.Set(election.State{Role: election.Master, Term: 1, ValidUntil: time.Now().Add(time.Hour), Reason: "elected"})
	select {
	case <-m.maint:
		out.Set(election.State{Role: election.Backup, Term: 1, Reason: "maintenance"})
	case <-ctx.Done():
	}
	<-ctx.Done()
	return nil
}

func (m *maintElector) SetMaintenance(on bool) {
	if on {
		close(m.maint)
	}
}

// hacoord maintenance on returns only once the master has let go of its VIPs (demoted).
func TestControlMaintenanceWaitsForTheDemote(t *testing.T) {
	el := &maintElector{maint: make(chan struct{})}
	promoted, release := make(chan struct{}), make(chan struct{})
	var demoted sync.Once
	act := election.ActionFunc{Name: "vip",
		PromoteFunc: func(context.Context, election.State) error { close(promoted); return nil },
		DemoteFunc: func(context.Context, election.State) error {
			demoted.Do(func() { <-release })
			return nil
		}}
	co, err := election.NewCoordinator(el, []election.Action{act}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := controlFixture(t)
	in := &instance{plan: &instancePlan{name: "web", group: "web", backend: backendEtcd}, el: el, co: co, log: zaptest.NewLogger(t)}
	listen(t, p, []*instance{in})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- co.Run(ctx) }()
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }); cancel(); <-done })
	<-promoted
	answered := make(chan error, 1)
	go func() { _, err := call(t, p.control, controlRequest{Op: "maintenance", On: true}); answered <- err }()
	select {
	case err := <-answered:
		t.Fatalf("maintenance on answered (%v) while the master was still demoting", err)
	case <-time.After(200 * time.Millisecond): // negative check: no answer while Demote blocks
	}
	releaseOnce.Do(func() { close(release) })
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
}
