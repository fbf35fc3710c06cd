package main

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hacoord/hacoord/internal/etcdtest"
	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
)

// checkFile writes body to a file and runs check-config on it with args.
func checkFile(t *testing.T, body string, args ...string) (int, string, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hacoord.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return runCLI(t, append([]string{"check-config", "--config", p}, args...)...)
}

// wantAll fails t unless stderr has every want.
func wantAll(t *testing.T, code int, stderr string, want ...string) {
	t.Helper()
	if code != exitConfig {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitConfig, stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr does not name %q:\n%s", w, stderr)
		}
	}
}

// Every refusal names the flag it came from, with the value.
func TestFlagRefusalsNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"default route", []string{"--vip", "0.0.0.0/0"}, "--vip 0.0.0.0/0: VIP 0.0.0.0/0 is not a unicast address"},
		{"slash zero", []string{"--vip", "10.0.0.1/0"}, "--vip 10.0.0.1/0: VIP 10.0.0.1/0 has prefix length 0"},
		{"loopback", []string{"--vip", "127.0.0.2/8"}, "--vip 127.0.0.2/8: VIP 127.0.0.2/8 is not a unicast address"},
		{"multicast", []string{"--vip", "224.0.0.5/32"}, "--vip 224.0.0.5/32: VIP 224.0.0.5/32 is not a unicast address"},
		{"multicast v6", []string{"--vip", "ff02::1/128"}, "--vip ff02::1/128: VIP ff02::1/128 is not a unicast address"},
		{"subnet broadcast", []string{"--vip", "10.0.0.255/24"}, "--vip 10.0.0.255/24: VIP 10.0.0.255/24 is the broadcast address of its subnet 10.0.0.0/24"},
		{"limited broadcast", []string{"--vip", "255.255.255.255/32"}, "--vip 255.255.255.255/32: VIP 255.255.255.255/32 is the broadcast address"},
		{"etcd scheme", []string{"--endpoints", "ftp://10.0.0.1:2379"}, `--endpoints ftp://10.0.0.1:2379: scheme "ftp": etcd endpoints are http:// or https:// URLs`},
		{"etcd unix", []string{"--endpoints", "unix:///run/etcd.sock"}, `scheme "unix"`},
		{"etcd no port", []string{"--endpoints", "http://10.0.0.1"}, "--endpoints http://10.0.0.1: want http(s)://host:port"},
		{"zk port high", []string{"--backend", "zk", "--endpoints", "zk1:2181,zk2:70000/ha"}, `--endpoints zk2:70000/ha: server zk2:70000: port "70000" out of range 1-65535`},
		{"zk port zero", []string{"--backend", "zk", "--endpoints", "zk1:0"}, `port "0" out of range`},
		{"no interface", []string{"--interface", "nosuch0"}, "--interface nosuch0: nosuch0: Link not found"},
		{"no tracked interface", []string{"--track-interface", "nosuch1"}, "--track-interface: nosuch1: Link not found"},
		{"vip label", []string{"--vip-label", "eth0:x"}, `--vip-label: label "eth0:x" does not start with the interface name "lo"`},
		{"garp count", []string{"--garp-count", "-1"}, "--garp-count: announce count -1 is negative"},
		{"margin", []string{"--fence-margin", "5s"}, "--fence-margin: fencing: margin 5s is more than half the TTL 2s"},
		{"password without user", []string{"--password", "x"}, "--password: needs a user"},
		{"cert without key", []string{"--cert", "c.pem"}, "--cert: --cert and --key go together"},
		{"hook", []string{"--notify-hook", "/nonexistent/notify"}, "--notify-hook: exec: \"/nonexistent/notify\""},
		{"unicast_src on etcd", []string{"--vrid", "5"}, ""}, // VRRP keys are ignored by etcd, not refused
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, append(append([]string{"check-config"}, base...), tc.args...)...)
			if tc.want == "" {
				if code != exitOK {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				return
			}
			wantAll(t, code, stderr, tc.want)
		})
	}
}

