//go:build lvsvm

// These tests need a kernel with IPVS; `make test-lvs` runs them inside the qemu VM
// (internal/qemutest/cmd/ipvsvm -tags lvsvm), where every namespace is the guest's.

package lvslab

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// realServers renders the real_servers of a service over the lab's real servers, with weights
// (nil: 1 each) and a TCP_CHECK when check is set.
func realServers(addrs []netip.Addr, weights []int, check bool) string {
	var b strings.Builder
	b.WriteString("    real_servers:\n")
	for i, a := range addrs {
		w := 1
		if weights != nil {
			w = weights[i]
		}
		fmt.Fprintf(&b, "      - {address: %s, weight: %d", a, w)
		if check {
			b.WriteString(", TCP_CHECK: {}")
		}
		b.WriteString("}\n")
	}
	return b.String()
}

func service(port uint16, algo string, kind Mode, extra string) string {
	s := fmt.Sprintf("  - address: %s\n    port: %d\n    lb_algo: %s\n    lb_kind: %s\n", VIP, port, algo, kind)
	if extra != "" {
		s += "    " + extra + "\n"
	}
	return s
}

// drServices: :80 rr with checks and the sorry server, :81 wrr 3/2/1, :82 rr persistent, :83 sh.
func drServices() string {
	rs := []netip.Addr{front(11), front(12), front(13)}
	return service(80, "rr", DR, "sorry_server: {address: "+front(20).String()+"}") + realServers(rs, nil, true) +
		service(81, "wrr", DR, "") + realServers(rs, []int{3, 2, 1}, false) +
		service(82, "rr", DR, "persistence_timeout: 60s") + realServers(rs, nil, false) +
		service(83, "sh", DR, "") + realServers(rs, nil, false)
}

func wantCounts(t *testing.T, what string, got map[string]int, want map[string]int) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Errorf("%s: answers per real server %v, want %v", what, got, want)
	}
}

// one returns the single name of got, failing when the requests went to more than one server or
// failed.
func one(t *testing.T, what string, got map[string]int) string {
	t.Helper()
	if len(got) != 1 || got["error"] != 0 {
		t.Errorf("%s: answers %v, want every request on one real server", what, got)
		return ""
	}
	for n := range got {
		return n
	}
	return ""
}

// waitDests waits until the director's service VIP:port has exactly the destinations want (with a
// non-zero weight) and returns how long that took.
func waitDests(l *Lab, d *Director, port uint16, timeout time.Duration, want ...netip.Addr) time.Duration {
	l.t.Helper()
	start := time.Now()
	slices.SortFunc(want, netip.Addr.Compare)
	l.waitFor(fmt.Sprintf("%s: %s:%d -> %v", d.Name, VIP, port, want), timeout, func() bool {
		dests, ok := d.Dests(port)
		if !ok {
			return false
		}
		var live []netip.Addr
		for a, w := range dests {
			if w > 0 {
				live = append(live, a)
			}
		}
		slices.SortFunc(live, netip.Addr.Compare)
		return slices.Equal(live, want)
	})
	return time.Since(start)
}

// removalBound is how long a dead real server may stay in the table: fall failed probes
// delay_loop apart (a refused connect fails at once), plus one delay_loop of phase and 2s for
// TCG and the table's 20ms polling.
const removalBound = fall*delayLoop + delayLoop + checkTimeout + 2*time.Second

// cutBound is removalBound for a real server that does not answer at all: each failed probe
// also waits connect_timeout.
const cutBound = removalBound + fall*checkTimeout

