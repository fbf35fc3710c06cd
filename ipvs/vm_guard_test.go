//go:build ipvsvm

package ipvs

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cipvs "github.com/cloudflare/ipvs"
	"github.com/vishvananda/netlink"
)

// These tests run the real daemon in the VM, as TestVMDaemonProgramsAndWithdraws does, to check
// what it leaves behind when it dies (its fence guard withdraws it) and what it finds when it
// starts (it cleans up or takes over what an earlier run left).

// vmDaemonConf is the daemon's configuration: VRRP alone on hc0, so it becomes master by itself
// (after its master-down interval, 3 adverts: 1.5 s), one virtual server for the VIP.
func vmDaemonConf(programOnBackup bool) string {
	return `backend: vrrp
interface: hc0
vips: [10.99.0.100/24]
vrrp: {vrid: 9, priority: 200, advert_int: 500ms, version: 3}
program_on_backup: ` + strconv.FormatBool(programOnBackup) + `
virtual_servers:
  - address: 10.99.0.100
    port: 80
    lb_algo: wrr
    lb_kind: DR
    real_servers:
      - {address: 10.99.0.11, weight: 3}
      - {address: 10.99.0.12, weight: 1}
`
}

var (
	vmVIP     = netip.MustParsePrefix("10.99.0.100/24")
	vmOurs    = Service{ServiceKey: ServiceKey{Family: INET, Protocol: TCP, Address: netip.MustParseAddr("10.99.0.100"), Port: 80}, Scheduler: "rr"}
	vmForeign = Service{ServiceKey: ServiceKey{Family: INET, Protocol: TCP, Address: netip.MustParseAddr("10.99.0.200"), Port: 443}, Scheduler: "rr"}
)

// children returns the pids of pid's children (the daemon's: its fence guard).
func children(t *testing.T, pid int) []int {
	t.Helper()
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	var out []int
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, w := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(w); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// gone reports whether process pid has exited (gone, or a zombie nobody reaped).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

// hasService reports whether the kernel has service k.
func hasService(t *testing.T, k *Kernel, key ServiceKey) bool {
	t.Helper()
	tab, err := ReadTable(k)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range tab.Services {
		if s.ServiceKey == key {
			return true
		}
	}
	return false
}

// waitUntil polls cond (the kernel table offers no notification) until it holds or d passes, and
// returns how long that took.
func waitUntil(t *testing.T, k *Kernel, what string, d time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v; the table:\n%s", what, d, body(t, k))
		}
		time.Sleep(2 * time.Millisecond) // polling the kernel's table
	}
	return time.Since(start)
}

func createWithDest(t *testing.T, k *Kernel, s Service, dests ...string) {
	t.Helper()
	if err := k.CreateService(toIPVSService(s)); err != nil {
		t.Fatal(err)
	}
	for _, d := range dests {
		ap := netip.MustParseAddrPort(d)
		if err := k.CreateDestination(toIPVSService(s), cipvs.Destination{Address: ap.Addr(), Port: ap.Port(), Family: cipvs.INET, FwdMethod: cipvs.DirectRoute, Weight: 1}); err != nil {
			t.Fatal(err)
		}
	}
}

