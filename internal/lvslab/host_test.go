//go:build !lvsvm

package lvslab

import (
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
)

// TestHostBaselineBench is the host's side of `make bench-lvs`: the same lab without IPVS (each
// director answers for the VIP itself), the same crash of the master, on this machine's kernel
// without emulation. Its outage is what the VM's figures are compared with. It runs only when
// LVSLAB_RUNS is set.
func TestHostBaselineBench(t *testing.T) {
	n := runs()
	if n == 0 {
		t.Skip("a bench: set LVSLAB_RUNS=n (make bench-lvs)")
	}
	l := NewLab(t, Plain, "")
	benchFailover(t, l, "host plain", n)
}

// TestDirectorConfigs runs `hacoord check-config` on the file each mode gives a director: the
// daemon's own validation accepts it, and it says what the VM tests rely on (the gateway on eth1,
// the sync group).
func TestDirectorConfigs(t *testing.T) {
	bin := os.Getenv("HACOORD_BIN")
	if bin == "" {
		testenv.Unavailable(t, "HACOORD_BIN not set (make build)")
	}
	testenv.RequireRoot(t)
	// check-config looks the interfaces up: a namespace with a director's eth0 and eth1.
	ns, peer := netnstest.New(t, "cfg"), netnstest.New(t, "cfgp")
	for _, ifname := range []string{"eth0", "eth1"} {
		if _, _, err := netnstest.Veth(ns, ifname, netip.Prefix{}, peer, ifname, netip.Prefix{}); err != nil {
			t.Fatal(err)
		}
	}
	svc := "  - {address: " + VIP.String() + ", port: 80, lb_algo: rr, lb_kind: NAT, real_servers: [{address: " + back(11).String() + ", TCP_CHECK: {}}]}\n"
	for mode, want := range map[Mode][]string{
		NAT:     {"vips 10.10.0.100/24 10.20.0.254/24 (dev eth1)", "virtual server TCP 10.10.0.100:80: lb_algo rr, lb_kind NAT"},
		NATSync: {"instance front: etcd on eth0", "instance back: etcd on eth1", "sync group lvs: front, back (front leads)", "virtual server TCP 10.10.0.100:80"},
		Plain:   {"vips 10.10.0.100/24", "1 instance(s)"},
	} {
		l := &Lab{t: t, mode: mode, dir: t.TempDir(), services: svc, programOnBackup: true}
		d := &Director{Name: "d1", lab: l}
		d.writeConfig()
		cmd := exec.Command(bin, "check-config", "--config", d.conf, "--name", "d1")
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		err := ns.Do(cmd.Start)
		if err == nil {
			err = cmd.Wait()
		}
		if err != nil {
			t.Errorf("%s: check-config: %v\n%s", mode, err, out.String())
			continue
		}
		for _, w := range want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%s: check-config output lacks %q:\n%s", mode, w, out.String())
			}
		}
	}
}
