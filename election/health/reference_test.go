package health

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
)

func TestValidateReferences(t *testing.T) {
	gw := netip.MustParseAddr("192.0.2.1")
	for _, tc := range []struct {
		name string
		refs []Reference
		want []string // substrings; nil: valid
	}{
		{"valid", []Reference{{Address: gw}, {Address: netip.MustParseAddr("2001:db8::1"), Method: "icmp", Interval: 2 * time.Second, Timeout: time.Second}}, nil},
		{"link-local with zone", []Reference{{Address: netip.MustParseAddr("fe80::1%eth0")}}, nil},
		{"no address", []Reference{{}}, []string{"track_reference[0].address: required"}},
		{"duplicate", []Reference{{Address: gw}, {Address: gw, Method: "icmp"}}, []string{"track_reference[1].address: 192.0.2.1 is also track_reference[0]"}},
		{"not unicast", []Reference{{Address: netip.MustParseAddr("224.0.0.1")}}, []string{"track_reference[0].address: 224.0.0.1 is not a unicast"}},
		{"method", []Reference{{Address: gw, Method: "tcp"}}, []string{`track_reference[0].method: "tcp" is not arp or icmp`}},
		{"arp over IPv6", []Reference{{Address: netip.MustParseAddr("2001:db8::1"), Method: "arp"}}, []string{"track_reference[0].method: arp is IPv4 only"}},
		{"link-local without interface", []Reference{{Address: netip.MustParseAddr("fe80::1")}}, []string{"track_reference[0].interface: required for the link-local"}},
		{"zone and interface differ", []Reference{{Address: netip.MustParseAddr("fe80::1%eth0"), Interface: "eth1"}}, []string{`track_reference[0].interface: "eth1", but the address names zone "eth0"`}},
		{"timeout over interval", []Reference{{Address: gw, Interval: 100 * time.Millisecond, Timeout: time.Second}}, []string{"track_reference[0].timeout: 1s is longer than the interval 100ms"}},
		{"negatives", []Reference{{Address: gw, Interval: -1, Rise: -1, Fall: -1}}, []string{"track_reference[0].interval", "track_reference[0].rise: -1", "track_reference[0].fall: -1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Config{References: tc.refs}.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestReferenceDefaults(t *testing.T) {
	r := Reference{Address: netip.MustParseAddr("192.0.2.1")}.withDefaults()
	if r.Method != MethodARP || r.Interval != time.Second || r.Timeout != 500*time.Millisecond || r.Rise != 2 || r.Fall != 3 {
		t.Errorf("IPv4 defaults = %+v", r)
	}
	if r := (Reference{Address: netip.MustParseAddr("2001:db8::1")}).withDefaults(); r.Method != MethodICMP {
		t.Errorf("IPv6 method = %q, want icmp", r.Method)
	}
	if r := (Reference{Address: netip.MustParseAddr("192.0.2.1"), Interval: 200 * time.Millisecond}).withDefaults(); r.Timeout != 200*time.Millisecond {
		t.Errorf("timeout with a 200ms interval = %v, want the interval", r.Timeout)
	}
}

// verdicts records what a Monitor reports, without ever blocking it.
type verdicts struct {
	mu sync.Mutex
	up map[string]bool
	n  int // reports so far
	ch chan struct{}
}

func newVerdicts() *verdicts { return &verdicts{up: map[string]bool{}, ch: make(chan struct{}, 1)} }

func (v *verdicts) Set(name string, up bool) {
	v.mu.Lock()
	v.up[name] = up
	v.n++
	v.mu.Unlock()
	select {
	case v.ch <- struct{}{}:
	default:
	}
}

func (v *verdicts) wait(t *testing.T, name string, want bool, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		v.mu.Lock()
		got, ok := v.up[name]
		v.mu.Unlock()
		if ok && got == want {
			return
		}
		select {
		case <-v.ch:
		case <-deadline:
			t.Fatalf("%s did not report up=%v within %v", name, want, within)
		}
	}
}

// reports returns how many reports came so far, and the last verdict of name.
func (v *verdicts) reports(name string) (int, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.n, v.up[name]
}

// waitReports waits until more than n reports came.
func (v *verdicts) waitReports(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		if got, _ := v.reports(""); got > n {
			return
		}
		select {
		case <-v.ch:
		case <-deadline:
			t.Fatalf("no report within %v", within)
		}
	}
}

// refLab is a node and a gateway joined by a veth: node eth0 192.0.2.2/24 and 2001:db8::2/64,
// gateway gw0 192.0.2.1 and 2001:db8::1.
type refLab struct{ node, gw *netnstest.NS }

func newRefLab(t *testing.T) *refLab {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "nft", "Debian package nftables")
	l := &refLab{node: netnstest.New(t, "refn"), gw: netnstest.New(t, "refg")}
	nl, gl, err := netnstest.Veth(l.node, "eth0", netip.MustParsePrefix("192.0.2.2/24"), l.gw, "gw0", netip.MustParsePrefix("192.0.2.1/24"))
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		ns   *netnstest.NS
		link netlink.Link
		addr string
	}{{l.node, nl, "2001:db8::2/64"}, {l.gw, gl, "2001:db8::1/64"}} {
		a, _ := netlink.ParseAddr(x.addr)
		a.Flags = unix.IFA_F_NODAD
		if err := x.ns.Netlink.AddrAdd(x.link, a); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// cut makes the gateway deaf to the families given (arp, ip, ip6): nftables in its namespace drops
// every such packet it receives, until heal.
func (l *refLab) cut(t *testing.T, families ...string) {
	t.Helper()
	if len(families) == 0 {
		families = []string{"arp", "ip", "ip6"}
	}
	for _, f := range families {
		l.gw.Run(t, "nft", "add table "+f+" cut; add chain "+f+" cut in { type filter hook input priority 0; policy drop; }")
	}
}

// heal removes every cut.
func (l *refLab) heal(t *testing.T) {
	t.Helper()
	l.gw.Run(t, "nft", "flush ruleset")
}

func (l *refLab) monitor(t *testing.T, refs ...Reference) (*Monitor, *verdicts) {
	t.Helper()
	var m *Monitor
	if err := l.node.Do(func() (err error) { m, err = New(Config{References: refs}, nil); return err }); err != nil {
		t.Fatal(err)
	}
	if c := m.Checks(); len(c) != 1 || c[0].Name != ReferenceCheck || c[0].Up || c[0].Weight != 0 {
		t.Fatalf("Checks() = %+v, want one %s check, starting down, weight 0", c, ReferenceCheck)
	}
	ctx, cancel := context.WithCancel(t.Context())
	v := newVerdicts()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, v) }() // any goroutine: the sockets were opened in the namespace
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		m.Close()
	})
	return m, v
}

