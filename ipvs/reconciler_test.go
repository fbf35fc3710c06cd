package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	cipvs "github.com/cloudflare/ipvs"
	"go.uber.org/zap/zaptest"

	"github.com/hacoord/hacoord/ipvs/check"
	"github.com/hacoord/hacoord/ipvs/ipvstest"
)

// tableConfig has one service of each kind: TCP with persistence, UDP, IPv4 fwmark, IPv6 TCP.
func tableConfig() Config {
	w := func(n uint32) *uint32 { return &n }
	a := netip.MustParseAddr
	cfg := DefaultConfig()
	cfg.ResyncInterval = 0
	cfg.VirtualServers = []VirtualServer{
		{
			Address: a("10.0.0.100"), Port: 80, LBAlgo: "wrr", LBKind: "DR", PersistenceTimeout: 300 * time.Second,
			SorryServer: &SorryServer{Address: a("10.0.0.99")},
			RealServers: []RealServer{{Address: a("10.0.0.11"), Weight: w(1)}, {Address: a("10.0.0.12"), Weight: w(2)}},
		},
		{
			Address: a("10.0.0.100"), Port: 53, Protocol: "UDP", LBAlgo: "rr", OnePacket: true,
			RealServers: []RealServer{{Address: a("10.0.0.21"), Port: 5353}},
		},
		{
			FWMark: 7, LBAlgo: "sh", LBKind: "DR",
			RealServers: []RealServer{{Address: a("10.0.0.31")}},
		},
		{
			Address: a("2001:db8::100"), Port: 443, LBAlgo: "lc", LBKind: "TUN",
			RealServers: []RealServer{{Address: a("2001:db8::11")}, {Address: a("10.0.0.41")}},
		},
	}
	return cfg
}

const tableFormat = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.100:80 wrr persistent 300
  -> 10.0.0.11:80                 Route   1      0          0         
  -> 10.0.0.12:80                 Route   2      0          0         
UDP  10.0.0.100:53 rr ops
  -> 10.0.0.21:5353               Masq    1      0          0         
TCP  [2001:db8::100]:443 lc
  -> 10.0.0.41:443                Tunnel  1      0          0         
  -> [2001:db8::11]:443           Tunnel  1      0          0         
FWM  7 sh
  -> 10.0.0.31:0                  Route   1      0          0         