// Several problems are reported together, each naming its flag, and counted.
func TestSeveralProblemsAtOnce(t *testing.T) {
	code, _, stderr := runCLI(t, "check-config", "--endpoints", "ftp://e:2379", "--interface", "nosuch0",
		"--vip", "127.0.0.1/8", "--vip", "10.0.0.255/24", "--lease-ttl", "1500ms", "--log-level", "loud", "--name", "n1")
	wantAll(t, code, stderr, "hacoord: 6 problems:",
		"--endpoints ftp://e:2379: scheme", "--vip 127.0.0.1/8:", "--vip 10.0.0.255/24:", "--lease-ttl: ttl 1.5s",
		`--log-level: "loud"`, "--interface nosuch0:")
}

const multiHead = `backend: etcd
name: n1
endpoints: [http://127.0.0.1:2379]
interface: lo
`

// In a file, every refusal names its YAML key, down to the list element; instances take the
// top-level keys as defaults.
func TestFileRefusalsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"vips", `instances:
  - name: A
    vips: [0.0.0.0/0]
  - name: B
    vips: [10.0.0.1/24, 127.0.0.1/8, 10.0.0.255/24]
`, []string{"instances[0].vips[0]: VIP 0.0.0.0/0 is not a unicast address", "instances[1].vips[1]: VIP 127.0.0.1/8",
			"instances[1].vips[2]: VIP 10.0.0.255/24 is the broadcast address"}},
		{"top-level vips", "vips: [10.0.0.1/24, 224.0.0.1/32]\n", []string{"vips[1]: VIP 224.0.0.1/32 is not a unicast address"}},
		{"interface", `instances:
  - {name: A, vips: [10.0.0.1/24]}
  - {name: B, vips: [10.0.0.2/24], interface: nosuch0, track_interfaces: [{name: nosuch1}]}
`, []string{"instances[1].interface: nosuch0: Link not found", "instances[1].track_interfaces[0].name: nosuch1: Link not found"}},
		{"names and groups", `instances:
  - {name: A, vips: [10.0.0.1/24]}
  - {name: A, vips: [10.0.0.2/24]}
  - {name: C, group: A, vips: [10.0.0.3/24]}
  - {vips: [10.0.0.4/24]}
  - {name: "x y", vips: [10.0.0.5/24]}
`, []string{`instances[1].name: "A" is also instances[0]'s name`, `instances[2].group: "A" is also A's group`,
			"instances[3].name: required", `instances[4].name: "x y": want a name`}},
		{"shared VIP", `instances:
  - {name: A, vips: [10.0.0.1/24]}
  - {name: B, vips: [10.0.0.1/32]}
`, []string{"instances[1].vips[0]: 10.0.0.1 is also a VIP of A"}},
		{"vrrp", `instances:
  - {name: A, backend: vrrp, vips: [10.0.0.1/24], vrrp: {vrid: 51}}
  - {name: B, backend: vrrp, vips: [10.0.0.2/24], vrrp: {vrid: 51, priority: 300, advert_int: 15ms, version: 2}}
  - {name: C, backend: vrrp, vips: [10.0.0.3/24, 2001:db8::1/64], vrrp: {vrid: 0}}
  - {name: D, backend: consul, vips: [10.0.0.4/24]}
`, []string{"instances[1].vrrp.vrid: 51 on lo is also A's", "instances[1].vrrp.priority: priority 300 out of range",
			"instances[1].vrrp.advert_int: advert-int 15ms: version 2 needs whole seconds", "instances[2].vrrp.vrid: vrid 0 out of range",
			"instances[2].vips[1]: vip 2001:db8::1/64: ", `instances[3].backend: "consul" is not etcd, zk or vrrp`}},
		{"store keys are daemon-wide", "backend: etcd\nname: n1\ninterface: lo\nlease_ttl: 500ms\nendpoints: [gopher://e:1]\ninstances:\n  - {name: A, vips: [10.0.0.1/24]}\n  - {name: B, vips: [10.0.0.2/24]}\n",
			[]string{"hacoord: 2 problems:", "lease_ttl: ttl 500ms", `endpoints[0]: scheme "gopher"`}},
		{"stores mixed", "instances:\n  - {name: A, vips: [10.0.0.1/24]}\n  - {name: B, backend: zk, vips: [10.0.0.2/24]}\n",
			[]string{"backend: instances use both etcd and zk"}},
		{"sync groups", `instances:
  - {name: A, vips: [10.0.0.1/24]}
  - {name: B, vips: [10.0.0.2/24]}
  - {name: C, vips: [10.0.0.3/24]}
sync_groups:
  - {name: G1, instances: [A, B]}
  - {name: G2, instances: [B, Z]}
  - {name: G1, instances: [C]}
`, []string{`sync_groups[1].instances[0]: "B" is already in sync_groups[0]`, `sync_groups[1].instances[1]: "Z" is not the name`,
			`sync_groups[2].name: "G1" is also sync_groups[0]`, "sync_groups[2].instances: a sync group needs at least two instances"}},
		{"ipvs and health", `instances:
  - name: A
    vips: [10.0.0.1/24]
    track_scripts: [{name: chk}]
    virtual_servers: [{address: 10.0.0.1, port: 80, lb_algo: fastest, real_servers: [{address: 10.0.0.2}]}]
`, []string{"instances[0].track_scripts[0].script: required", `instances[0].virtual_servers[0].lb_algo: "fastest"`}},
		{"hooks", "instances:\n  - {name: A, vips: [10.0.0.1/24], hooks: {notify_fault: /nonexistent/x, timeout: -1s}}\n",
			[]string{`instances[0].hooks.notify_fault: exec: "/nonexistent/x"`, "instances[0].hooks.timeout: -1s is negative"}},
		{"unicast_src off vrrp", "instances:\n  - {name: A, vips: [10.0.0.1/24], vrrp: {unicast_src: 10.0.0.9}}\n",
			[]string{"instances[0].vrrp.unicast_src: only for backend vrrp"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body
			if !strings.HasPrefix(body, "backend:") {
				body = multiHead + body
			}
			code, _, stderr := checkFile(t, body)
			wantAll(t, code, stderr, tc.want...)
		})
	}
}

