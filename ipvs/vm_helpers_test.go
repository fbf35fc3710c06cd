//go:build ipvsvm

package ipvs

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// The VM daemon tests' set-up: a veth pair to run VRRP on, and the real daemon with its log a line
// at a time.

// vmVeth makes hc0 (10.99.0.1/24) and its peer hc1, up; the test deletes them.
func vmVeth(t *testing.T) netlink.Link {
	t.Helper()
	return vethUp(t, "hc0", "hc1", "10.99.0.1/24")
}

// vethUp makes the veth pair name-peer, both up, with addr on name, and returns name's link; the
// test deletes them.
func vethUp(t *testing.T, name, peer, addr string) netlink.Link {
	t.Helper()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("veth: %v", err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	for _, n := range []string{name, peer} {
		l, err := netlink.LinkByName(n)
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	a, err := netlink.ParseAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(l, a); err != nil {
		t.Fatal(err)
	}
	return l
}

// vmDaemon is the daemon under test, its stderr (and its fence guard's, which shares it) a line at
// a time.
type vmDaemon struct {
	bin   string // the hacoord binary
	conf  string // its configuration file
	cmd   *exec.Cmd
	lines chan string
	ctx   context.Context // a minute from the start: the deadline of every wait
	seen  []string        // the lines waitLine has read
}

// hacoordBin is the daemon's binary the VM runner put in the guest.
func hacoordBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("HACOORD_BIN")
	if bin == "" {
		t.Fatal("HACOORD_BIN not set: ipvsvm -hacoord puts the daemon in the VM")
	}
	return bin
}

// startVMDaemon writes yml to a configuration file and starts the daemon on it, named "vm", with a
// status file and the extra args. The test kills it at the end if it has not stopped.
func startVMDaemon(t *testing.T, yml string, args ...string) *vmDaemon {
	t.Helper()
	bin := hacoordBin(t)
	dir := t.TempDir()
	d := &vmDaemon{bin: bin, conf: filepath.Join(dir, "hacoord.yaml"), lines: make(chan string, 1000)}
	d.writeConf(t, yml)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	d.ctx = ctx
	d.cmd = exec.Command(bin, append([]string{"--config", d.conf, "--name", "vm", "--status-file", filepath.Join(dir, "status.json")}, args...)...)
	out, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.cmd.Process.Kill(); _ = d.cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			t.Log(sc.Text())
			d.lines <- sc.Text()
		}
		close(d.lines)
	}()
	return d
}

// writeConf replaces the daemon's configuration file with yml at once (write and rename), as an
// operator's tool would before a SIGHUP.
func (d *vmDaemon) writeConf(t *testing.T, yml string) {
	t.Helper()
	if err := os.WriteFile(d.conf+".tmp", []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(d.conf+".tmp", d.conf); err != nil {
		t.Fatal(err)
	}
}

// waitLine waits for a line of the daemon's (or its guard's) log that contains substr.
func (d *vmDaemon) waitLine(t *testing.T, substr string) {
	t.Helper()
	for {
		select {
		case l, ok := <-d.lines:
			if !ok {
				t.Fatalf("the log ended before %q", substr)
			}
			d.seen = append(d.seen, l)
			if strings.Contains(l, substr) {
				return
			}
		case <-d.ctx.Done():
			t.Fatalf("no %q within a minute", substr)
		}
	}
}
