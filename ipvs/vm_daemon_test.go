//go:build ipvsvm

package ipvs

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// TestVMDaemonProgramsAndWithdraws runs the real hacoord daemon (native VRRP, alone on a veth, so
// it becomes master by itself) with virtual_servers and program_on_backup false: on becoming master
// it programs the kernel table before binding the VIP, `hacoord ipvs` prints that table, and on
// SIGTERM it removes what it added — only that — and the VIP.
func TestVMDaemonProgramsAndWithdraws(t *testing.T) {
	bin := os.Getenv("HACOORD_BIN")
	if bin == "" {
		t.Fatal("HACOORD_BIN not set: ipvsvm -hacoord puts the daemon in the VM")
	}
	k := kernelClient(t)
	// Someone else's service, which hacoord must leave alone.
	foreign := Service{ServiceKey: ServiceKey{Family: INET, Protocol: TCP, Address: netip.MustParseAddr("10.99.0.200"), Port: 443}, Scheduler: "rr"}
	if err := k.CreateService(toIPVSService(foreign)); err != nil {
		t.Fatal(err)
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "hc0"}, PeerName: "hc1"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("veth: %v", err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	for _, n := range []string{"hc0", "hc1"} {
		l, err := netlink.LinkByName(n)
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	l, _ := netlink.LinkByName("hc0")
	addr, _ := netlink.ParseAddr("10.99.0.1/24")
	if err := netlink.AddrAdd(l, addr); err != nil {
		t.Fatal(err)
	}

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

	dir := t.TempDir()
	conf := filepath.Join(dir, "hacoord.yaml")
	yml := `backend: vrrp
interface: hc0
vips: [10.99.0.100/24]
vrrp: {vrid: 9, priority: 200, advert_int: 500ms, version: 3}
program_on_backup: false
virtual_servers:
  - address: 10.99.0.100
    port: 80
    lb_algo: wrr
    lb_kind: DR
    real_servers:
      - {address: 10.99.0.11, weight: 3}
      - {address: 10.99.0.12, weight: 1}
`
	if err := os.WriteFile(conf, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.Command(bin, "--config", conf, "--name", "vm", "--status-file", filepath.Join(dir, "status.json"))
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := make(chan string, 100)
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
				if strings.Contains(l, substr) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no %q within a minute", substr)
			}
		}
	}
	waitLine("became master")
	select {
	case ok := <-programmedFirst:
		if !ok {
			t.Error("the VIP was bound before hacoord's IPVS service was in the table")
		}
	case <-ctx.Done():
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
	cli, err := exec.CommandContext(ctx, bin, "ipvs").CombinedOutput()
	if err != nil || !strings.Contains(string(cli), "TCP  10.99.0.100:80 wrr") || !strings.HasPrefix(string(cli), "IP Virtual Server version") {
		t.Errorf("hacoord ipvs: %v:\n%s", err, cli)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLine("stopped: VIPs released")
	if err := cmd.Wait(); err != nil {
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