`

func newFakeReconciler(t *testing.T, cfg Config) (*Reconciler, *ipvstest.Fake) {
	t.Helper()
	fake := ipvstest.NewFake()
	r, err := New(cfg, zaptest.NewLogger(t), WithClient(fake))
	if err != nil {
		t.Fatal(err)
	}
	return r, fake
}

// fastTCP is a TCP check every 10ms that takes a real server out at its first failure.
var fastTCP = check.Config{TCP: &check.TCP{Timing: check.Timing{Interval: 10 * time.Millisecond, Retry: check.Retries(0)}}}

// must fails the test at the first of errs that is not nil.
func must(t *testing.T, errs ...error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// listenRS is a real server for TCP checks: a listener on 127.0.0.1, closed when the test ends.
func listenRS(t *testing.T) (net.Listener, netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, netip.MustParseAddrPort(ln.Addr().String())
}

// natConfig is one NAT virtual server 10.0.0.100 on rs's port (rr) with the real servers rss, and
// no resync while a test runs.
func natConfig(rs netip.AddrPort, rss ...RealServer) Config {
	cfg := DefaultConfig()
	cfg.ResyncInterval = time.Hour
	cfg.VirtualServers = []VirtualServer{{
		Address: netip.MustParseAddr("10.0.0.100"), Port: rs.Port(), LBAlgo: "rr", LBKind: "NAT",
		RealServers: rss,
	}}
	return cfg
}

// fakeRun is a Reconciler running (Run) on a fake kernel for at most 30 seconds, the deadline of its
// waits.
type fakeRun struct {
	t       *testing.T
	r       *Reconciler
	fake    *ipvstest.Fake
	ctx     context.Context
	changed <-chan struct{}
	stop    context.CancelFunc
	errc    chan error
}

// runFake starts a Reconciler of cfg on a fake kernel; end stops it.
func runFake(t *testing.T, cfg Config) *fakeRun {
	t.Helper()
	r, fake := newFakeReconciler(t, cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	fr := &fakeRun{t: t, r: r, fake: fake, ctx: ctx, changed: fake.Changed(), errc: make(chan error, 1)}
	runCtx, stop := context.WithCancel(ctx)
	fr.stop = stop
	go func() { fr.errc <- r.Run(runCtx) }()
	return fr
}

// has reports whether the fake kernel's table, as ipvsadm would print it, contains s.
func (fr *fakeRun) has(s string) bool { return strings.Contains(readFormat(fr.t, fr.fake), s) }

// waitFor waits, on the fake's change notifications, until cond holds.
func (fr *fakeRun) waitFor(what string, cond func() bool) {
	fr.t.Helper()
	for !cond() {
		select {
		case <-fr.changed:
			fr.changed = fr.fake.Changed()
		case <-fr.ctx.Done():
			fr.t.Fatalf("timed out waiting for %s; table:\n%s", what, readFormat(fr.t, fr.fake))
		}
	}
}

// end stops Run and fails the test if it returned an error.
func (fr *fakeRun) end() {
	fr.t.Helper()
	fr.stop()
	if err := <-fr.errc; err != nil {
		fr.t.Fatal(err)
	}
}

func readFormat(t *testing.T, c Client) string {
	t.Helper()
	tab, err := ReadTable(c)
	if err != nil {
		t.Fatal(err)
	}
	return Format(tab)
}

func callStrings(calls []ipvstest.Call) []string {
	var out []string
	for _, c := range calls {
		out = append(out, c.String())
	}
	return out
}

func TestReconcilerProgramsTable(t *testing.T) {
	r, fake := newFakeReconciler(t, tableConfig())
	if st := r.Status(); st.State != StateStandby {
		t.Fatalf("state before Promote %q", st.State)
	}
	if err := r.Promote(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := readFormat(t, fake); got != tableFormat {
		t.Fatalf("table:\n%s\nwant:\n%s", got, tableFormat)
	}
	for _, c := range fake.Calls() {
		if !strings.HasPrefix(c.Method, "Create") || c.Err != nil {
			t.Errorf("unexpected call %s", c)
		}
	}
	// Promote again: nothing to do.
	fake.ResetCalls()
	if err := r.Promote(t.Context()); err != nil {
		t.Fatal(err)
	}
	if calls := fake.Calls(); len(calls) != 0 {
		t.Errorf("second Promote made calls %q", callStrings(calls))
	}
	if st := r.Status(); st.State != StateActive || st.Error != "" || len(st.Services) != 4 || !st.Services[0].Quorum {
		t.Errorf("status %+v", st)
	}
}

func TestReconcilerWeightChangeIsUpdate(t *testing.T) {
	r, fake := newFakeReconciler(t, tableConfig())
	if err := r.Promote(t.Context()); err != nil {
		t.Fatal(err)
	}
	svc := toIPVSService(Service{ServiceKey: ServiceKey{Family: INET, Protocol: TCP, Address: netip.MustParseAddr("10.0.0.100"), Port: 80}})
	if err := fake.SetConns(svc, netip.MustParseAddrPort("10.0.0.11:80"), 4, 2); err != nil {
		t.Fatal(err)
	}
	fake.ResetCalls()
	// A misc_dynamic checker reports weight 9 for 10.0.0.11.
	if err := r.setHealth(0, 0, check.Status{Up: true, Weight: 9}); err != nil {
		t.Fatal(err)
	}
	want := []string{"UpdateDestination TCP 10.0.0.100:80 -> 10.0.0.11:80"}
	if got := callStrings(fake.Calls()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("calls %q, want %q", got, want)
	}
	if got := readFormat(t, fake); !strings.Contains(got, "  -> 10.0.0.11:80                 Route   9      4          2") {
		t.Errorf("updated entry lost its connections:\n%s", got)
	}
}

func TestReconcilerRemovesFailedServer(t *testing.T) {
	cfg := tableConfig()
	inhibit := true
	cfg.VirtualServers[0].RealServers[1].InhibitOnFailure = &inhibit
	cfg.VirtualServers[0].SorryServer = nil
	r, fake := newFakeReconciler(t, cfg)
	if err := r.Promote(t.Context()); err != nil {
		t.Fatal(err)
	}
	fake.ResetCalls()
	failed := check.Status{Up: false, Weight: check.NoWeight, Err: errors.New("connection refused")}
	if err := r.setHealth(0, 0, failed); err != nil {
		t.Fatal(err)
	}
	if err := r.setHealth(0, 1, failed); err != nil { // inhibit_on_failure: weight 0, kept
		t.Fatal(err)
	}
	want := "RemoveDestination TCP 10.0.0.100:80 -> 10.0.0.11:80\nUpdateDestination TCP 10.0.0.100:80 -> 10.0.0.12:80"
	if got := strings.Join(callStrings(fake.Calls()), "\n"); got != want {
		t.Fatalf("calls:\n%s\nwant:\n%s", got, want)
	}
	got := readFormat(t, fake)
	if strings.Contains(got, "10.0.0.11:80 ") || !strings.Contains(got, "  -> 10.0.0.12:80                 Route   0 ") {
		t.Errorf("table:\n%s", got)
	}
	// Alive weight 0 is below quorum 1: reported, but without a sorry server the table stays.
	st := r.Status().Services[0]
	if st.Quorum || st.Sorry || st.AliveWeight != 0 || st.RealServers[0].Error != "connection refused" {
		t.Errorf("status %+v", st)
	}
}

func TestReconcilerSorryServerSwitch(t *testing.T) {
	var mu sync.Mutex
	var changes []QuorumChange
	fake := ipvstest.NewFake()
	r, err := New(tableConfig(), zaptest.NewLogger(t), WithClient(fake), WithQuorumFunc(func(c QuorumChange) {
		mu.Lock()
		defer mu.Unlock()
		changes = append(changes, c)
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Promote(t.Context()); err != nil {
		t.Fatal(err)
	}
	down := check.Status{Up: false, Weight: check.NoWeight}
	_ = r.setHealth(0, 0, down)
	if err := r.setHealth(0, 1, down); err != nil {
		t.Fatal(err)
	}
	got := readFormat(t, fake)
	if !strings.Contains(got, "TCP  10.0.0.100:80 wrr persistent 300\n  -> 10.0.0.99:80                 Route   1 ") ||
		strings.Contains(got, "10.0.0.11:80") || strings.Contains(got, "10.0.0.12:80") {
		t.Fatalf("after all real servers failed:\n%s", got)
	}
	if st := r.Status().Services[0]; st.Quorum || !st.Sorry {
		t.Errorf("status %+v", st)
	}
	if err := r.setHealth(0, 1, check.Status{Up: true, Weight: check.NoWeight}); err != nil {
		t.Fatal(err)
	}
	got = readFormat(t, fake)
	if strings.Contains(got, "10.0.0.99") || !strings.Contains(got, "  -> 10.0.0.12:80                 Route   2 ") {
		t.Fatalf("after recovery:\n%s", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 2 || changes[0].Quorum || !changes[1].Quorum || changes[0].Service != "TCP 10.0.0.100:80" {
		t.Errorf("quorum changes %+v", changes)
	}
}

func TestReconcilerWithdrawOwnsOnlyItsOwn(t *testing.T) {
	fake := ipvstest.NewFake()
	foreignAndAdopted(t, fake)
	r, err := New(tableConfig(), zaptest.NewLogger(t), WithClient(fake))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Promote(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := readFormat(t, fake); !strings.Contains(got, "TCP  10.0.0.200:80 rr\n  -> 10.0.0.50:80") ||
		!strings.Contains(got, "TCP  10.0.0.100:80 wrr persistent 300\n  -> 10.0.0.11:80") {
		t.Fatalf("after Promote:\n%s", got)
	}
	if err := r.Withdraw(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.100:80 wrr persistent 300
  -> 10.0.0.11:80                 Route   1      0          0         
TCP  10.0.0.200:80 rr
  -> 10.0.0.50:80                 Masq    1      0          0         
`
	if got := readFormat(t, fake); got != want {
		t.Fatalf("after Withdraw:\n%s\nwant:\n%s", got, want)
	}
	if st := r.Status(); st.State != StateStandby {
		t.Errorf("state after Withdraw %q", st.State)
	}
	// Idempotent.
	fake.ResetCalls()
	if err := r.Withdraw(t.Context()); err != nil || len(fake.Calls()) != 0 {
		t.Fatalf("second Withdraw: %v, calls %q", err, callStrings(fake.Calls()))
	}
}