// Decoding errors are reported together, each with its line and key, including inside instances.
func TestFileDecodeErrorsTogether(t *testing.T) {
	code, _, stderr := checkFile(t, multiHead+`lease_ttl: soon
instances:
  - name: A
    vips:
      - 10.0.0.1/24
      - 10.0.0.300/24
    address: nowhere
  - name: B
    vrrp: {unicast_peers: [10.0.0.2, peer]}
    annouce: {count: 1}
`)
	wantAll(t, code, stderr, "line 5 (lease_ttl)", "line 10 (instances[0].vips[1])", `"10.0.0.300/24"`,
		"line 11 (instances[0].address)", `"nowhere" is not an IP address`, "line 13 (instances[1].vrrp.unicast_peers", `"peer"`,
		"line 14 (instances[1].annouce", "field annouce not found")
}

// With an instances: list the instance flags are refused (they would be ambiguous); the daemon-wide
// ones apply.
func TestInstanceFlagsRefusedWithInstances(t *testing.T) {
	body := multiHead + "instances:\n  - {name: A, vips: [10.0.0.1/24]}\n  - {name: B, vips: [10.0.0.2/24]}\n"
	code, _, stderr := checkFile(t, body, "--vip", "10.0.0.9/24", "--vrid", "7", "--name", "n2")
	wantAll(t, code, stderr, "--vip: ", "has an instances: list; set vips there", "--vrid: ", "set vrrp.vrid there")
	if strings.Contains(stderr, "--name") {
		t.Errorf("the daemon-wide --name was refused:\n%s", stderr)
	}
	code, out, stderr := checkFile(t, body, "--name", "n2", "--lease-ttl", "3s")
	if code != exitOK || !strings.Contains(out, "name: n2") || !strings.Contains(out, "lease_ttl: 3s") {
		t.Fatalf("exit %d, stderr %s, out:\n%s", code, stderr, out)
	}
}

