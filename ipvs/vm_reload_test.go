//go:build ipvsvm

package ipvs

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// TestVMDaemonReloadsVirtualServers runs the real daemon (native VRRP, alone, master) with one
// virtual server; SIGHUP with a second virtual server added and a real server removed from the first
// programs both changes in the kernel's table at once, without the daemon letting go of the VIP;
// SIGTERM then withdraws both services.
func TestVMDaemonReloadsVirtualServers(t *testing.T) {
	bin := os.Getenv("HACOORD_BIN")
	if bin == "" {
		t.Fatal("HACOORD_BIN not set: ipvsvm -hacoord puts the daemon in the VM")
	}
	k := kernelClient(t)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "hr0"}, PeerName: "hr1"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("veth: %v", err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	for _, n := range []string{"hr0", "hr1"} {
		l, err := netlink.LinkByName(n)
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	l, _ := netlink.LinkByName("hr0")
	addr, _ := netlink.ParseAddr("10.98.0.1/24")
	if err := netlink.AddrAdd(l, addr); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "hacoord.yaml")
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
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(conf+".tmp", []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(conf+".tmp", conf); err != nil {
			t.Fatal(err)
		}
	}
	write(head + "      - {address: 10.98.0.12}\n")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.Command(bin, "--config", conf, "--name", "vm", "--status-file", filepath.Join(dir, "status.json"), "--fence-guard=false")
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := make(chan string, 100)
	var all []string
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			t.Log(sc.Text())
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitLine := func(substr string) {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("daemon exited before logging %q", substr)
				}
				all = append(all, l)
				if strings.Contains(l, substr) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no %q within a minute", substr)
			}
		}
	}
	waitLine("became master")
	if got := body(t, k); !strings.Contains(got, "-> 10.98.0.12:80") {
		t.Fatalf("kernel table before the reload:\n%s", got)
	}

	write(head + `  - address: 10.98.0.100
    port: 443
    lb_algo: wrr
    lb_kind: DR
    real_servers:
      - {address: 10.98.0.21, weight: 2}
`)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLine("reloaded: virtual_server TCP 10.98.0.100:80 changed, +virtual_server TCP 10.98.0.100:443")
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
	for _, l := range all {
		if strings.Contains(l, "VIPs released") {
			t.Errorf("the daemon let go of the VIP during the reload: %s", l)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLine("stopped: VIPs released")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("daemon exit after SIGTERM: %v", err)
	}
	if got := body(t, k); strings.Contains(got, "10.98.0.100") {
		t.Errorf("after SIGTERM the table is:\n%s\nwant both services withdrawn", got)
	}
}
