//go:build ipvsvm

// These tests need a kernel with IPVS and root; `make test-ipvs` runs them in a qemu VM
// (internal/qemutest/cmd/ipvsvm). Each starts and ends with an empty table.

package ipvs

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	cipvs "github.com/cloudflare/ipvs"
	"go.uber.org/zap/zaptest"

	"github.com/hacoord/hacoord/ipvs/check"
)

func kernelClient(t *testing.T) *Kernel {
	t.Helper()
	k, err := Open()
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	flush(t, k)
	t.Cleanup(func() {
		flush(t, k)
		k.Close()
	})
	return k
}

// flush empties the table, as ipvsadm -C.
func flush(t *testing.T, c Client) {
	t.Helper()
	svcs, err := c.Services()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Services: %v", err)
	}
	for _, s := range svcs {
		if err := c.RemoveService(s.Service); err != nil {
			t.Fatalf("RemoveService: %v", err)
		}
	}
}

// recorder is a Client that records the mutating calls it passes on.
type recorder struct {
	Client
	mu    sync.Mutex
	calls []string
}

func (r *recorder) note(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

func dk(s cipvs.Service, d cipvs.Destination) string {
	return fromIPVSService(s).ServiceKey.String() + " -> " + netip.AddrPortFrom(d.Address, d.Port).String()
}

func (r *recorder) CreateService(s cipvs.Service) error {
	r.note("CreateService " + fromIPVSService(s).ServiceKey.String())
	return r.Client.CreateService(s)
}
func (r *recorder) UpdateService(s cipvs.Service) error {
	r.note("UpdateService " + fromIPVSService(s).ServiceKey.String())
	return r.Client.UpdateService(s)
}
func (r *recorder) RemoveService(s cipvs.Service) error {
	r.note("RemoveService " + fromIPVSService(s).ServiceKey.String())
	return r.Client.RemoveService(s)
}
func (r *recorder) CreateDestination(s cipvs.Service, d cipvs.Destination) error {
	r.note("CreateDestination " + dk(s, d))
	return r.Client.CreateDestination(s, d)
}
func (r *recorder) UpdateDestination(s cipvs.Service, d cipvs.Destination) error {
	r.note("UpdateDestination " + dk(s, d))
	return r.Client.UpdateDestination(s, d)
}
func (r *recorder) RemoveDestination(s cipvs.Service, d cipvs.Destination) error {
	r.note("RemoveDestination " + dk(s, d))
	return r.Client.RemoveDestination(s, d)
}

// body drops Format's version line, which depends on the kernel.
func body(t *testing.T, c Client) string {
	t.Helper()
	s := readFormat(t, c)
	if !strings.HasPrefix(s, "IP Virtual Server version ") {
		t.Fatalf("format: %q", s)
	}
	return s[strings.Index(s, "\n")+1:]
}

func TestVMConformance(t *testing.T) {
	clientConformance(t, kernelClient(t))
}

func TestVMReconcile(t *testing.T) {
	k := kernelClient(t)
	rec := &recorder{Client: k}
	cfg := tableConfig()
	cfg.VirtualServers = append(cfg.VirtualServers,
		VirtualServer{
			Address: netip.MustParseAddr("10.0.0.100"), Port: 9, Protocol: "SCTP", LBAlgo: "mh",
			RealServers: []RealServer{{Address: netip.MustParseAddr("10.0.0.51")}},
		},
		VirtualServer{
			FWMark: 8, Family: "inet6", LBAlgo: "rr", LBKind: "DR",
			RealServers: []RealServer{{Address: netip.MustParseAddr("2001:db8::21")}},
		},
	)
	r, err := New(cfg, zaptest.NewLogger(t), WithClient(rec))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Promote(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := `Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.100:80 wrr persistent 300
  -> 10.0.0.11:80                 Route   1      0          0         
  -> 10.0.0.12:80                 Route   2      0          0         
UDP  10.0.0.100:53 rr ops
  -> 10.0.0.21:5353               Masq    1      0          0         
SCTP  10.0.0.100:9 mh
  -> 10.0.0.51:9                  Masq    1      0          0         
TCP  [2001:db8::100]:443 lc
  -> 10.0.0.41:443                Tunnel  1      0          0         
  -> [2001:db8::11]:443           Tunnel  1      0          0         
FWM  7 sh
  -> 10.0.0.31:0                  Route   1      0          0         
FWM  8 IPv6 rr
  -> [2001:db8::21]:0             Route   1      0          0         
`
	if got := body(t, k); got != want {
		t.Fatalf("kernel table:\n%s\nwant:\n%s", got, want)
	}
	t.Logf("programmed with %d calls", len(rec.take()))

	step := func(what string, i, j int, s check.Status, wantCalls ...string) {
		t.Helper()
		if err := r.setHealth(i, j, s); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := rec.take(); strings.Join(got, "\n") != strings.Join(wantCalls, "\n") {
			t.Fatalf("%s: calls\n%s\nwant\n%s", what, strings.Join(got, "\n"), strings.Join(wantCalls, "\n"))
		}
	}
	// Nothing changed: nothing to do.
	if err := r.Promote(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := rec.take(); len(got) != 0 {
		t.Fatalf("second Promote: %q", got)
	}
	step("weight change", 0, 0, check.Status{Up: true, Weight: 9},
		"UpdateDestination TCP 10.0.0.100:80 -> 10.0.0.11:80")
	if got := body(t, k); !strings.Contains(got, "  -> 10.0.0.11:80                 Route   9 ") {
		t.Fatalf("weight not updated:\n%s", got)
	}
	down := check.Status{Up: false, Weight: check.NoWeight, Err: errors.New("refused")}
	step("real server fails", 0, 1, down, "RemoveDestination TCP 10.0.0.100:80 -> 10.0.0.12:80")
	step("last real server fails: sorry server", 0, 0, down,
		"CreateDestination TCP 10.0.0.100:80 -> 10.0.0.99:80",
		"RemoveDestination TCP 10.0.0.100:80 -> 10.0.0.11:80")
	if got := body(t, k); !strings.Contains(got, "TCP  10.0.0.100:80 wrr persistent 300\n  -> 10.0.0.99:80                 Route   1 ") {
		t.Fatalf("sorry server not in place:\n%s", got)
	}
	step("a real server recovers", 0, 1, check.Status{Up: true, Weight: check.NoWeight},
		"CreateDestination TCP 10.0.0.100:80 -> 10.0.0.12:80",
		"RemoveDestination TCP 10.0.0.100:80 -> 10.0.0.99:80")
	if err := r.Withdraw(t.Context()); err != nil {
		t.Fatal(err)
	}
	if svcs, err := k.Services(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after Withdraw: %d services, %v", len(svcs), err)
	}
}

// TestVMWeightUpdateKeepsConnections sends a real connection through a virtual service on the
// loopback and checks that a weight change leaves its entry, and the connection count, in place.
func TestVMWeightUpdateKeepsConnections(t *testing.T) {
	k := kernelClient(t)
	ln, err := net.Listen("tcp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	cfg := DefaultConfig()
	cfg.VirtualServers = []VirtualServer{{
		Address: netip.MustParseAddr("127.0.0.100"), Port: port, LBAlgo: "rr", LBKind: "DR",
		RealServers: []RealServer{{Address: netip.MustParseAddr("127.0.0.1")}},
	}}
	rec := &recorder{Client: k}
	r, err := New(cfg, zaptest.NewLogger(t), WithClient(rec))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Promote(t.Context()); err != nil {
		t.Fatal(err)
	}
	rec.take()
	conn, err := net.DialTimeout("tcp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.100"), port).String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := conn.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	conns := func() (uint32, string) {
		tab, err := ReadTable(k)
		if err != nil {
			t.Fatal(err)
		}
		if len(tab.Services) != 1 || len(tab.Services[0].Destinations) != 1 {
			t.Fatalf("table:\n%s", Format(tab))
		}
		d := tab.Services[0].Destinations[0]
		return d.ActiveConns + d.InactiveConns, Format(tab)
	}
	before, table := conns()
	t.Logf("before:\n%s", table)
	if before == 0 {
		t.Fatalf("the connection did not go through IPVS:\n%s", table)
	}
	if err := r.setHealth(0, 0, check.Status{Up: true, Weight: 5}); err != nil {
		t.Fatal(err)
	}
	if got := rec.take(); len(got) != 1 || !strings.HasPrefix(got[0], "UpdateDestination ") {
		t.Fatalf("weight change made calls %q, want one UpdateDestination", got)
	}
	after, table := conns()
	t.Logf("after:\n%s", table)
	if after != before || !strings.Contains(table, " 5      ") {
		t.Fatalf("after the weight change: %d connections (before %d)\n%s", after, before, table)
	}
	// The connection itself still works.
	if _, err := conn.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := srv.Read(buf); err != nil || n == 0 {
		t.Fatalf("read through the service: %d, %v", n, err)
	}
}

func TestVMWithdrawOwnsOnlyItsOwn(t *testing.T) {
	k := kernelClient(t)
	mask := hostMask(INET)
	foreign := cipvs.Service{Address: netip.MustParseAddr("10.0.0.200"), Port: 80, Protocol: cipvs.TCP, Family: cipvs.INET, Netmask: mask, Scheduler: "rr"}
	adopted := cipvs.Service{Address: netip.MustParseAddr("10.0.0.100"), Port: 80, Protocol: cipvs.TCP, Family: cipvs.INET, Netmask: mask, Scheduler: "rr"}
	keep := cipvs.Destination{Address: netip.MustParseAddr("10.0.0.11"), Port: 80, Family: cipvs.INET, FwdMethod: cipvs.DirectRoute, Weight: 1}
	must(t,
		k.CreateService(foreign),
		k.CreateDestination(foreign, cipvs.Destination{Address: netip.MustParseAddr("10.0.0.50"), Port: 80, Family: cipvs.INET, Weight: 1}),
		k.CreateService(adopted),
		k.CreateDestination(adopted, keep),
	)
	r, err := New(tableConfig(), zaptest.NewLogger(t), WithClient(k))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Promote(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := r.Withdraw(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := `Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.100:80 wrr persistent 300
  -> 10.0.0.11:80                 Route   1      0          0         
TCP  10.0.0.200:80 rr
  -> 10.0.0.50:80                 Masq    1      0          0         
`
	if got := body(t, k); got != want {
		t.Fatalf("after Withdraw:\n%s\nwant:\n%s", got, want)
	}
}

// TestVMRun runs the whole loop: a real TCP checker against a local listener, the real kernel.
func TestVMRun(t *testing.T) {
	k := kernelClient(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rs := netip.MustParseAddrPort(ln.Addr().String())
	cfg := DefaultConfig()
	cfg.ResyncInterval = 50 * time.Millisecond
	cfg.VirtualServers = []VirtualServer{{
		Address: netip.MustParseAddr("10.0.0.100"), Port: rs.Port(), LBAlgo: "rr",
		RealServers: []RealServer{
			{Address: rs.Addr(), Check: check.Config{TCP: &check.TCP{Timing: check.Timing{Interval: 20 * time.Millisecond, Retry: check.Retries(0)}}}},
			{Address: netip.MustParseAddr("127.0.0.2")},
		},
	}}
	r, err := New(cfg, zaptest.NewLogger(t), WithClient(k))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- r.Run(runCtx) }()
	// No change notification from the kernel: poll the table on the resync tick, up to the deadline.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	waitFor := func(what string, cond func(string) bool) {
		t.Helper()
		for {
			s := body(t, k)
			if cond(s) {
				return
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %s:\n%s", what, s)
			}
		}
	}
	waitFor("the table", func(s string) bool { return strings.Contains(s, rs.String()) && strings.Contains(s, "127.0.0.2:") })
	ln.Close()
	waitFor("the failed real server's removal", func(s string) bool { return !strings.Contains(s, rs.String()) })
	// Drift: someone deletes the service; the resync puts it back.
	svcs, _ := k.Services()
	for _, s := range svcs {
		_ = k.RemoveService(s.Service)
	}
	waitFor("the resync", func(s string) bool { return strings.Contains(s, "127.0.0.2:") })
	stop()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if svcs, err := k.Services(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Run left %d services, %v", len(svcs), err)
	}
}
