package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
)

// gatewayLab is a LAN on a bridge (in a namespace of its own): a gateway 192.0.2.1 and two nodes,
// 192.0.2.11 and .12, each in its namespace with eth0 on the bridge.
type gatewayLab struct {
	gw, a, b *netnstest.NS
}

func newGatewayLab(t *testing.T) *gatewayLab {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "nft", "Debian package nftables")
	sw := netnstest.New(t, "sbsw")
	br, err := netnstest.Bridge(sw, "br0")
	if err != nil {
		t.Fatal(err)
	}
	l := &gatewayLab{gw: netnstest.New(t, "sbgw"), a: netnstest.New(t, "sba"), b: netnstest.New(t, "sbb")}
	for _, m := range []struct {
		ns   *netnstest.NS
		port string
		addr string
	}{{l.gw, "p-gw", "192.0.2.1/24"}, {l.a, "p-a", "192.0.2.11/24"}, {l.b, "p-b", "192.0.2.12/24"}} {
		if _, _, err := netnstest.Veth(m.ns, "eth0", netip.MustParsePrefix(m.addr), sw, m.port, netip.Prefix{}); err != nil {
			t.Fatal(err)
		}
		if err := netnstest.Attach(sw, m.port, br); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// cut makes the gateway deaf to 192.0.2.11 only (its ARP and IP): node a is cut off from the
// gateway, and still reaches node b (and, from the test's namespace, the store).
func (l *gatewayLab) cut(t *testing.T) {
	t.Helper()
	l.gw.Run(t, "nft", "add table arp cut; add chain arp cut in { type filter hook input priority 0; }; "+
		"add rule arp cut in arp saddr ip 192.0.2.11 drop; "+
		"add table ip cut; add chain ip cut in { type filter hook input priority 0; }; add rule ip cut in ip saddr 192.0.2.11 drop")
}

func (l *gatewayLab) heal(t *testing.T) {
	t.Helper()
	l.gw.Run(t, "nft", "flush ruleset")
}

// Both nodes track the gateway by ARP (every 100ms, down after 2 misses).
const referenceConf = `backend: {{backend}}
name: %[1]s
endpoints: [%[2]s]
{{store}}
fence_guard: false
log: {format: json, level: info}
interface: eth0
group: web
vips: [192.0.2.100/24]
status_file: %[3]s/web.json
announce: {count: 1, repeat: 0, refresh: 0s}
track_reference: [{address: 192.0.2.1, method: arp, interval: 100ms, timeout: 80ms, rise: 1, fall: 2}]
`

// Reference-IP arbitration over a real etcd, daemons in namespaces: the master cut off from the
// gateway (the store still reachable) resigns and the node that reaches it takes over; a cut-off
// node does not campaign even when nobody else is left, and becomes master once it reaches the
// gateway again.
func TestReferenceArbitration(t *testing.T) {
	l := newGatewayLab(t)
	st := startStore(t, backendEtcd, "web")
	body := strings.NewReplacer("{{backend}}", st.backend, "{{store}}", st.lines).Replace(referenceConf)
	n1 := startNode(t, l.a, "n1", st.endpoint, body)
	eventually(t, "n1 master, holding the VIP", func() bool {
		return st.leader("web").Node == "n1" && n1.has(t, "192.0.2.100")
	}, n1)
	n2 := startNode(t, l.b, "n2", st.endpoint, body)
	eventually(t, "n2 an eligible backup", func() bool {
		s := n2.status(t, "web")
		return s.Role == "backup" && s.Eligible
	}, n2)

	l.cut(t)
	eventually(t, "n2 master, holding the VIP; n1 without it", func() bool {
		return st.leader("web").Node == "n2" && n2.has(t, "192.0.2.100") && !n1.has(t, "192.0.2.100")
	}, n1, n2)
	eventually(t, "n1 a backup, not a candidate", func() bool {
		s := n1.status(t, "web")
		return s.Role == "backup" && !s.Eligible
	}, n1)
	if !strings.Contains(n1.log.String(), "track_reference") {
		t.Errorf("n1's log does not name the failing check track_reference:\n%s", n1.log.String())
	}

	// Nobody else left: the cut-off node still does not take the VIP.
	n2.exit(t)
	eventually(t, "n2's record gone", func() bool { return st.leader("web").Node != "n2" }, n1)
	if s := n1.status(t, "web"); s.Role != "backup" || s.Eligible || n1.has(t, "192.0.2.100") {
		t.Fatalf("the cut-off node, alone: %+v, VIP bound %v; want a backup that does not campaign", s, n1.has(t, "192.0.2.100"))
	}
	l.heal(t)
	eventually(t, "n1 master again once it reaches the gateway", func() bool {
		return st.leader("web").Node == "n1" && n1.has(t, "192.0.2.100")
	}, n1)
}

// The split-brain keys are refused naming the key, or the flag that set them.
func TestSplitBrainKeysRefused(t *testing.T) {
	code, _, stderr := checkFile(t, multiHead+`instances:
  - name: A
    vips: [10.0.0.1/24]
    conflict: ignore
    track_reference: [{address: 2001:db8::1, method: arp}, {address: 10.0.0.254, timeout: 2s}]
`)
	wantAll(t, code, stderr, `instances[0].conflict: conflict "ignore" is not wait, fence, bind or off`,
		"instances[0].track_reference[0].method: arp is IPv4 only",
		"instances[0].track_reference[1].timeout: 2s is longer than the interval 1s")

	code, _, stderr = runCLI(t, "check-config", "--interface", "lo", "--vip", "10.0.0.1/24", "--endpoints", "http://127.0.0.1:2379",
		"--track-reference", "gateway")
	wantAll(t, code, stderr, `"gateway" is not an IP address`, "--track-reference")
	code, _, stderr = runCLI(t, "check-config", "--interface", "lo", "--vip", "10.0.0.1/24", "--endpoints", "http://127.0.0.1:2379",
		"--conflict", "later")
	wantAll(t, code, stderr, `--conflict: conflict "later" is not wait, fence, bind or off`)
}

// check-config prints the effective references and policy: the flags add to the file's.
func TestSplitBrainKeysPrinted(t *testing.T) {
	code, stdout, stderr := checkFile(t, multiHead+`vips: [10.0.0.1/24]
conflict: wait
track_reference: [{address: 10.0.0.254, method: icmp, interval: 2s}]
`, "--track-reference", "10.0.0.253")
	if code != exitOK {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	for _, w := range []string{"conflict: wait", "address: 10.0.0.254", "method: icmp", "interval: 2s", "address: 10.0.0.253"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("check-config output does not show %q:\n%s", w, stdout)
		}
	}
}

// conflictConf is one node with the conflict policy {{policy}} and the fence hook {{hook}}.
const conflictConf = `backend: etcd
name: %[1]s
endpoints: [%[2]s]
lease_ttl: 1s
fence_guard: false
log: {format: json, level: info}
interface: eth0
group: web
vips: [192.0.2.100/24]
status_file: %[3]s/web.json
announce: {count: 1, repeat: 0, refresh: 0s}
conflict: {{policy}}
hooks: {fence: {{hook}}}
`

// The old master's kernel still has the VIP (the peer namespace answers ARP for it): with conflict:
// fence the new master runs the fence hook, told the VIP and the other host's MAC, and binds once
// it succeeded; with conflict: wait it does not bind while the other host answers, says so in its
// status, and binds once the other host lets go.
func TestConflictPolicies(t *testing.T) {
	testenv.RequireRoot(t)
	for _, policy := range []string{"fence", "wait"} {
		t.Run(policy, func(t *testing.T) {
			st := startStore(t, backendEtcd, "web")
			a, b := twoNodes(t)
			b.Run(t, "ip", "addr", "add", "192.0.2.100/24", "dev", "eth0") // left over on the old master
			link, err := b.Netlink.LinkByName("eth0")
			if err != nil {
				t.Fatal(err)
			}
			oldMAC := link.Attrs().HardwareAddr.String()
			dir := t.TempDir()
			// The fence hook, run for a conflict, records HACOORD_CONFLICT and fences the other host:
			// it deletes the VIP in its namespace (as STONITH would power it off).
			hook := "#!/bin/sh\n[ \"$HACOORD_REASON\" = conflict ] || exit 0\necho \"$HACOORD_CONFLICT\" >> " + dir + "/conflicts\n" +
				"exec ip netns exec " + b.Name + " ip addr del 192.0.2.100/24 dev eth0\n"
			body := strings.NewReplacer("{{policy}}", policy, "{{hook}}", filepath.Join(dir, "fence.sh")).Replace(conflictConf)
			if err := os.WriteFile(filepath.Join(dir, "fence.sh"), []byte(hook), 0o755); err != nil {
				t.Fatal(err)
			}
			oldHas := func() bool {
				return strings.Contains(b.Run(t, "ip", "-4", "addr", "show", "dev", "eth0"), "192.0.2.100/")
			}
			n1 := startNode(t, a, "n1", st.endpoint, body)
			switch policy {
			case "fence":
				eventually(t, "n1 master, holding the VIP, the old host fenced", func() bool {
					return st.leader("web").Node == "n1" && n1.has(t, "192.0.2.100") && !oldHas()
				}, n1)
				got, err := os.ReadFile(filepath.Join(dir, "conflicts"))
				if err != nil || strings.TrimSpace(string(got)) != "192.0.2.100/24="+oldMAC {
					t.Fatalf("the fence hook was told %q (%v), want 192.0.2.100/24=%s once", got, err, oldMAC)
				}
			case "wait":
				eventually(t, "n1 master, the VIP held back, the conflict in its status", func() bool {
					s := n1.status(t, "web")
					return s.Role == "master" && len(s.Conflicts) == 1 && s.Conflicts[0] == "192.0.2.100/24 at "+oldMAC
				}, n1)
				if n1.has(t, "192.0.2.100") {
					t.Fatal("n1 bound the VIP while another host answers for it (conflict: wait)")
				}
				if _, err := os.Stat(filepath.Join(dir, "conflicts")); err == nil {
					t.Fatal("conflict: wait ran the fence hook for the conflict")
				}
				b.Run(t, "ip", "addr", "del", "192.0.2.100/24", "dev", "eth0") // the old host lets go
				eventually(t, "n1 holding the VIP once nobody else answers", func() bool {
					return n1.has(t, "192.0.2.100") && len(n1.status(t, "web").Conflicts) == 0
				}, n1)
			}
		})
	}
}
