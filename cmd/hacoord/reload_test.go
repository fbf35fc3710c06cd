package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
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
		{"fence hook", reloadBase, reloadBase + "hooks: {fence: /bin/true}\n", []string{"hooks.fence: changed"}},
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
