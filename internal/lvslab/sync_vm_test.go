//go:build lvsvm

package lvslab

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/hacoord/hacoord/ipvs"
)

// syncLine is the directors' lvs_sync_daemon (a top-level key after the virtual_servers list).
const syncLine = "lvs_sync_daemon: {interface: eth0, sync_id: 7}\n"

// TestLVSDRSyncDaemon is the DR pair with lvs_sync_daemon: the master director runs the master
// and the backup sync daemon, the backup director the backup one; the backup's kernel learns the
// client's persistence template from the master's, so after the master director crashes the
// client with persistence_timeout stays on the same real server. A second client address takes
// the rr scheduler's first pick beforehand, so the new director's own first pick would be
// another real server: without the sync the client would move.
func TestLVSDRSyncDaemon(t *testing.T) {
	rs := []netip.Addr{front(11), front(12), front(13)}
	svcs := service(80, "rr", DR, "") + realServers(rs, nil, false) +
		service(82, "rr", DR, "persistence_timeout: 60s") + realServers(rs, nil, false) + syncLine
	l := NewLab(t, DR, svcs, 80, 82)
	d1, d2 := l.D[0], l.D[1]
	want := func(st ipvs.SyncState) ipvs.SyncDaemon {
		return ipvs.SyncDaemon{State: st, Interface: "eth0", SyncID: 7}
	}
	waitDaemons(l, d1, want(ipvs.SyncMaster), want(ipvs.SyncBackup))
	waitDaemons(l, d2, want(ipvs.SyncBackup))
	// The operator sees them too, as ipvsadm -L --daemon prints them.
	var out []byte
	must(t, d1.NS.Do(func() error {
		var err error
		out, err = exec.Command(l.bin, "ipvs", "--daemon").CombinedOutput()
		return err
	}))
	if w := "master sync daemon (mcast=eth0, syncid=7)\nbackup sync daemon (mcast=eth0, syncid=7)\n"; string(out) != w {
		t.Errorf("hacoord ipvs --daemon on d1: %q, want %q", out, w)
	}

	other := netip.MustParseAddr("10.10.0.50")
	link, err := l.Client.Netlink.LinkByName("eth0")
	must(t, err)
	must(t, l.Client.Netlink.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: other.AsSlice(), Mask: net.CIDRMask(24, 32)}}))
	first, err := getFrom(l, other, 82)
	must(t, err)
	persistent := one(t, "rr with persistence_timeout :82 through d1", l.Count(82, 12))
	t.Logf("persistence on d1: %s for %s (the scheduler's first pick, %s, went to %s)", persistent, clientIP, first, other)
	var addr netip.Addr
	for _, s := range l.Reals {
		if s.Name == persistent {
			addr = s.Addr
		}
	}
	if !addr.IsValid() {
		t.Fatalf("no real server is named %q", persistent)
	}
	// The master daemon flushes its messages within 2s (IPVS_SYNC_FLUSH_TIME): wait for the
	// template in the backup director's kernel before the crash.
	start := time.Now()
	l.waitFor(fmt.Sprintf("d2's kernel holds %s's persistence template to %s", clientIP, addr), 15*time.Second, func() bool {
		d, ok := template(d2, clientIP, 82)
		return ok && d == addr
	})
	t.Logf("the template reached d2 %v after the requests", time.Since(start))

	f := l.Failover(d1)
	t.Logf("d1 crashed: d2 promoted after %v, the client answered again after %v", f.Promoted, f.Outage)
	if f.To != d2 {
		t.Fatal("d2 did not take over")
	}
	if got := one(t, "rr with persistence_timeout :82 through d2", l.Count(82, 12)); got != persistent {
		t.Errorf("persistence: the client moved from %s to %s across the failover, with lvs_sync_daemon", persistent, got)
	}
	waitDaemons(l, d2, want(ipvs.SyncMaster), want(ipvs.SyncBackup))

	// d1's SIGKILLed daemon left its master sync daemon in d1's kernel; restarted, it stops it
	// and runs the backup one alone.
	d1.Revive()
	l.waitFor("d1 back as a backup", 30*time.Second, d1.Backup)
	waitDaemons(l, d1, want(ipvs.SyncBackup))

	// d2 stops (SIGTERM): its sync daemons stop with it.
	must(t, d2.Stop(15*time.Second))
	waitDaemons(l, d2)
}

// daemons lists the sync daemons of d's kernel through IPVS_CMD_GET_DAEMON.
func daemons(d *Director) ([]ipvs.SyncDaemon, error) {
	var c *ipvs.SyncConn
	if err := d.NS.Do(func() error {
		var err error
		c, err = ipvs.OpenSync()
		return err
	}); err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Daemons()
}

// waitDaemons waits until d's kernel runs exactly the sync daemons want.
func waitDaemons(l *Lab, d *Director, want ...ipvs.SyncDaemon) {
	l.t.Helper()
	var got []ipvs.SyncDaemon
	var err error
	sorted := func(ds []ipvs.SyncDaemon) []ipvs.SyncDaemon {
		slices.SortFunc(ds, func(a, b ipvs.SyncDaemon) int { return int(a.State) - int(b.State) })
		return ds
	}
	want = sorted(want)
	if !poll(10*time.Second, func() bool {
		got, err = daemons(d)
		return err == nil && slices.Equal(sorted(got), want)
	}) {
		l.dumpLogs()
		l.t.Fatalf("%s's sync daemons: %v (%v), want %v", d.Name, got, err, want)
	}
	l.t.Logf("%s's sync daemons: %v", d.Name, got)
}

// template returns the real server of the persistence template client -> VIP:port in d's
// connection table (/proc/net/ip_vs_conn of its namespace: client port 0, state NONE).
func template(d *Director, client netip.Addr, port uint16) (netip.Addr, bool) {
	var b []byte
	if err := d.NS.Do(func() error {
		var err error
		b, err = os.ReadFile("/proc/thread-self/net/ip_vs_conn")
		return err
	}); err != nil {
		return netip.Addr{}, false
	}
	hex := func(a netip.Addr) string { return fmt.Sprintf("%08X", a.As4()) }
	for _, ln := range strings.Split(string(b), "\n") {
		f := strings.Fields(ln)
		if len(f) < 8 || f[1] != hex(client) || f[2] != "0000" || f[3] != hex(VIP) || f[4] != fmt.Sprintf("%04X", port) {
			continue
		}
		var ip [4]byte
		if _, err := fmt.Sscanf(f[5], "%02X%02X%02X%02X", &ip[0], &ip[1], &ip[2], &ip[3]); err == nil {
			return netip.AddrFrom4(ip), true
		}
	}
	return netip.Addr{}, false
}

// getFrom is Lab.Get from the client's address src.
func getFrom(l *Lab, src netip.Addr, port uint16) (string, error) {
	var conn net.Conn
	err := l.Client.Do(func() error {
		var err error
		dl := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		conn, err = dl.Dial("tcp", netip.AddrPortFrom(VIP, port).String())
		return err
	})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\nHost: vip\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
