package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/spf13/pflag"

	"github.com/hacoord/hacoord/internal/testenv"
)

// reloadPlanOf builds the plan of a config file body (and flags), as the daemon does but for the
// checks against this machine.
func reloadPlanOf(t *testing.T, body string, args ...string) *plan {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hacoord.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	fv := defaultFlagValues()
	fs := pflag.NewFlagSet("hacoord", pflag.ContinueOnError)
	registerFlags(fs, &fv)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	s, err := load(fs, &fv, path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := buildPlan(s)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	return p
}

const reloadBase = `backend: etcd
endpoints: [http://127.0.0.1:2379]
name: n1
group: web
interface: eth0
vips: [10.0.0.100/24]
`

func TestPlanReloadApplies(t *testing.T) {
	old := reloadPlanOf(t, reloadBase+"track_scripts:\n  - {name: chk, script: /bin/true}\n")
	for _, tc := range []struct {
		name, body string
		args       []string
		changes    []string
		vips       bool
		health     bool
		hooks      bool
		level      string
	}{
		{name: "nothing", body: reloadBase + "track_scripts:\n  - {name: chk, script: /bin/true}\n"},
		{name: "VIP added, script removed",
			body:    strings.Replace(reloadBase, "[10.0.0.100/24]", "[10.0.0.100/24, 10.0.0.5/24]", 1),
			changes: []string{"+vip 10.0.0.5/24", "-track_script chk"}, vips: true, health: true},
		{name: "VIP replaced, script changed",
			body:    strings.Replace(reloadBase, "10.0.0.100/24", "10.0.0.101/24", 1) + "track_scripts:\n  - {name: chk, script: /bin/false}\n",
			changes: []string{"+vip 10.0.0.101/24", "-vip 10.0.0.100/24", "track_script chk changed"}, vips: true, health: true},
		{name: "announce, notify hook, log level",
			body:    reloadBase + "track_scripts:\n  - {name: chk, script: /bin/true}\nannounce: {count: 1, repeat: 5, interval: 2s}\nhooks: {notify: /bin/true}\nlog: {level: debug}\n",
			changes: []string{"log.level info -> debug", "announce", "+hooks.notify"}, vips: true, hooks: true, level: "debug"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rp, err := planReload(old, reloadPlanOf(t, tc.body, tc.args...))
			if err != nil {
				t.Fatalf("planReload: %v", err)
			}
			if !slices.Equal(rp.changes, tc.changes) {
				t.Errorf("changes %q, want %q", rp.changes, tc.changes)
			}
			ic := rp.insts[0]
			if slices.Contains(ic.vipSets, true) != tc.vips || ic.health != tc.health || ic.hooks != tc.hooks || rp.level != tc.level {
				t.Errorf("applies vips %v health %v hooks %v level %q; want %v %v %v %q",
					ic.vipSets, ic.health, ic.hooks, rp.level, tc.vips, tc.health, tc.hooks, tc.level)
			}
		})
	}
}

func TestPlanReloadRefuses(t *testing.T) {
	vrrp := "backend: vrrp\nname: n1\ninterface: eth0\nvips: [10.0.0.100/24]\nvrrp: {vrid: 51, priority: 100}\n"
	for _, tc := range []struct {
		name, old, body string
		want            []string
	}{
		{"group", reloadBase, strings.Replace(reloadBase, "group: web", "group: db", 1),
			[]string{"group: web to db: the instance's identity"}},
		{"backend", reloadBase, strings.NewReplacer("backend: etcd", "backend: zk", "http://127.0.0.1:2379", "127.0.0.1:2181").Replace(reloadBase),
			[]string{"backend: etcd to zk"}},
		{"node name", reloadBase, strings.Replace(reloadBase, "name: n1", "name: n2", 1),
			[]string{`name: "n1" to "n2"`}},
		{"store endpoints", reloadBase, strings.Replace(reloadBase, "127.0.0.1:2379", "127.0.0.2:2379", 1),
			[]string{"etcd: Endpoints changed"}},
		{"lease TTL", reloadBase, reloadBase + "lease_ttl: 7s\n", []string{"etcd: TTL changed"}},
		{"instance added", reloadBase,
			"backend: etcd\nendpoints: [http://127.0.0.1:2379]\nname: n1\ninstances:\n  - {name: a, interface: eth0, vips: [10.0.0.100/24]}\n  - {name: b, interface: eth0, vips: [10.0.0.101/24]}\n",
			[]string{"instances: web to a,b: adding, removing or reordering instances needs a restart"}},
		{"new device", reloadBase, strings.Replace(reloadBase, "vips: [10.0.0.100/24]", "vips:\n  - 10.0.0.100/24\n  - {address: 10.0.1.1/24, dev: eth1}", 1),
			[]string{"vips[1]: device eth1"}},
		{"new address family", reloadBase, strings.Replace(reloadBase, "[10.0.0.100/24]", "[10.0.0.100/24, 2001:db8::5/64]", 1),
			[]string{"vips: vip: reconfigure eth0: IPv6 VIPs where the running ones are IPv4 only"}},
		{"fence hook", reloadBase, reloadBase + "hooks: {fence: /bin/true}\n", []string{"hooks.fence: changed"}},
		{"metrics address", reloadBase, reloadBase + "metrics_address: 127.0.0.1:9733\n",
			[]string{`metrics_address: "127.0.0.1:9732" to "127.0.0.1:9733": the metrics server is bound at start`}},
		{"first virtual server", reloadBase, reloadBase + "virtual_servers:\n  - {address: 10.0.0.100, port: 80, real_servers: [{address: 10.0.0.11}]}\n",
			[]string{"virtual_servers: the instance had none at start"}},
		{"VRRP VRID", vrrp, strings.Replace(vrrp, "vrid: 51", "vrid: 52", 1), []string{"vrrp.vrid: 51 to 52"}},
		{"VRRP VIPs", vrrp, strings.Replace(vrrp, "[10.0.0.100/24]", "[10.0.0.100/24, 10.0.0.5/24]", 1),
			[]string{"vrrp: VIPs changed: a VRRP router's VIPs are in its adverts"}},
		{"VRRP interface", vrrp, strings.Replace(vrrp, "interface: eth0", "interface: eth1", 1), []string{"interface: eth0 to eth1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := planReload(reloadPlanOf(t, tc.old), reloadPlanOf(t, tc.body))
			if err == nil {
				t.Fatal("planReload: no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("planReload = %v\nwant it to say %q", err, w)
				}
			}
		})
	}
}