// fast is a reference probed every 50ms, judged after 2 answers / 2 misses.
func fast(addr, method string) Reference {
	return Reference{Address: netip.MustParseAddr(addr), Method: method, Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond, Rise: 2, Fall: 2}
}

// Each method passes while the gateway answers, fails when it stops, and passes again when it
// answers again, against the kernel in namespaces.
func TestReferenceMethods(t *testing.T) {
	l := newRefLab(t)
	for _, r := range []Reference{fast("192.0.2.1", MethodARP), fast("192.0.2.1", MethodICMP), fast("2001:db8::1", MethodICMP)} {
		t.Run(r.name(), func(t *testing.T) {
			t.Cleanup(func() { l.heal(t) })
			_, v := l.monitor(t, r)
			v.wait(t, ReferenceCheck, true, 5*time.Second)
			l.cut(t)
			v.wait(t, ReferenceCheck, false, 5*time.Second)
			l.heal(t)
			v.wait(t, ReferenceCheck, true, 5*time.Second)
		})
	}
}

// The check passes while any reference answers, and fails only when none does.
func TestReferenceAnyOf(t *testing.T) {
	l := newRefLab(t)
	_, v := l.monitor(t, fast("192.0.2.9", MethodARP), fast("192.0.2.1", MethodARP), fast("2001:db8::1", MethodICMP)) // .9: nobody
	v.wait(t, ReferenceCheck, true, 5*time.Second)
	for {
		// Both reachable references up (each up reports once; the first made the check pass).
		if n, _ := v.reports(ReferenceCheck); n >= 2 {
			break
		}
		v.waitReports(t, 1, 5*time.Second)
	}
	n, _ := v.reports(ReferenceCheck)
	l.cut(t, "ip6") // 2001:db8::1 stops answering; 192.0.2.1 still answers ARP
	v.waitReports(t, n, 5*time.Second)
	if _, up := v.reports(ReferenceCheck); !up {
		t.Fatal("the check failed when one of two reachable references stopped answering")
	}
	l.cut(t, "arp")
	v.wait(t, ReferenceCheck, false, 5*time.Second)
}

// ARP only asks on-link: a reference behind a router is a probe error, naming the gateway.
func TestReferenceARPNotOnLink(t *testing.T) {
	l := newRefLab(t)
	l.node.Run(t, "ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.1")
	var p *arpProber
	if err := l.node.Do(func() (err error) {
		p, err = newARPProber(Reference{Address: netip.MustParseAddr("198.51.100.1"), Timeout: 50 * time.Millisecond}, l.node.Netlink)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer p.close()
	_, err := p.Probe(t.Context())
	if err == nil || !strings.Contains(err.Error(), "not on-link (the route goes via 192.0.2.1)") {
		t.Fatalf("Probe = %v, want not on-link via 192.0.2.1", err)
	}
}

// The node's interface deleted and created again (a new index) is probed all the same.
func TestReferenceFollowsARecreatedInterface(t *testing.T) {
	l := newRefLab(t)
	_, v := l.monitor(t, fast("192.0.2.1", MethodARP))
	v.wait(t, ReferenceCheck, true, 5*time.Second)
	l.node.Run(t, "ip", "link", "del", "eth0")
	v.wait(t, ReferenceCheck, false, 5*time.Second)
	if _, _, err := netnstest.Veth(l.node, "eth0", netip.MustParsePrefix("192.0.2.2/24"), l.gw, "gw0", netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		t.Fatal(err)
	}
	v.wait(t, ReferenceCheck, true, 10*time.Second)
}