// TestLVSDR is the keepalived guides' LVS-DR pair: the client's connections to the VIP spread
// over the real servers by the scheduler, a dead real server (refusing connections, or cut off)
// leaves the table after its check's fall time and comes back, the sorry server answers when
// none is healthy, and when the master director crashes the other takes the VIP with its table
// and new connections succeed.
func TestLVSDR(t *testing.T) {
	l := NewLab(t, DR, drServices(), 80, 81, 82, 83)
	d1, d2 := l.D[0], l.D[1]
	all := []netip.Addr{front(11), front(12), front(13)}

	wantCounts(t, "rr :80", l.Count(80, 30), map[string]int{"rs1": 10, "rs2": 10, "rs3": 10})
	wantCounts(t, "wrr 3/2/1 :81", l.Count(81, 60), map[string]int{"rs1": 30, "rs2": 20, "rs3": 10})
	persistent := one(t, "rr with persistence_timeout :82", l.Count(82, 12))
	hashed := one(t, "sh :83", l.Count(83, 12))

	// A real server dies: its TCP_CHECK takes it out, then no request goes to it.
	rs2 := l.Reals[1]
	rs2.Stop(80)
	removed := waitDests(l, d1, 80, 10*time.Second, front(11), front(13))
	t.Logf("rs2 died: out of d1's table after %v (bound %v)", removed, removalBound)
	if removed > removalBound {
		t.Errorf("rs2 left the table after %v, want within %v (fall %d x delay_loop %v)", removed, removalBound, fall, delayLoop)
	}
	wantCounts(t, "rr :80 with rs2 dead", l.Count(80, 30), map[string]int{"rs1": 15, "rs3": 15})
	// It recovers: back in the table, and in the rotation.
	must(t, rs2.Start(80))
	back := waitDests(l, d1, 80, 10*time.Second, all...)
	t.Logf("rs2 recovered: back in d1's table after %v", back)
	wantCounts(t, "rr :80 with rs2 back", l.Count(80, 30), map[string]int{"rs1": 10, "rs2": 10, "rs3": 10})

	// A real server's machine vanishes (link cut): its probes time out instead of being refused.
	rs3 := l.Reals[2]
	l.SetLink(rs3, false)
	gone := waitDests(l, d1, 80, 15*time.Second, front(11), front(12))
	t.Logf("rs3 cut off: out of d1's table after %v (bound %v)", gone, cutBound)
	if gone > cutBound {
		t.Errorf("rs3 (cut off) left the table after %v, want within %v", gone, cutBound)
	}
	wantCounts(t, "rr :80 with rs3 cut off", l.Count(80, 30), map[string]int{"rs1": 15, "rs2": 15})
	l.SetLink(rs3, true)
	waitDests(l, d1, 80, 10*time.Second, all...)
	wantCounts(t, "rr :80 with rs3 reachable again", l.Count(80, 30), map[string]int{"rs1": 10, "rs2": 10, "rs3": 10})

	// No real server is healthy: the sorry server answers.
	for _, s := range l.Reals {
		s.Stop(80)
	}
	sorry := waitDests(l, d1, 80, 10*time.Second, front(20))
	t.Logf("every real server down: the sorry server alone in the table after %v", sorry)
	wantCounts(t, "with every real server down", l.Count(80, 5), map[string]int{"sorry": 5})
	for _, s := range l.Reals {
		must(t, s.Start(80))
	}
	waitDests(l, d1, 80, 10*time.Second, all...)
	wantCounts(t, "rr :80 with the real servers back", l.Count(80, 30), map[string]int{"rs1": 10, "rs2": 10, "rs3": 10})

	// The master director crashes: d2 takes the VIP and forwards with its own table.
	l.RequireMaster(d1)
	f := l.Failover(d1)
	t.Logf("d1 crashed: d2 promoted after %v, the client answered again after %v", f.Promoted, f.Outage)
	if f.To != d2 || !d2.HasVIP() {
		t.Fatal("d2 does not hold the VIP after d1 crashed")
	}
	if bound := 2*leaseTTL + time.Second; f.Outage > bound {
		t.Errorf("outage %v after the master's crash, want under twice the lease TTL + 1s = %v", f.Outage, bound)
	}
	wantCounts(t, "rr :80 through d2", l.Count(80, 30), map[string]int{"rs1": 10, "rs2": 10, "rs3": 10})
	wantCounts(t, "wrr :81 through d2", l.Count(81, 60), map[string]int{"rs1": 30, "rs2": 20, "rs3": 10})
	// sh hashes the client's address over the same list on both directors: the client keeps its
	// real server across the failover with no connection sync.
	if got := one(t, "sh :83 through d2", l.Count(83, 12)); got != hashed {
		t.Errorf("sh: the client moved from %s to %s across the failover", hashed, got)
	}
	// persistence_timeout keeps the client on one real server on the new director too; which one
	// is the new director's choice (its persistence templates are its own, not synced).
	p2 := one(t, "rr with persistence_timeout :82 through d2", l.Count(82, 12))
	t.Logf("persistence: %s on d1, %s on d2", persistent, p2)

	// d2 stops (SIGTERM): it leaves nothing behind, neither the VIP nor its IPVS services.
	must(t, d2.Stop(15*time.Second))
	if d2.HasVIP() {
		t.Error("d2 still holds the VIP after SIGTERM")
	}
	if !d2.TableEmpty() {
		tab, _ := d2.Table()
		t.Errorf("d2's IPVS table after SIGTERM: %v, want empty", tab.Services)
	}
}