// check-config prints every instance: backend, VIPs, VRID or group, the virtual and real servers with
// their effective lb_algo and lb_kind, the sync groups; and the effective YAML, instances taking the
// top-level keys as defaults (lists replace, mappings merge key by key).
func TestCheckConfigPrintsInstances(t *testing.T) {
	code, out, stderr := checkFile(t, multiHead+`vrrp: {priority: 150, advert_int: 2s}
track_scripts: [{name: top, script: "true"}]
instances:
  - name: VI_1
    backend: vrrp
    vips: [10.0.0.100/24, 10.0.1.100/24]
    vrrp: {vrid: 51, version: 2, auth_pass: secret}
    virtual_servers:
      - address: 10.0.0.100
        port: 80
        lb_algo: wrr
        lb_kind: DR
        real_servers:
          - {address: 10.0.0.11, weight: 3, HTTP_GET: {url: [{path: /}]}}
          - {address: 10.0.0.12, lvs_method: TUN}
  - name: VI_2
    group: web
    vips: [10.0.2.100/24]
    track_scripts: [{name: own, script: "true"}]
    virtual_servers: [{address: 10.0.2.100, port: 443, real_servers: [{address: 10.0.2.11}]}]
sync_groups:
  - {name: G1, instances: [VI_1, VI_2]}
`)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"# configuration OK: node n1, 2 instance(s)",
		"# instance VI_1: vrrp on lo, vrid 51, priority 150",
		"#   vips 10.0.0.100/24 10.0.1.100/24",
		"#   virtual server TCP 10.0.0.100:80: lb_algo wrr, lb_kind DR",
		"#     real server 10.0.0.11:80: weight 3, lb_kind DR, HTTP_GET",
		"#     real server 10.0.0.12:80: weight 1, lb_kind TUN, no check",
		"# instance VI_2: etcd on lo, group web",
		"#   virtual server TCP 10.0.2.100:443: lb_algo wlc, lb_kind NAT",
		"# sync group G1: VI_1, VI_2 (VI_1 leads)",
		"advert_int: 2s", "auth_pass: <redacted>", "status_file: /run/hacoord/web.n1.json", "name: own",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "secret") || strings.Count(out, "name: top") != 1 {
		t.Errorf("a secret leaked, or VI_2's track_scripts did not replace the top-level list:\n%s", out)
	}
	// The printed configuration is itself valid and means the same (secrets aside).
	printed := strings.ReplaceAll(out[strings.Index(out, "\nbackend:")+1:], "auth_pass: <redacted>", "auth_pass: secret")
	code2, out2, stderr2 := checkFile(t, printed)
	if code2 != exitOK || out2 != out {
		t.Fatalf("check-config of its own output: exit %d, %s\n%s\nwant\n%s", code2, stderr2, out2, out)
	}
}

// The long form of a VIP ({address, dev, label}, docs/config.md) puts it on another device with its
// own label; check-config checks the device and prints the form back; errors name the element.
func TestLongFormVIP(t *testing.T) {
	code, out, stderr := checkFile(t, multiHead+`vips: [10.0.0.100/24, {address: 10.0.1.100/24, dev: lo, label: "lo:1"}]
`)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"#   vips 10.0.0.100/24 10.0.1.100/24 (dev lo, label lo:1)", "- {address: 10.0.1.100/24, dev: lo, label: 'lo:1'}"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, _, stderr = checkFile(t, multiHead+`instances:
  - name: A
    vips:
      - 10.0.0.100/24
      - {address: 10.0.1.100/24, dev: nosuch0}
      - {address: 10.0.2.100/24, dev: lo, label: eth9:x}
      - {address: 10.0.0.100/24, dev: lo, label: "lo:2"}
`)
	wantAll(t, code, stderr, "instances[0].vips[1].dev: nosuch0: Link not found",
		`instances[0].vips[2].label: label "eth9:x" does not start with the interface name "lo"`,
		"instances[0].vips[3]: 10.0.0.100 is also vips[0], on another device")
	code, _, stderr = checkFile(t, multiHead+`instances:
  - name: A
    vips:
      - {address: 10.0.3.100/24, device: lo}
      - {dev: lo}
`)
	wantAll(t, code, stderr, "line 8 (instances[0].vips[0]", "field device not found in a VIP",
		"line 9 (instances[0].vips[1]", "address: required")
}

