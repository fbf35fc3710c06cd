//go:build ipvsvm

package ipvs

import (
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestVMDaemonProgramsAndWithdraws runs the real hacoord daemon (native VRRP, alone on a veth, so
// it becomes master by itself) with virtual_servers and program_on_backup false: on becoming master
// it programs the kernel table before binding the VIP, `hacoord ipvs` prints that table, and on
// SIGTERM it removes what it added — only that — and the VIP.
func TestVMDaemonProgramsAndWithdraws(t *testing.T) {
	k := kernelClient(t)
	// Someone else's service, which hacoord must leave alone.
	if err := k.CreateService(toIPVSService(vmForeign)); err != nil {
		t.Fatal(err)
	}
	vmVeth(t)

	// The promote order is IPVS before the VIP: at the instant the kernel reports the VIP added,
	// hacoord's service must already be in the table (a reversed order would leave a moment where
	// the director answers for the VIP without forwarding).
	updates, done := make(chan netlink.AddrUpdate, 16), make(chan struct{})
	if err := netlink.AddrSubscribe(updates, done); err != nil {
		t.Fatal(err)
	}
	programmedFirst := make(chan bool, 1)
	go func() {
		for u := range updates {
			if u.NewAddr && u.LinkAddress.IP.String() == "10.99.0.100" {
				svcs, err := k.Client.Services()
				found := false
				for _, s := range svcs {
					if s.Service.Address.String() == "10.99.0.100" && s.Service.Port == 80 {
						found = true
					}
				}
				programmedFirst <- err == nil && found
				return
			}
		}
	}()
	t.Cleanup(func() { close(done) })

	d := startVMDaemon(t, vmDaemonConf(false))
	d.waitLine(t, "became master")
	select {
	case ok := <-programmedFirst:
		if !ok {
			t.Error("the VIP was bound before hacoord's IPVS service was in the table")
		}
	case <-d.ctx.Done():
		t.Fatal("no netlink notice of the VIP being added")
	}

	got := body(t, k)
	for _, want := range []string{"TCP  10.99.0.100:80 wrr", "-> 10.99.0.11:80", "Route   3", "-> 10.99.0.12:80", "TCP  10.99.0.200:443 rr"} {
		if !strings.Contains(got, want) {
			t.Errorf("kernel table lacks %q:\n%s", want, got)
		}
	}
	if has, err := hasAddr("hc0", "10.99.0.100"); err != nil || !has {
		t.Errorf("VIP not bound on hc0: %v, %v", has, err)
	}
	cli, err := exec.CommandContext(d.ctx, d.bin, "ipvs").CombinedOutput()
	if err != nil || !strings.Contains(string(cli), "TCP  10.99.0.100:80 wrr") || !strings.HasPrefix(string(cli), "IP Virtual Server version") {
		t.Errorf("hacoord ipvs: %v:\n%s", err, cli)
	}

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	d.waitLine(t, "stopped: VIPs released")
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("daemon exit after SIGTERM: %v", err)
	}
	got = body(t, k)
	if strings.Contains(got, "10.99.0.100:80") || !strings.Contains(got, "TCP  10.99.0.200:443 rr") {
		t.Errorf("after SIGTERM the table is:\n%s\nwant hacoord's service gone and the foreign one kept", got)
	}
	if has, _ := hasAddr("hc0", "10.99.0.100"); has {
		t.Error("VIP still bound after SIGTERM")
	}
}

func hasAddr(ifname, ip string) (bool, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return false, err
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return false, err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.String() == ip {
			return true, nil
		}
	}
	return false, nil
}