// TestLVSDRProgramOnPromote is the DR pair with program_on_backup false (directors that are
// each other's real servers need it): the backup's table stays empty, and the director that takes
// over programs the whole table before it binds the VIP, so the client's first answer after the
// crash already comes through every real server in turn.
func TestLVSDRProgramOnPromote(t *testing.T) {
	rs := []netip.Addr{front(11), front(12), front(13)}
	l := newLab(t, DR, service(80, "rr", DR, "")+realServers(rs, nil, true), false, 80)
	d1, d2 := l.D[0], l.D[1]
	if !d2.TableEmpty() {
		t.Fatal("with program_on_backup false the backup d2 has an IPVS table")
	}
	wantCounts(t, "rr :80", l.Count(80, 30), map[string]int{"rs1": 10, "rs2": 10, "rs3": 10})
	f := l.Failover(d1)
	t.Logf("d1 crashed: d2 promoted (table programmed, then the VIP) after %v, the client answered again after %v", f.Promoted, f.Outage)
	if f.To != d2 || !d2.Programmed(80) {
		t.Fatal("d2 took over without programming its table")
	}
	wantCounts(t, "rr :80 through d2", l.Count(80, 30), map[string]int{"rs1": 10, "rs2": 10, "rs3": 10})
}

// TestLVSNAT is the LVS-NAT pair: the real servers route through the floating gateway VIP on the
// directors' back side (a second VIP of the same instance, on eth1). Replies pass through the
// master, so the crash test shows the gateway moving with the VIP.
func TestLVSNAT(t *testing.T) { testNAT(t, NAT) }

// TestLVSNATSyncGroup is the same with keepalived's other layout: the VIP and the gateway in two
// instances (front on eth0 with the virtual server, back on eth1) of one sync group, which must
// move together.
func TestLVSNATSyncGroup(t *testing.T) { testNAT(t, NATSync) }

func testNAT(t *testing.T, mode Mode) {
	rs := []netip.Addr{back(11), back(12), back(13)}
	l := NewLab(t, mode, service(80, "rr", NAT, "")+realServers(rs, nil, true), 80)
	d1, d2 := l.D[0], l.D[1]
	if !hasAddrOn(d1, "eth1", GatewayIP) || hasAddrOn(d2, "eth1", GatewayIP) {
		t.Fatal("d1 holds the VIP but not alone the real servers' gateway on eth1")
	}
	wantCounts(t, "rr :80 NAT", l.Count(80, 30), map[string]int{"rs1": 10, "rs2": 10, "rs3": 10})
	l.RequireMaster(d1)
	f := l.Failover(d1)
	t.Logf("d1 crashed: d2 promoted after %v, the client answered again after %v", f.Promoted, f.Outage)
	if f.To != d2 {
		t.Fatal("d2 did not take over")
	}
	l.waitFor("d2 holds the gateway on eth1", 10*time.Second, func() bool { return hasAddrOn(d2, "eth1", GatewayIP) })
	wantCounts(t, "rr :80 NAT through d2", l.Count(80, 30), map[string]int{"rs1": 10, "rs2": 10, "rs3": 10})
	must(t, d2.Stop(15*time.Second))
	if hasAddrOn(d2, "eth1", GatewayIP) || d2.HasVIP() || !d2.TableEmpty() {
		t.Error("d2 left a VIP or IPVS services behind after SIGTERM")
	}
}

