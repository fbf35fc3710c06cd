package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

var base = []string{"--endpoints", "http://127.0.0.1:2379", "--interface", "lo", "--vip", "10.0.0.100/24", "--name", "n1"}

func TestUsageErrorsExit2NamingTheProblem(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no interface", []string{"check-config", "--vip", "10.0.0.1/24", "--endpoints", "http://e:2379"}, "--interface: interface is required"},
		{"no vip", []string{"check-config", "--interface", "lo", "--endpoints", "http://e:2379"}, "--vip: no VIPs"},
		{"bad cidr", append([]string{"check-config"}, append(base, "--vip", "10.0.0.300/24")...), `"10.0.0.300/24" for "--vip" flag`},
		{"duplicate vip", append([]string{"check-config"}, append(base, "--vip", "10.0.0.100/24")...), "--vip 10.0.0.100/24: VIP 10.0.0.100 is listed twice"},
		{"no endpoints", []string{"check-config", "--interface", "lo", "--vip", "10.0.0.1/24"}, "--endpoints: no endpoints"},
		{"unknown flag", append([]string{"check-config", "--bogus"}, base...), "bogus"},
		{"unknown backend", append([]string{"check-config", "--backend", "consul"}, base...), `--backend: "consul" is not etcd, zk or vrrp`},
		{"ttl too small", append([]string{"check-config", "--lease-ttl", "500ms"}, base...), "--lease-ttl: ttl 500ms"},
		{"ttl not whole seconds for etcd", append([]string{"check-config", "--lease-ttl", "1500ms"}, base...), "--lease-ttl: ttl 1.5s must be a whole number of seconds"},
		{"bad duration", append([]string{"check-config", "--lease-ttl", "soon"}, base...), "lease-ttl"},
		{"garp interval within locktime", append([]string{"check-config", "--garp-interval", "500ms"}, base...), "--garp-interval: announce repeat interval 500ms"},
		{"log format", append([]string{"check-config", "--log-format", "xml"}, base...), `--log-format: "xml" is not console or json`},
		{"cert without key", append([]string{"check-config", "--cert", "c.pem"}, base...), "--cert and --key"},
		{"zk auth form", append([]string{"check-config", "--backend", "zk", "--zk-auth", "nocolon", "--endpoints", "zk1:2181"}, base[2:]...), "--zk-auth: Auth: want user:password"},
		{"stray argument", append([]string{"stray"}, base...), "stray"},
		{"vrrp without vrid", []string{"check-config", "--backend", "vrrp", "--interface", "lo", "--vip", "10.0.0.1/24"}, "--vrid: vrid 0"},
		{"vrrp v2 sub-second advert", []string{"check-config", "--backend", "vrrp", "--vrid", "51", "--vrrp-version", "2", "--advert-int", "100ms", "--interface", "lo", "--vip", "10.0.0.1/24"}, "--advert-int: advert-int 100ms"},
		{"vrrp bad unicast peer", []string{"check-config", "--backend", "vrrp", "--vrid", "51", "--unicast-peer", "peer1", "--interface", "lo", "--vip", "10.0.0.1/24"}, `"peer1" for "--unicast-peer" flag`},
		{"zk bad chroot", append([]string{"check-config", "--backend", "zk", "--endpoints", "zk1:2181/a//b"}, base[2:]...), "--endpoints: chroot"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, c.args...)
			if code != exitConfig {
				t.Fatalf("exit %d, want %d; stderr: %s", code, exitConfig, stderr)
			}
			if !strings.Contains(stderr, c.want) {
				t.Fatalf("stderr %q does not name %q", stderr, c.want)
			}
		})
	}
}

func TestHelpShowsExamplesAndNoQuorumWarning(t *testing.T) {
	code, out, _ := runCLI(t, "--help")
	if code != exitOK {
		t.Fatalf("--help exit %d", code)
	}
	for _, want := range []string{"Examples:", "--backend etcd --endpoints", "--vrid 51", "NO quorum", "--lease-ttl"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != exitOK || !strings.HasPrefix(out, "hacoord ") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
}

func TestConfigFileWithFlagOverrides(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hacoord.yaml")
	file := `backend: etcd
group: web
name: node1
interface: lo
vips: [10.0.0.100/24, 10.0.0.101/24]
endpoints: [http://10.1.0.1:2379, http://10.1.0.2:2379]
lease_ttl: 3s
etcd:
  user: root
  password: hunter2
`
	if err := os.WriteFile(p, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, "check-config", "--config", p, "--name", "node2", "--vip", "10.0.0.200/24")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"name: node2", "group: web", "10.0.0.200/24", "lease_ttl: 3s", "http://10.1.0.2:2379", "password: <redacted>"} {
		if !strings.Contains(out, want) {
			t.Errorf("effective config lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "10.0.0.101") || strings.Contains(out, "hunter2") {
		t.Errorf("a flag did not replace the file's list, or a secret leaked:\n%s", out)
	}
}

func TestConfigFileErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ body, key string }{
		"unknown key":         {"interface: lo\nvips: [10.0.0.1/24]\nendpoints: [http://e:2379]\nlease_tl: 2s\n", "lease_tl"},
		"bad duration":        {"interface: lo\nvips: [10.0.0.1/24]\nendpoints: [http://e:2379]\nlease_ttl: two\n", "line 4 (lease_ttl)"},
		"bad nested duration": {"interface: lo\nvips: [10.0.0.1/24]\nhooks:\n  timeout: soon\n", "line 4 (hooks.timeout)"},
	} {
		body := tc.body
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yaml")
			if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			code, _, stderr := runCLI(t, "check-config", "--config", p)
			if code != exitConfig || !strings.Contains(stderr, p) || !strings.Contains(stderr, tc.key) {
				t.Fatalf("exit %d, stderr %q: want 2 naming the file and %q", code, stderr, tc.key)
			}
		})
	}
	code, _, stderr := runCLI(t, "check-config", "--config", filepath.Join(dir, "missing.yaml"))
	if code != exitConfig || !strings.Contains(stderr, "missing.yaml") {
		t.Fatalf("missing file: exit %d, %q", code, stderr)
	}
}