// SIGKILL of the master's daemon (program_on_backup false): its fence guard removes the VIP and
// withdraws the daemon's IPVS service, and leaves the foreign service as it was; then it exits.
func TestVMGuardWithdrawsAKilledDaemonsServices(t *testing.T) {
	k := kernelClient(t)
	createWithDest(t, k, vmForeign, "10.99.0.50:443")
	vmVeth(t)
	d := startVMDaemon(t, vmDaemonConf(false))
	d.waitLine(t, "became master")
	if !hasService(t, k, vmOurs.ServiceKey) {
		t.Fatalf("no hacoord service after becoming master:\n%s", body(t, k))
	}
	kids := children(t, d.cmd.Process.Pid)
	if len(kids) != 1 {
		t.Fatalf("the daemon has children %v, want its one fence guard", kids)
	}
	guardPid := kids[0]
	t.Cleanup(func() { _ = syscall.Kill(guardPid, syscall.SIGKILL) })

	updates, done := make(chan netlink.AddrUpdate, 16), make(chan struct{})
	if err := netlink.AddrSubscribe(updates, done); err != nil {
		t.Fatal(err)
	}
	defer close(done)
	killed := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var vipGone time.Duration
	for vipGone == 0 {
		select {
		case u := <-updates:
			if !u.NewAddr && u.LinkAddress.IP.String() == vmVIP.Addr().String() {
				vipGone = time.Since(killed)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("VIP still bound 5s after the daemon's SIGKILL")
		}
	}
	waitUntil(t, k, "hacoord's service withdrawn", 5*time.Second, func() bool { return !hasService(t, k, vmOurs.ServiceKey) })
	svcGone := time.Since(killed)
	t.Logf("after SIGKILL: VIP removed in %v, IPVS service withdrawn by %v", vipGone, svcGone)
	got := body(t, k)
	if !strings.Contains(got, "TCP  10.99.0.200:443 rr\n  -> 10.99.0.50:443") {
		t.Errorf("the foreign service changed:\n%s", got)
	}
	d.waitLine(t, "fence guard withdrew the dead daemon's IPVS services")
	waitUntil(t, k, "the fence guard exits", 5*time.Second, func() bool { return gone(guardPid) })
}

// A daemon started over what an earlier run left (its VIP bound, its service with a stale real
// server) with program_on_backup false removes both before it can be master (its master-down
// interval is 1.5 s), leaves the foreign service, programs the service afresh once master, and
// withdraws it at SIGTERM, as one it created.
func TestVMDaemonCleansUpLeftovers(t *testing.T) {
	k := kernelClient(t)
	createWithDest(t, k, vmForeign, "10.99.0.50:443")
	createWithDest(t, k, vmOurs, "10.99.0.13:80")
	l := vmVeth(t)
	if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: netipNet(vmVIP)}); err != nil {
		t.Fatal(err)
	}
	d := startVMDaemon(t, vmDaemonConf(false))
	d.waitLine(t, "removed a service left by a previous run")
	if hasService(t, k, vmOurs.ServiceKey) || !hasService(t, k, vmForeign.ServiceKey) {
		t.Fatalf("at start, before becoming master, the table is:\n%s\nwant hacoord's leftover gone and the foreign service kept", body(t, k))
	}
	if has, err := hasAddr("hc0", "10.99.0.100"); err != nil || has {
		t.Fatalf("the leftover VIP is still bound at start: %v", err)
	}
	d.waitLine(t, "became master")
	got := body(t, k)
	if !strings.Contains(got, "TCP  10.99.0.100:80 wrr") || !strings.Contains(got, "-> 10.99.0.11:80") || strings.Contains(got, "10.99.0.13") {
		t.Errorf("once master the table is:\n%s\nwant the configured service, without the stale real server", got)
	}
	stopVMDaemon(t, d)
	got = body(t, k)
	if strings.Contains(got, "10.99.0.100:80") || !strings.Contains(got, "TCP  10.99.0.200:443 rr\n  -> 10.99.0.50:443") {
		t.Errorf("after SIGTERM the table is:\n%s\nwant hacoord's service gone and the foreign one kept", got)
	}
}

// With program_on_backup true, the leftover service is taken over: reconciled to the
// configuration in place (one service, the stale real server gone, the scheduler set) as soon as
// the daemon starts, and withdrawn at SIGTERM.
func TestVMDaemonTakesOverLeftoversWithProgramOnBackup(t *testing.T) {
	k := kernelClient(t)
	createWithDest(t, k, vmForeign, "10.99.0.50:443")
	createWithDest(t, k, vmOurs, "10.99.0.13:80", "10.99.0.11:80")
	vmVeth(t)
	d := startVMDaemon(t, vmDaemonConf(true))
	d.waitLine(t, "took over a service left by a previous run")
	reconciled := func(got string) bool {
		i := strings.Index(got, "TCP  10.99.0.100:80 wrr\n")
		if i < 0 {
			return false
		}
		svc, _, _ := strings.Cut(got[i+1:], "\nTCP ") // up to the next service
		return strings.Count(got, "10.99.0.100:80 ") == 1 && !strings.Contains(svc, "10.99.0.13") &&
			regexp.MustCompile(`-> 10\.99\.0\.11:80 +Route +3 `).MatchString(svc) &&
			regexp.MustCompile(`-> 10\.99\.0\.12:80 +Route +1 `).MatchString(svc)
	}
	waitUntil(t, k, "the leftover reconciled", 10*time.Second, func() bool { return reconciled(body(t, k)) })
	stopVMDaemon(t, d)
	got := body(t, k)
	if strings.Contains(got, "10.99.0.100:80") || !strings.Contains(got, "TCP  10.99.0.200:443 rr\n  -> 10.99.0.50:443") {
		t.Errorf("after SIGTERM the table is:\n%s\nwant the taken-over service gone and the foreign one kept", got)
	}
}

func stopVMDaemon(t *testing.T, d *vmDaemon) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	d.waitLine(t, "stopped: VIPs released")
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("daemon exit after SIGTERM: %v", err)
	}
}

func netipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
