//go:build ipvsvm

package ipvs

import (
	"strings"
	"syscall"
	"testing"
)

// TestVMDaemonReloadsVirtualServers runs the real daemon (native VRRP, alone, master) with one
// virtual server; SIGHUP with a second virtual server added and a real server removed from the first
// programs both changes in the kernel's table at once, without the daemon letting go of the VIP;
// SIGTERM then withdraws both services.
func TestVMDaemonReloadsVirtualServers(t *testing.T) {
	k := kernelClient(t)
	vethUp(t, "hr0", "hr1", "10.98.0.1/24")
	head := `backend: vrrp
interface: hr0
vips: [10.98.0.100/24]
vrrp: {vrid: 8, priority: 200, advert_int: 500ms, version: 3}
program_on_backup: false
virtual_servers:
  - address: 10.98.0.100
    port: 80
    lb_algo: rr
    lb_kind: DR
    real_servers:
      - {address: 10.98.0.11}
`
	d := startVMDaemon(t, head+"      - {address: 10.98.0.12}\n", "--fence-guard=false")
	d.waitLine(t, "became master")
	if got := body(t, k); !strings.Contains(got, "-> 10.98.0.12:80") {
		t.Fatalf("kernel table before the reload:\n%s", got)
	}

	d.writeConf(t, head+`  - address: 10.98.0.100
    port: 443
    lb_algo: wrr
    lb_kind: DR
    real_servers:
      - {address: 10.98.0.21, weight: 2}
`)
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	d.waitLine(t, "reloaded: virtual_server TCP 10.98.0.100:80 changed, +virtual_server TCP 10.98.0.100:443")
	got := body(t, k)
	for _, want := range []string{"TCP  10.98.0.100:80 rr", "-> 10.98.0.11:80", "TCP  10.98.0.100:443 wrr", "-> 10.98.0.21:443"} {
		if !strings.Contains(got, want) {
			t.Errorf("kernel table after the reload lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "10.98.0.12:80") {
		t.Errorf("the removed real server is still in the table:\n%s", got)
	}
	if has, err := hasAddr("hr0", "10.98.0.100"); err != nil || !has {
		t.Errorf("VIP not bound after the reload: %v, %v", has, err)
	}
	for _, l := range d.seen {
		if strings.Contains(l, "VIPs released") {
			t.Errorf("the daemon let go of the VIP during the reload: %s", l)
		}
	}

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	d.waitLine(t, "stopped: VIPs released")
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("daemon exit after SIGTERM: %v", err)
	}
	if got := body(t, k); strings.Contains(got, "10.98.0.100") {
		t.Errorf("after SIGTERM the table is:\n%s\nwant both services withdrawn", got)
	}
}