// The daemon run in-process (under -race, the reload's locking): SIGHUP with a VIP added to one
// instance and a track script removed from the other binds the VIP at once, keeps both masters'
// terms, and logs every change; a file that adds an instance is refused and changes nothing.
func TestReloadInProcess(t *testing.T) {
	testenv.RequireRoot(t)
	st := startStore(t, backendEtcd, "A", "B")
	body := strings.NewReplacer("{{backend}}", st.backend, "{{store}}", st.lines).Replace(twoInstances)
	a, _ := twoNodes(t)
	n := startNode(t, a, "rl1", st.endpoint, body)
	eventually(t, "rl1 master of A and B", func() bool {
		return st.leader("A").Node == "rl1" && st.leader("B").Node == "rl1" && n.has(t, "192.0.2.101") && n.has(t, "192.0.2.102")
	}, n)
	termA, termB := st.leader("A").Term, st.leader("B").Term
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(n.dir, "hacoord.yaml"), []byte(fmt.Sprintf(body, "rl1", st.endpoint, n.dir)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hup := func() {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	next := strings.Replace(body, "vips: [192.0.2.101/24]", "vips: [192.0.2.101/24, 192.0.2.103/24]", 1)
	next = strings.Replace(next, `    track_scripts: [{name: chk, script: "test ! -e %[3]s/fail-B", interval: 100ms, timeout: 5s}]`+"\n", "", 1)
	next = strings.Replace(next, "level: info", "level: debug", 1)
	write(next)
	hup()
	eventually(t, "the new VIP bound and the reload logged", func() bool {
		return n.has(t, "192.0.2.103") &&
			strings.Contains(n.log.String(), `"reloaded: log.level info -> debug, A: +vip 192.0.2.103/24, B: -track_script chk"`)
	}, n)
	if !strings.Contains(n.log.String(), `"level":"debug"`) {
		t.Error("no debug line after the reload to log.level debug")
	}
	eventually(t, "B's status without checks, A's with both VIPs", func() bool {
		sa, sb := n.status(t, "A"), n.status(t, "B")
		return len(sb.Checks) == 0 && slices.Equal(sa.VIPs, []string{"192.0.2.101/24", "192.0.2.103/24"})
	}, n)
	eventually(t, "A's master record with both VIPs", func() bool {
		return slices.Equal(st.leader("A").VIPs, []netip.Prefix{netip.MustParsePrefix("192.0.2.101/24"), netip.MustParsePrefix("192.0.2.103/24")})
	}, n)
	if ra, rb := st.leader("A"), st.leader("B"); ra.Term != termA || rb.Term != termB || ra.Node != "rl1" || rb.Node != "rl1" {
		t.Fatalf("after the reload A %+v, B %+v; want rl1 in terms %d and %d", ra, rb, termA, termB)
	}

	write(next + "  - {name: C, vips: [192.0.2.104/24], status_file: %[3]s/C.json}\n")
	hup()
	eventually(t, "the added instance refused", func() bool {
		return strings.Contains(n.log.String(), "reload refused") && strings.Contains(n.log.String(), "instances: A,B to A,B,C")
	}, n)
	if n.has(t, "192.0.2.104") {
		t.Fatal("a refused reload bound the added instance's VIP")
	}
	if ra := st.leader("A"); ra.Term != termA || !n.has(t, "192.0.2.103") {
		t.Fatalf("after the refused reload A %+v, VIPs %v", ra, n.vips(t))
	}

	write(body) // the VIP removed again
	hup()
	eventually(t, "the removed VIP unbound", func() bool {
		return !n.has(t, "192.0.2.103") && strings.Contains(n.log.String(), `"reloaded: log.level debug -> info, A: -vip 192.0.2.103/24, B: +track_script chk"`)
	}, n)
	if ra := st.leader("A"); ra.Term != termA || !n.has(t, "192.0.2.101") || !n.has(t, "192.0.2.102") {
		t.Fatalf("after removing a VIP: A %+v, VIPs %v; want term %d and 101, 102 still bound", ra, n.vips(t), termA)
	}
}