// A VIP that is already an address of the interface is refused, naming it and how it shows: with
// another prefix, or as the primary address of its subnet; a VIP hacoord left bound (a secondary
// address, removed at start-up) is not, nor is one the node does not have.
func TestOwnAddressRefused(t *testing.T) {
	testenv.RequireRoot(t)
	a, b := netnstest.New(t, "oa"), netnstest.New(t, "ob")
	la, _, err := netnstest.Veth(a, "eth0", netip.MustParsePrefix("192.0.2.1/24"), b, "eth0", netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"192.0.2.50/24", "2001:db8::1/64"} { // a leftover VIP; the node's IPv6 address
		pfx := netip.MustParsePrefix(p)
		x := &netlink.Addr{IPNet: &net.IPNet{IP: pfx.Addr().AsSlice(), Mask: net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen())}}
		if pfx.Addr().Is4() {
			x.Flags = unix.IFA_F_NODAD // as vip binds it
		}
		if err := a.Netlink.AddrAdd(la, x); err != nil {
			t.Fatal(err)
		}
	}
	check := func(args ...string) (int, string) {
		var code int
		var stderr string
		if err := a.Do(func() error {
			code, _, stderr = runCLI(t, append([]string{"check-config", "--endpoints", "http://127.0.0.1:2379", "--name", "n1", "--interface", "eth0"}, args...)...)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return code, stderr
	}
	code, stderr := check("--vip", "192.0.2.1/24", "--vip", "192.0.2.1/32", "--vip", "2001:db8::1/64")
	wantAll(t, code, stderr,
		"--vip 192.0.2.1/24: 192.0.2.1 is already an address of eth0 (its primary address in 192.0.2.0/24), the interface's own",
		"--vip 192.0.2.1/32: 192.0.2.1 is already an address of eth0 (as 192.0.2.1/24)",
		"--vip 2001:db8::1/64: 2001:db8::1 is already an address of eth0 (bound without nodad)")
	if code, stderr := check("--vip", "192.0.2.50/24", "--vip", "192.0.2.60/24"); code != exitOK {
		t.Fatalf("a VIP hacoord left bound, or one the node lacks, was refused: exit %d: %s", code, stderr)
	}
	code, stderr = check("--vip", "192.0.2.60/24", "--address", "192.0.2.60")
	wantAll(t, code, stderr, "--address 192.0.2.60: 192.0.2.60 is this node's address in the master record, and a VIP too")
}

// hacoord watch reads the store from --config and the group from --instance, --group or the only
// instance; with several instances and neither it says which flag to give.
func TestWatchWithConfig(t *testing.T) {
	srv := etcdtest.Start(t)
	body := "backend: etcd\nname: n1\nendpoints: [http://" + srv.Endpoints()[0] + "]\ninterface: lo\ninstances:\n" +
		"  - {name: A, vips: [10.0.0.1/24]}\n  - {name: B, group: web, vips: [10.0.0.2/24]}\n"
	p := filepath.Join(t.TempDir(), "hacoord.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "watch", "--once", "--config", p)
	wantAll(t, code, stderr, "--group or --instance: "+p+" has 2 instances")
	code, _, stderr = runCLI(t, "watch", "--once", "--config", p, "--instance", "C")
	wantAll(t, code, stderr, `--instance "C": no such instance`)
	for _, args := range [][]string{{"--instance", "B"}, {"--group", "web"}} {
		code, out, stderr := runCLI(t, append([]string{"watch", "--once", "--config", p}, args...)...)
		if code != exitOK || strings.TrimSpace(out) != "{}" {
			t.Errorf("watch %v: exit %d, out %q, stderr %s; want {} (no master of web yet)", args, code, out, stderr)
		}
	}
}