func TestReconcilerRepairsDrift(t *testing.T) {
	r, fake := newFakeReconciler(t, tableConfig())
	if err := r.Promote(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Someone runs ipvsadm -D on one service and -d on a real server of another.
	udp := toIPVSService(Service{ServiceKey: ServiceKey{Family: INET, Protocol: UDP, Address: netip.MustParseAddr("10.0.0.100"), Port: 53}})
	if err := fake.RemoveService(udp); err != nil {
		t.Fatal(err)
	}
	fwm := toIPVSService(Service{ServiceKey: ServiceKey{Family: INET, FWMark: 7}})
	if err := fake.RemoveDestination(fwm, cipvs.Destination{Address: netip.MustParseAddr("10.0.0.31"), Family: cipvs.INET}); err != nil {
		t.Fatal(err)
	}
	if err := r.Promote(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := readFormat(t, fake); got != tableFormat {
		t.Fatalf("after repair:\n%s\nwant:\n%s", got, tableFormat)
	}
}

func TestReconcilerDemote(t *testing.T) {
	for _, onBackup := range []bool{true, false} {
		cfg := tableConfig()
		cfg.ProgramOnBackup = onBackup
		r, fake := newFakeReconciler(t, cfg)
		if err := r.Promote(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := r.Demote(t.Context()); err != nil {
			t.Fatal(err)
		}
		tab, _ := ReadTable(fake)
		if onBackup && len(tab.Services) != 4 {
			t.Errorf("program_on_backup: Demote left %d services, want 4", len(tab.Services))
		}
		if !onBackup && len(tab.Services) != 0 {
			t.Errorf("program_on_backup false: Demote left %d services, want 0", len(tab.Services))
		}
	}
}

func TestReconcilerKernelErrors(t *testing.T) {
	// The fake kernel lacks the lc scheduler: the other services are still programmed and the
	// error names the failing operation.
	fake := ipvstest.NewFake()
	fake.Schedulers = []string{"rr", "wrr", "sh"}
	r, err := New(tableConfig(), zaptest.NewLogger(t), WithClient(fake))
	if err != nil {
		t.Fatal(err)
	}
	err = r.Promote(t.Context())
	if err == nil || !strings.Contains(err.Error(), "add-service TCP [2001:db8::100]:443 lc") {
		t.Fatalf("Promote() = %v", err)
	}
	if st := r.Status(); st.Error == "" {
		t.Error("status has no error")
	}
	tab, _ := ReadTable(fake)
	if len(tab.Services) != 3 {
		t.Errorf("%d services programmed, want 3", len(tab.Services))
	}
}

// TestReconcilerRun runs real TCP checkers against a local listener: closing it removes the real
// server; ending Run withdraws the table.
func TestReconcilerRun(t *testing.T) {
	ln, rs := listenRS(t)
	cfg := natConfig(rs,
		RealServer{Address: rs.Addr(), Check: fastTCP},
		RealServer{Address: netip.MustParseAddr("127.0.0.2")},
	)
	fr := runFake(t, cfg)
	r, fake, has, waitFor := fr.r, fr.fake, fr.has, fr.waitFor
	// program_on_backup: Run programs the table without a Promote.
	waitFor("the table", func() bool { return has(rs.String()) && has("127.0.0.2:") })
	ln.Close()
	waitFor("the failed real server's removal", func() bool { return !has(rs.String()) })
	if st := r.Status(); st.State != StateActive || st.Services[0].RealServers[0].Up {
		t.Errorf("status %+v", st)
	}
	fr.end()
	if tab, _ := ReadTable(fake); len(tab.Services) != 0 {
		t.Errorf("Run left %d services behind", len(tab.Services))
	}
}

// TestUnavailable runs the real path on a kernel without IPVS (this machine's) and, where the kernel
// has IPVS (the VM), an Open that fails the way it does without one.
func TestUnavailable(t *testing.T) {
	r, err := New(tableConfig(), zaptest.NewLogger(t))
	if err == nil {
		r.Close()
		t.Log("this kernel has IPVS: opening it fails as it would on a kernel without")
		r, err = New(tableConfig(), zaptest.NewLogger(t), withOpen(func() (*Kernel, error) {
			return nil, fmt.Errorf("%w: the kernel has no IPVS (injected)", ErrUnavailable)
		}))
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("New() = %v, want ErrUnavailable", err)
	}
	if r == nil {
		t.Fatal("New returned no Reconciler with ErrUnavailable")
	}
	t.Logf("New: %v", err)
	st := r.Status()
	if st.State != StateUnavailable || st.Reason == "" {
		t.Errorf("status %+v", st)
	}
	if err := r.Promote(t.Context()); err != nil {
		t.Errorf("Promote() = %v, want a no-op", err)
	}
	if err := r.Withdraw(t.Context()); err != nil {
		t.Errorf("Withdraw() = %v", err)
	}
	if _, err := r.Table(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Table() = %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := r.Run(ctx); err != nil {
		t.Errorf("Run() = %v", err)
	}
	if err := r.Close(); err != nil {
		t.Error(err)
	}
}

func TestDisabled(t *testing.T) {
	r, err := New(DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := r.Status(); st.State != StateDisabled {
		t.Errorf("state %q", st.State)
	}
	if err := r.Promote(t.Context()); err != nil {
		t.Error(err)
	}
}