func hasAddrOn(d *Director, ifname string, ip netip.Addr) bool {
	link, err := d.NS.Netlink.LinkByName(ifname)
	if err != nil {
		return false
	}
	addrs, err := d.NS.Netlink.AddrList(link, 0)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if x, ok := netip.AddrFromSlice(a.IP); ok && x.Unmap() == ip {
			return true
		}
	}
	return false
}

// TestLVSBench prints the figures of `make bench-lvs` (LVSLAB_RUNS=n): the outage of a director
// crash with IPVS forwarding (DR and NAT), the same without IPVS in the VM, requests per real server for
// rr and wrr, and the time from a real server's death to its removal from the table.
func TestLVSBench(t *testing.T) {
	n := runs()
	if n == 0 {
		t.Skip("a bench: set LVSLAB_RUNS=n (make bench-lvs)")
	}
	t.Run("DR", func(t *testing.T) {
		l := NewLab(t, DR, drServices(), 80, 81, 82, 83)
		rr, wrr := l.Count(80, 300), l.Count(81, 600)
		figure(t, "rr requests per real server over 300: rs1 %d rs2 %d rs3 %d errors %d", rr["rs1"], rr["rs2"], rr["rs3"], rr["error"])
		figure(t, "wrr 3/2/1 requests per real server over 600: rs1 %d rs2 %d rs3 %d errors %d", wrr["rs1"], wrr["rs2"], wrr["rs3"], wrr["error"])
		var removal, readd []time.Duration
		all := []netip.Addr{front(11), front(12), front(13)}
		for i := range n {
			s := l.Reals[i%3]
			s.Stop(80)
			var rest []netip.Addr
			for _, a := range all {
				if a != s.Addr {
					rest = append(rest, a)
				}
			}
			removal = append(removal, waitDests(l, l.D[0], 80, 10*time.Second, rest...))
			must(t, s.Start(80))
			readd = append(readd, waitDests(l, l.D[0], 80, 10*time.Second, all...))
		}
		var cut []time.Duration
		for i := range n {
			s := l.Reals[i%3]
			l.SetLink(s, false)
			var rest []netip.Addr
			for _, a := range all {
				if a != s.Addr {
					rest = append(rest, a)
				}
			}
			cut = append(cut, waitDests(l, l.D[0], 80, 15*time.Second, rest...))
			l.SetLink(s, true)
			waitDests(l, l.D[0], 80, 10*time.Second, all...)
		}
		lo, med, hi := stats(removal)
		figure(t, "real-server death (connections refused) to removal ms min/median/max %d/%d/%d over %d runs (TCP_CHECK delay_loop %v fall %d)", ms(lo), ms(med), ms(hi), n, delayLoop, fall)
		lo, med, hi = stats(cut)
		figure(t, "real-server cut off (probes time out, connect_timeout %v) to removal ms min/median/max %d/%d/%d over %d runs", checkTimeout, ms(lo), ms(med), ms(hi), n)
		lo, med, hi = stats(readd)
		figure(t, "real-server recovery to re-add ms min/median/max %d/%d/%d over %d runs (rise 1)", ms(lo), ms(med), ms(hi), n)
		benchFailover(t, l, "vm DR", n)
	})
	t.Run("DR program_on_backup false", func(t *testing.T) {
		rs := []netip.Addr{front(11), front(12), front(13)}
		benchFailover(t, newLab(t, DR, service(80, "rr", DR, "")+realServers(rs, nil, true), false, 80), "vm DR program_on_backup=false", n)
	})
	t.Run("NAT", func(t *testing.T) {
		rs := []netip.Addr{back(11), back(12), back(13)}
		benchFailover(t, NewLab(t, NAT, service(80, "rr", NAT, "")+realServers(rs, nil, true), 80), "vm NAT", n)
	})
	t.Run("plain", func(t *testing.T) {
		benchFailover(t, NewLab(t, Plain, ""), "vm plain", n)
	})
}