func TestEtcdctlUserPasswordForm(t *testing.T) {
	code, out, stderr := runCLI(t, append([]string{"check-config", "--user", "alice:s3cret"}, base...)...)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "user: alice") || strings.Contains(out, "s3cret") {
		t.Fatalf("user:password not split or not redacted:\n%s", out)
	}
}

func TestDaemonRefusesUnknownInterface(t *testing.T) {
	code, _, stderr := runCLI(t, "--endpoints", "http://127.0.0.1:1", "--interface", "nosuch0", "--vip", "10.0.0.100/24", "--name", "n1")
	if code != exitConfig || !strings.Contains(stderr, "--interface nosuch0: nosuch0: Link not found") {
		t.Fatalf("exit %d, stderr %q: want 2 naming the interface", code, stderr)
	}
}

// The example configurations shipped in deploy/ are valid and mean what they say: the daemon's
// mapping and validation accept them (here, without the machine's interfaces), ...
func TestExampleConfigsMapAndValidate(t *testing.T) {
	for _, f := range []string{"../../deploy/hacoord.example.yaml", "../../deploy/hacoord.instances.example.yaml"} {
		fv := defaultFlagValues()
		s, err := load(pflag.NewFlagSet("t", pflag.ContinueOnError), &fv, f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if _, err := buildPlan(s); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// ... and check-config, on a node with their interfaces (eth0, eth1 in a namespace), passes them
// and prints what they mean.
func TestExampleConfigsCheck(t *testing.T) {
	testenv.RequireRoot(t)
	ns, peer := netnstest.New(t, "ex"), netnstest.New(t, "ey")
	for i, dev := range []string{"eth0", "eth1"} {
		p := netip.MustParsePrefix(fmt.Sprintf("10.%d.0.11/24", i))
		if _, _, err := netnstest.Veth(ns, dev, p, peer, dev, netip.Prefix{}); err != nil {
			t.Fatal(err)
		}
	}
	for f, wants := range map[string][]string{
		"../../deploy/hacoord.example.yaml": {"group: web", "lb_algo: wrr", "name: haproxy", "fence_guard: true", "address: 10.0.0.11",
			"#   virtual server TCP 10.0.0.100:80: lb_algo wrr, lb_kind DR"},
		"../../deploy/hacoord.instances.example.yaml": {"# configuration OK: node node1, 3 instance(s)",
			"# instance ext: etcd on eth0, group ext", "# instance int: etcd on eth1, group int",
			"# instance legacy: vrrp on eth0, vrid 51, priority 150", "10.1.0.200/24 (dev eth1, label eth1:legacy)",
			"#   virtual server TCP 10.0.0.100:443: lb_algo wlc, lb_kind NAT", "# sync group router: ext, int (ext leads)"},
	} {
		var code int
		var out, stderr string
		if err := ns.Do(func() error { code, out, stderr = runCLI(t, "check-config", "--config", f); return nil }); err != nil {
			t.Fatal(err)
		}
		if code != exitOK {
			t.Fatalf("%s: exit %d: %s", f, code, stderr)
		}
		for _, want := range wants {
			if !strings.Contains(out, want) {
				t.Errorf("%s: effective config lacks %q:\n%s", f, want, out)
			}
		}
	}
}

func TestTrackAndIPVSConfigErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	head := "interface: lo\nvips: [10.0.0.1/24]\nendpoints: [http://e:2379]\n"
	for name, c := range map[string]struct{ body, want string }{
		"script without name":   {"track_scripts: [{script: 'true'}]\n", "track_scripts[0].name"},
		"script without script": {"track_scripts: [{name: a}]\n", "track_scripts[0].script"},
		"duplicate script":      {"track_scripts: [{name: a, script: 'true'}, {name: a, script: 'true'}]\n", `track_scripts[1].name: "a" is also track_scripts[0]`},
		"bad scheduler":         {"virtual_servers: [{address: 10.0.0.1, port: 80, lb_algo: fastest, real_servers: [{address: 10.0.0.2}]}]\n", `virtual_servers[0].lb_algo: "fastest"`},
		"bad real server":       {"virtual_servers: [{address: 10.0.0.1, port: 80, real_servers: [{address: nope}]}]\n", "nope"},
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yaml")
			if err := os.WriteFile(p, []byte(head+c.body), 0o600); err != nil {
				t.Fatal(err)
			}
			code, _, stderr := runCLI(t, "check-config", "--config", p)
			if code != exitConfig || !strings.Contains(stderr, c.want) {
				t.Fatalf("exit %d, stderr %q: want 2 naming %q", code, stderr, c.want)
			}
		})
	}
}

func TestTrackFlagsAddChecks(t *testing.T) {
	code, out, stderr := runCLI(t, append([]string{"check-config", "--track-script", "pidof nginx", "--track-interface", "lo"}, base...)...)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"script: pidof nginx", "name: script-1", "name: lo"} {
		if !strings.Contains(out, want) {
			t.Errorf("effective config lacks %q:\n%s", want, out)
		}
	}
}
