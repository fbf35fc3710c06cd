package keepalivedconf

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const confPath = "/etc/keepalived/keepalived.conf"

// importString imports conf (as /etc/keepalived/keepalived.conf) and returns the output decoded as
// generic YAML and the diagnostics without the file name ("12: state: ...").
func importString(t *testing.T, conf string, opt ConvertOptions) (any, []string, error) {
	t.Helper()
	out, ds, err := Import(confPath, Options{ParseOptions: ParseOptions{FS: MapFS{confPath: conf}}, ConvertOptions: opt})
	var lines []string
	for _, d := range ds {
		lines = append(lines, strings.TrimPrefix(d.String(), confPath+":"))
	}
	if err != nil {
		return nil, lines, err
	}
	var tree any
	if err := yaml.Unmarshal(out, &tree); err != nil {
		t.Fatalf("output is not YAML: %v\n%s", err, out)
	}
	return tree, lines, nil
}

var pathPart = regexp.MustCompile(`^([^\[]*)((?:\[\d+\])*)$`)

// at returns the value at a dotted path ("instances[0].vrrp.priority") as fmt.Sprint prints it,
// or "<none>".
func at(tree any, path string) string {
	v := tree
	for _, part := range strings.Split(path, ".") {
		m := pathPart.FindStringSubmatch(part)
		if m == nil {
			return "<bad path>"
		}
		if m[1] != "" {
			mm, ok := v.(map[string]any)
			if !ok {
				return "<none>"
			}
			if v, ok = mm[m[1]]; !ok {
				return "<none>"
			}
		}
		for _, idx := range regexp.MustCompile(`\d+`).FindAllString(m[2], -1) {
			i, _ := strconv.Atoi(idx)
			l, ok := v.([]any)
			if !ok || i >= len(l) {
				return "<none>"
			}
			v = l[i]
		}
	}
	return fmt.Sprint(v)
}

type convCase struct {
	name string
	conf string
	opt  ConvertOptions
	// want maps paths of the output to values.
	want map[string]string
	// diags are the expected diagnostics, each a prefix of one ("12: state: (VI_1) meaning
	// changes"); every diagnostic must be expected.
	diags []string
	// err, when set, is a substring of the expected error.
	err string
}

func runConvCases(t *testing.T, cases []convCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tree, ds, err := importString(t, tc.conf, tc.opt)
			switch {
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("err = %v, want %q", err, tc.err)
			case tc.err == "" && err != nil:
				t.Fatalf("err = %v\ndiagnostics:\n%s", err, strings.Join(ds, "\n"))
			}
			for path, want := range tc.want {
				if got := at(tree, path); got != want {
					t.Errorf("%s = %s, want %s", path, got, want)
				}
			}
			matched := make([]bool, len(tc.diags))
			for _, d := range ds {
				found := false
				for i, w := range tc.diags {
					if !matched[i] && strings.HasPrefix(d, w) {
						matched[i], found = true, true
						break
					}
				}
				if !found {
					t.Errorf("unexpected diagnostic: %s", d)
				}
			}
			for i, w := range tc.diags {
				if !matched[i] {
					t.Errorf("missing diagnostic: %s", w)
				}
			}
		})
	}
}

// base is a minimal valid instance; its body lines start at line 2.
func base(body string) string {
	return "vrrp_instance VI_1 {\n" + body + " interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n  10.0.0.100/24\n }\n}\n"
}

// TestGlobalDefs: global_defs (keepalived.conf(5) "Global definitions").
func TestGlobalDefs(t *testing.T) {
	runConvCases(t, []convCase{
		{
			name: "router_id is the node name; keepalived's defaults are written out",
			conf: "global_defs {\n router_id lb1\n}\n" + base(""),
			want: map[string]string{
				"backend": "vrrp", "name": "lb1", "group": "VI_1", "interface": "eth0", "vips": "[10.0.0.100/24]",
				"vrrp.vrid": "51", "vrrp.priority": "100", "vrrp.advert_int": "1s", "vrrp.version": "2",
				"vrrp.nopreempt": "false", "vrrp.preempt_delay": "0s",
				"announce.count": "5", "announce.repeat": "1", "announce.interval": "5s", "announce.refresh": "0s",
			},
		},
		{
			name: "vrrp_version 3",
			conf: "global_defs {\n vrrp_version 3\n}\n" + base(""),
			want: map[string]string{"vrrp.version": "3"},
		},
		{
			name:  "vrrp_version out of range",
			conf:  "global_defs {\n vrrp_version 4\n}\n" + base(""),
			want:  map[string]string{"vrrp.version": "2"},
			diags: []string{`2: vrrp_version: "4" is not 2 or 3; ignored`},
		},
		{
			name: "e-mail, script security and other daemon settings are dropped, each at its line",
			conf: "global_defs {\n notification_email {\n  a@b\n }\n smtp_server 127.0.0.1\n enable_script_security\n script_user nobody\n lvs_flush\n vrrp_strict\n}\n" + base(""),
			diags: []string{
				"2: notification_email: dropped: hacoord sends no e-mail",
				"5: smtp_server: dropped: hacoord sends no e-mail",
				"6: enable_script_security: dropped",
				"7: script_user: dropped: hacoord runs scripts as its own user",
				"8: lvs_flush: dropped",
				"9: vrrp_strict: dropped: hacoord has no strict mode",
			},
		},
		{
			name:  "unknown keyword in global_defs, with a block",
			conf:  "global_defs {\n frobnicate {\n  x\n }\n router_id a\n}\n" + base(""),
			want:  map[string]string{"name": "a"},
			diags: []string{"2: frobnicate: unknown keyword in global_defs, skipped with its block"},
		},
		{
			name: "GARP schedule: delay, repeat, refresh, refresh_repeat",
			conf: "global_defs {\n vrrp_garp_master_delay 10\n vrrp_garp_master_repeat 3\n vrrp_garp_master_refresh 60\n vrrp_garp_master_refresh_repeat 2\n}\n" + base(""),
			want: map[string]string{"announce.count": "3", "announce.repeat": "1", "announce.interval": "10s", "announce.refresh": "1m0s"},
			diags: []string{
				"3: vrrp_garp_master_repeat: meaning changes: hacoord sends 3 rounds at once but one round after garp_master_delay",
				"5: vrrp_garp_master_refresh_repeat: meaning changes: hacoord sends one round per refresh, not 2",
			},
		},
		{
			name: "no second set (delay 0); refresh of 1s; message gap",
			conf: "global_defs {\n vrrp_garp_master_delay 0\n vrrp_garp_master_refresh 1\n vrrp_garp_interval 0.001\n vrrp_garp_lower_prio_repeat 2\n}\n" + base(""),
			want: map[string]string{"announce.count": "5", "announce.repeat": "0", "announce.interval": "1.1s", "announce.refresh": "1.1s"},
			diags: []string{
				"3: vrrp_garp_master_refresh: 1s becomes 1.1s",
				"4: vrrp_garp_interval: dropped: hacoord sends the messages of a round back to back",
				"5: vrrp_garp_lower_prio_repeat: dropped: hacoord does not re-announce on a lower-priority advert",
			},
		},
		{
			name:  "a 1s delay becomes 1.1s; repeat 0 becomes 1 as in keepalived",
			conf:  "global_defs {\n vrrp_garp_master_delay 1\n vrrp_garp_master_repeat 0\n}\n" + base(""),
			want:  map[string]string{"announce.count": "1", "announce.repeat": "1", "announce.interval": "1.1s"},
			diags: []string{"2: vrrp_garp_master_delay: 1s becomes 1.1s", "3: vrrp_garp_master_repeat: must be greater than 0; set to 1"},
		},
		{
			name: "vrrp_min_garp: one message, no second set",
			conf: "global_defs {\n vrrp_min_garp\n}\n" + base(""),
			want: map[string]string{"announce.count": "1", "announce.repeat": "0", "announce.refresh": "0s"},
		},
		{
			name: "the instance's garp_master_* override the global ones",
			conf: "global_defs {\n vrrp_garp_master_delay 10\n}\n" + base(" garp_master_delay 3\n garp_master_refresh 30\n"),
			want: map[string]string{"announce.interval": "3s", "announce.refresh": "30s"},
		},
		{
			name:  "a non-default multicast group",
			conf:  "global_defs {\n vrrp_mcast_group4 224.0.0.19\n}\n" + base(""),
			diags: []string{"2: vrrp_mcast_group4: dropped: hacoord sends VRRP adverts to 224.0.0.18"},
		},
	})
}

// TestVRRPScript: vrrp_script and track_script (keepalived.conf(5) "VRRP script(s)").
func TestVRRPScript(t *testing.T) {
	runConvCases(t, []convCase{
		{
			name: "every keyword, quoted command with arguments",
			conf: "vrrp_script chk {\n script \"/usr/bin/killall -0 haproxy\"\n interval 2\n timeout 3\n weight -20\n rise 2\n fall 3\n}\n" +
				base(" track_script {\n  chk\n }\n"),
			want: map[string]string{
				"track_scripts[0].name": "chk", "track_scripts[0].script": "/usr/bin/killall -0 haproxy",
				"track_scripts[0].interval": "2s", "track_scripts[0].timeout": "3s", "track_scripts[0].weight": "-20",
				"track_scripts[0].rise": "2", "track_scripts[0].fall": "3",
			},
		},
		{
			name: "keepalived's defaults: interval 1s, timeout the interval, weight 0, rise and fall 1",
			conf: "vrrp_script chk {\n script /bin/true\n}\n" + base(" track_script {\n  chk\n }\n"),
			want: map[string]string{
				"track_scripts[0].interval": "1s", "track_scripts[0].timeout": "1s", "track_scripts[0].weight": "0",
				"track_scripts[0].rise": "1", "track_scripts[0].fall": "1",
			},
		},
		{
			name: "weight override in track_script; reverse is dropped",
			conf: "vrrp_script a {\n script /bin/a\n weight 10\n}\nvrrp_script b {\n script /bin/b\n weight -5 reverse\n}\n" +
				base(" track_script {\n  a weight -30\n  b\n }\n"),
			want:  map[string]string{"track_scripts[0].weight": "-30", "track_scripts[1]": "<none>"},
			diags: []string{"12: track_script: (VI_1) dropped b: hacoord has no reverse tracking"},
		},
		{
			name: "a parameter with spaces cannot be expressed; unquoted words after the command are ignored",
			conf: "vrrp_script a {\n script \"/bin/sh -c 'pidof x || exit 1'\"\n}\nvrrp_script b {\n script /bin/pidof haproxy\n}\n" +
				base(" track_script {\n  a\n  b\n }\n"),
			want: map[string]string{"track_scripts[0].script": "/bin/sh -c pidof x || exit 1", "track_scripts[1].script": "/bin/pidof"},
			diags: []string{
				`2: script: (a) meaning changes: hacoord splits the command on blanks and has no quoting, so the argument "pidof x || exit 1" becomes several`,
				`5: script: extra words "haproxy" after the command are ignored`,
			},
		},
		{
			name: "values out of keepalived's ranges",
			conf: "vrrp_script a {\n script /bin/a\n interval 0\n weight 300\n rise 0\n user nobody\n init_fail\n}\n" +
				base(" track_script {\n  a\n }\n"),
			want: map[string]string{"track_scripts[0].interval": "1s", "track_scripts[0].weight": "0", "track_scripts[0].rise": "1"},
			diags: []string{
				"3: interval: must be greater than 0; set to 1",
				`4: weight: "300" must be in [-253, 253]; weight 0`,
				`5: rise: "0" is not a whole number from 1; set to 1`,
				"6: user: dropped: hacoord runs scripts as its own user",
			},
		},
		{
			name: "unused script, script without a command, and one tracked before it is defined",
			conf: "vrrp_script unused {\n script /bin/x\n}\nvrrp_script empty {\n interval 2\n}\n" +
				base(" track_script {\n  later\n }\n") + "vrrp_script later {\n script /bin/later\n}\n",
			diags: []string{
				"1: vrrp_script: unused is not used",
				"4: vrrp_script: empty has no script; removed",
				"9: track_script: (VI_1) script later not found",
				"17: vrrp_script: later is not used",
			},
		},
		{
			name:  "track_script with an unknown option is ignored, as keepalived does",
			conf:  "vrrp_script a {\n script /bin/a\n}\n" + base(" track_script {\n  a reverse\n }\n"),
			want:  map[string]string{"track_scripts": "<none>"},
			diags: []string{`6: track_script: (VI_1) unknown option "reverse"; a ignored`, "1: vrrp_script: a is not used"},
		},
	})
}

// TestVRRPInstance: vrrp_instance (keepalived.conf(5) "VRRP instance(s)").
func TestVRRPInstance(t *testing.T) {
	runConvCases(t, []convCase{
		{
			name:  "state MASTER without a priority is the address owner, 255",
			conf:  base(" state MASTER\n"),
			want:  map[string]string{"vrrp.priority": "255"},
			diags: []string{"2: state: (VI_1) meaning changes: hacoord has no initial state; the priority decides who is master (priority 255, which keepalived gives a MASTER without a priority)"},
		},
		{
			name:  "state BACKUP with a priority",
			conf:  base(" state BACKUP\n priority 90\n"),
			want:  map[string]string{"vrrp.priority": "90"},
			diags: []string{"2: state: (VI_1) meaning changes: hacoord has no initial state; the priority decides who is master (priority 90)"},
		},
		{
			name:  "unknown state",
			conf:  base(" state SLAVE\n"),
			diags: []string{`2: state: (VI_1) unknown state "SLAVE"; BACKUP`, "2: state: (VI_1) meaning changes"},
		},
		{
			name:  "priority 0 is out of range: keepalived uses 100",
			conf:  base(" priority 0\n"),
			want:  map[string]string{"vrrp.priority": "100"},
			diags: []string{`2: priority: (VI_1) "0" is not valid: must be between 1 and 255; the default 100 is used`},
		},
		{
			name:  "priority above 255",
			conf:  base(" priority 256\n"),
			want:  map[string]string{"vrrp.priority": "100"},
			diags: []string{`2: priority: (VI_1) "256" is not valid`},
		},
		{
			name:  "virtual_router_id out of 1..255 is ignored, and then the instance has none",
			conf:  "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 256\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n",
			err:   "keepalived.conf:1: vrrp_instance: (VI_1) the virtual router id must be set",
			diags: []string{`3: virtual_router_id: (VI_1) "256" is not valid: must be between 1 and 255; ignored`},
		},
		{
			name:  "advert_int below 1s with VRRPv2 is rounded to 1s",
			conf:  base(" advert_int 0.3\n"),
			want:  map[string]string{"vrrp.advert_int": "1s"},
			diags: []string{"2: advert_int: (VI_1) VRRPv2 advertisement interval 300ms must be whole seconds; rounded to 1s"},
		},
		{
			name:  "advert_int 1.5 with VRRPv2 rounds to 2s",
			conf:  base(" advert_int 1.5\n"),
			want:  map[string]string{"vrrp.advert_int": "2s"},
			diags: []string{"2: advert_int: (VI_1) VRRPv2 advertisement interval 1.5s must be whole seconds; rounded to 2s"},
		},
		{
			name: "advert_int in centiseconds with VRRPv3",
			conf: base(" version 3\n advert_int 0.25\n"),
			want: map[string]string{"vrrp.advert_int": "250ms", "vrrp.version": "3"},
		},
		{
			name:  "advert_int 0 is not valid",
			conf:  base(" advert_int 0\n"),
			want:  map[string]string{"vrrp.advert_int": "1s"},
			diags: []string{`2: advert_int: (VI_1) "0" is not valid: must be from 0.01 to 255 seconds; ignored`},
		},
		{
			name: "nopreempt and preempt_delay",
			conf: base(" nopreempt\n") + "vrrp_instance VI_2 {\n preempt_delay 300\n interface eth0\n virtual_router_id 52\n virtual_ipaddress {\n  10.0.0.101\n }\n}\n",
			want: map[string]string{
				"instances[0].vrrp.nopreempt": "true", "instances[1].vrrp.nopreempt": "false",
				"instances[1].vrrp.preempt_delay": "5m0s", "instances[1].vips": "[10.0.0.101/32]",
			},
		},
		{
			name:  "preempt_delay with nopreempt is reset, as keepalived does",
			conf:  base(" nopreempt\n preempt_delay 10\n"),
			want:  map[string]string{"vrrp.preempt_delay": "0s", "vrrp.nopreempt": "true"},
			diags: []string{"3: preempt_delay: (VI_1) incompatible with nopreempt; reset"},
		},
		{
			name: "preempt after nopreempt turns preemption back on",
			conf: base(" nopreempt\n preempt\n"),
			want: map[string]string{"vrrp.nopreempt": "false"},
		},
		{
			name: "authentication PASS, auth_pass truncated to 8 characters",
			conf: base(" authentication {\n  auth_type PASS\n  auth_pass 0123456789\n }\n"),
			want: map[string]string{"vrrp.auth_pass": "01234567"},
			diags: []string{
				"4: auth_pass: (VI_1) truncated to its first 8 characters",
			},
		},
		{
			name:  "authentication AH is dropped",
			conf:  base(" authentication {\n  auth_type AH\n  auth_pass x\n }\n"),
			want:  map[string]string{"vrrp.auth_pass": "<none>"},
			diags: []string{"3: auth_type: (VI_1) dropped AH: hacoord has no IPsec AH authentication"},
		},
		{
			name:  "authentication with VRRPv3 is ignored, as keepalived does",
			conf:  base(" version 3\n authentication {\n  auth_type PASS\n  auth_pass x\n }\n"),
			want:  map[string]string{"vrrp.auth_pass": "<none>"},
			diags: []string{"4: auth_type: (VI_1) VRRP version 3 does not support authentication; ignored"},
		},
		{
			name: "VIPs: /len, a bare address is /32, dev equal to the interface, one shared label",
			conf: "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n  10.0.0.1/24 dev eth0 label eth0:1\n  10.0.0.2 label eth0:1\n }\n}\n",
			want: map[string]string{"vips": "[10.0.0.1/24 10.0.0.2/32]", "vip_label": "eth0:1"},
		},
		{
			name: "VIP on another device, and labels that differ: the long form",
			conf: "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n  10.0.0.1/24 dev eth1 label eth1:1\n  10.0.0.2/24 label eth0:a\n  10.0.0.3/24\n }\n}\n",
			want: map[string]string{
				"vips[0].address": "10.0.0.1/24", "vips[0].dev": "eth1", "vips[0].label": "eth1:1",
				"vips[1].address": "10.0.0.2/24", "vips[1].label": "eth0:a", "vips[2]": "10.0.0.3/24", "vip_label": "<none>",
			},
			diags: []string{"5: virtual_ipaddress: (VI_1) 10.0.0.1/24 goes on eth1, not on eth0: written in the long VIP form"},
		},
		{
			name: "VIP options hacoord does not set, a label not starting with the device, a bad address",
			conf: "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n  10.0.0.1/24 brd 10.0.0.255 scope link\n  10.0.0.2/24 label vip1\n  10.0.0.300\n  10.0.0.4/33\n }\n}\n",
			want: map[string]string{"vips": "[10.0.0.1/24 10.0.0.2/24 10.0.0.4/32]"},
			diags: []string{
				`5: virtual_ipaddress: (VI_1) dropped the options "brd 10.0.0.255 scope link" of 10.0.0.1/24`,
				"6: virtual_ipaddress: (VI_1) dropped label vip1 of 10.0.0.2/24: hacoord needs a label that starts with the device name (eth0)",
				`7: virtual_ipaddress: (VI_1) "10.0.0.300" is not an IP address; skipped`,
				`8: virtual_ipaddress: (VI_1) invalid prefix length "33" for 10.0.0.4; /32 is used`,
			},
		},
		{
			name: "excluded VIPs are not in VRRP adverts, so they are dropped; another family is ignored",
			conf: "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n  10.0.0.1/24\n  2001:db8::1/64\n }\n virtual_ipaddress_excluded {\n  10.0.0.50/24\n }\n}\n",
			want: map[string]string{"vips": "[10.0.0.1/24]"},
			diags: []string{
				"6: virtual_ipaddress: (VI_1) 2001:db8::1/64: the address family must match the instance's; ignored",
				"9: virtual_ipaddress_excluded: (VI_1) dropped 10.0.0.50/24: hacoord lists every VIP in its adverts",
			},
		},
		{
			name: "an IPv6 instance runs VRRPv3",
			conf: "vrrp_instance VI_6 {\n interface eth0\n virtual_router_id 61\n virtual_ipaddress {\n  fe80::1/64\n  2001:db8::1/64\n }\n}\n",
			want: map[string]string{"vrrp.version": "3", "vips": "[fe80::1/64 2001:db8::1/64]"},
		},
		{
			name: "unicast_src_ip and unicast_peer",
			conf: base(" unicast_src_ip 10.0.0.11\n unicast_peer {\n  10.0.0.12\n  10.0.0.13 min_ttl 250\n  not-an-ip\n }\n"),
			want: map[string]string{"vrrp.unicast_src": "10.0.0.11", "vrrp.unicast_peers": "[10.0.0.12 10.0.0.13]"},
			diags: []string{
				"5: unicast_peer: (VI_1) dropped the min_ttl/max_ttl of 10.0.0.13",
				`6: unicast_peer: (VI_1) malformed peer address "not-an-ip"; skipped`,
			},
		},
		{
			name:  "unicast_src_ip without peers: keepalived multicasts",
			conf:  base(" unicast_src_ip 10.0.0.11\n"),
			want:  map[string]string{"vrrp.unicast_src": "<none>"},
			diags: []string{"2: unicast_src_ip: (VI_1) a unicast keyword without unicast peers: multicast is used"},
		},
		{
			name: "track_interface with and without weight; reverse is dropped",
			conf: base(" track_interface {\n  eth1\n  eth2 weight -10\n  eth3 weight 5 reverse\n  eth1\n }\n"),
			want: map[string]string{
				"track_interfaces[0].name": "eth0", "track_interfaces[0].weight": "0",
				"track_interfaces[1].name": "eth1", "track_interfaces[1].weight": "0",
				"track_interfaces[2].name": "eth2", "track_interfaces[2].weight": "-10", "track_interfaces[3]": "<none>",
			},
			diags: []string{"5: track_interface: (VI_1) dropped eth3: hacoord has no reverse tracking", "6: track_interface: (VI_1) duplicate eth1; ignored"},
		},
		{
			name:  "the own interface is tracked with weight 0, as keepalived does; an entry naming it is ignored",
			conf:  base(" track_interface {\n  eth0 weight 20\n }\n"),
			want:  map[string]string{"track_interfaces[0].name": "eth0", "track_interfaces[0].weight": "0", "track_interfaces[1]": "<none>"},
			diags: []string{"3: track_interface: (VI_1) eth0 ignored: it is the instance's own interface"},
		},
		{
			name: "notify scripts: a hook is a program, notify's arguments differ, the user is dropped, the first wins",
			conf: base(" notify_master \"/etc/ka/master.sh VI_1\" root\n notify_backup /etc/ka/backup.sh\n notify_fault /etc/ka/fault.sh\n notify_stop /etc/ka/stop.sh\n notify /etc/ka/notify.sh\n notify_backup /etc/ka/other.sh\n"),
			want: map[string]string{
				"hooks.notify_master": "/etc/ka/master.sh", "hooks.notify_backup": "/etc/ka/backup.sh",
				"hooks.notify_fault": "/etc/ka/fault.sh", "hooks.notify_stop": "/etc/ka/stop.sh", "hooks.notify": "/etc/ka/notify.sh",
			},
			diags: []string{
				`2: notify_master: (VI_1) meaning changes: hacoord runs /etc/ka/master.sh without the arguments "VI_1"`,
				`2: notify_master: (VI_1) dropped the user "root"`,
				"6: notify: (VI_1) meaning changes: hacoord's notify hook gets GROUP NODE ROLE TERM",
				"7: notify_backup: (VI_1) already given at line 3; ignored",
			},
		},
		{
			name: "keywords hacoord has no counterpart for, and an unknown one with a block",
			conf: base(" use_vmac\n smtp_alert\n virtual_routes {\n  10.1.0.0/16 via 10.0.0.254\n }\n mystery {\n  a b\n }\n dont_track_primary\n"),
			want: map[string]string{"track_interfaces": "<none>"},
			diags: []string{
				"2: use_vmac: dropped: hacoord binds VIPs on the interface itself",
				"3: smtp_alert: dropped: hacoord sends no e-mail",
				"4: virtual_routes: dropped: hacoord manages only its VIPs",
				"7: mystery: unknown keyword in vrrp_instance, skipped with its block",
			},
		},
		{
			name:  "a scalar keyword followed by a block",
			conf:  base(" priority 120 {\n  x\n }\n"),
			want:  map[string]string{"vrrp.priority": "120"},
			diags: []string{"2: priority: takes no block; the block is ignored"},
		},
		{
			name:  "no interface: the device of the first VIP",
			conf:  "vrrp_instance VI_1 {\n virtual_router_id 51\n virtual_ipaddress {\n  10.0.0.1/24 dev eth1\n }\n}\n",
			want:  map[string]string{"interface": "eth1", "vips": "[10.0.0.1/24]"},
			diags: []string{"1: vrrp_instance: (VI_1) no interface: eth1 (the device of 10.0.0.1/24) is used"},
		},
		{
			name: "no interface at all",
			conf: "vrrp_instance VI_1 {\n virtual_router_id 51\n virtual_ipaddress {\n  10.0.0.1/24\n }\n}\n",
			err:  "keepalived.conf:1: vrrp_instance: (VI_1) no interface, and no VIP names a dev",
		},
		{
			name: "no VIP",
			conf: "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n}\n",
			err:  "keepalived.conf:1: vrrp_instance: (VI_1) no VIP left to manage",
		},
		{
			name: "two multicast instances with one VRID on one interface: keepalived refuses them",
			conf: base("") + "vrrp_instance VI_2 {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n  10.0.0.101\n }\n}\n",
			err:  "keepalived.conf:10: virtual_router_id: (VI_2) duplicate VRID conflict with VI_1 (VRID 51 on eth0)",
		},
		{
			name:  "one VRID on two interfaces is fine; a name hacoord cannot use as a group",
			conf:  base("") + "vrrp_instance \"VI/2 b\" {\n interface eth1\n virtual_router_id 51\n virtual_ipaddress {\n  10.0.1.101\n }\n}\n",
			want:  map[string]string{"instances[1].name": "VI/2 b", "instances[1].group": "VI_2_b"},
			diags: []string{"8: vrrp_instance: (VI/2 b) its group is VI_2_b"},
		},
		{
			name: "nothing to import",
			conf: "global_defs {\n router_id a\n}\n",
			err:  "nothing to import",
		},
	})
}

// TestSyncGroup: vrrp_sync_group (keepalived.conf(5) "VRRP synchronization group(s)"): "when
// instances are grouped, any track scripts/files configured against member VRRP instances will
// have their tracking weights automatically set to zero".
func TestSyncGroup(t *testing.T) {
	two := func(extra1 string) string {
		return "vrrp_instance A {\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n  10.0.0.1\n }\n" + extra1 + "}\n" +
			"vrrp_instance B {\n interface eth1\n virtual_router_id 2\n virtual_ipaddress {\n  10.0.1.1\n }\n}\n"
	}
	script := "vrrp_script w {\n script /bin/w\n weight -20\n}\nvrrp_script u {\n script /bin/u\n}\n"
	runConvCases(t, []convCase{
		{
			name: "members; the group's track_script applies to every member with its weight",
			conf: script + "vrrp_sync_group G {\n group {\n  A\n  B\n }\n track_script {\n  w\n  u\n }\n}\n" + two(""),
			want: map[string]string{
				"sync_groups[0].name": "G", "sync_groups[0].instances": "[A B]",
				"instances[0].track_scripts[0].name": "w", "instances[0].track_scripts[0].weight": "-20",
				"instances[1].track_scripts[1].name": "u",
			},
		},
		{
			name: "a member's own weighted script is ignored, its tracked interface weight becomes 0",
			conf: script + "vrrp_sync_group G {\n group {\n  A B\n }\n}\n" + two(" track_script {\n  w\n  u\n }\n track_interface {\n  eth9 weight 10\n }\n"),
			want: map[string]string{
				"instances[0].track_scripts[0].name": "u", "instances[0].track_scripts[1]": "<none>",
				"instances[0].track_interfaces[0].name": "eth0", "instances[0].track_interfaces[1].name": "eth9",
				"instances[0].track_interfaces[1].weight": "0",
			},
			diags: []string{
				"20: track_script: (A) dropped w with weight -20: keepalived ignores weighted track scripts of a sync group member",
				"24: track_interface: (A) weight 10 of eth9 set to 0",
			},
		},
		{
			name:  "sync_group_tracking_weight keeps the members' weights",
			conf:  script + "vrrp_sync_group G {\n group {\n  A B\n }\n sync_group_tracking_weight\n}\n" + two(" track_script {\n  w\n }\n"),
			want:  map[string]string{"instances[0].track_scripts[0].weight": "-20"},
			diags: []string{"5: vrrp_script: u is not used"},
		},
		{
			name: "a missing member, a member of two groups, a one-member group, group hooks",
			conf: "vrrp_sync_group G {\n group {\n  A\n  NOPE\n }\n notify_master /bin/x\n}\nvrrp_sync_group H {\n group {\n  A\n  B\n }\n}\n" + two(""),
			want: map[string]string{"sync_groups[0].instances": "[A]", "sync_groups[1].instances": "[B]"},
			diags: []string{
				"1: vrrp_sync_group: G has only one member, A",
				"4: group: (G) vrrp_instance NOPE does not exist; ignored",
				"6: notify_master: dropped: hacoord's sync groups have no hooks of their own",
				"8: vrrp_sync_group: H has only one member, B",
				"10: group: (H) A is already in sync group G; ignored",
			},
		},
		{
			name:  "a group of no existing instance is removed",
			conf:  "vrrp_sync_group G {\n group {\n  X\n }\n}\n" + base(""),
			want:  map[string]string{"group": "VI_1", "sync_groups": "<none>"},
			diags: []string{"1: vrrp_sync_group: G has no existing member; removed", "3: group: (G) vrrp_instance X does not exist"},
		},
	})
}

// TestVirtualServer: virtual_server, real_server and the checkers (keepalived.conf(5) "Virtual
// server(s)").
func TestVirtualServer(t *testing.T) {
	vs := func(header, body string) string { return base("") + "virtual_server " + header + " {\n" + body + "}\n" }
	// base is 7 lines, so the virtual_server line is 8 and its body starts at 9.
	runConvCases(t, []convCase{
		{
			name: "keepalived's defaults, written out",
			conf: vs("10.0.0.100 80", " real_server 10.0.0.11 80 {\n  TCP_CHECK {\n  }\n }\n real_server 10.0.0.12 {\n }\n"),
			want: map[string]string{
				"virtual_servers[0].address": "10.0.0.100", "virtual_servers[0].port": "80", "virtual_servers[0].protocol": "TCP",
				"virtual_servers[0].lb_algo": "wlc", "virtual_servers[0].lb_kind": "NAT", "virtual_servers[0].delay_loop": "1m0s",
				"virtual_servers[0].quorum": "1", "program_on_backup": "true",
				"virtual_servers[0].real_servers[0].weight":                       "1",
				"virtual_servers[0].real_servers[0].TCP_CHECK.connect_timeout":    "5s",
				"virtual_servers[0].real_servers[0].TCP_CHECK.retry":              "1",
				"virtual_servers[0].real_servers[0].TCP_CHECK.delay_before_retry": "1s",
				"virtual_servers[0].real_servers[1].port":                         "<none>",
				"virtual_servers[0].real_servers[1].TCP_CHECK":                    "<none>",
			},
		},
		{
			name: "every virtual_server keyword hacoord has",
			conf: vs("10.0.0.100 443", " delay_loop 6\n lb_algo wrr\n lb_kind DR\n persistence_timeout 300\n protocol TCP\n sorry_server 10.0.0.99 443\n sorry_server_lvs_method NAT\n quorum 3\n hysteresis 1\n inhibit_on_failure\n real_server 10.0.0.11 443 {\n  weight 2\n }\n"),
			want: map[string]string{
				"virtual_servers[0].delay_loop": "6s", "virtual_servers[0].lb_algo": "wrr", "virtual_servers[0].lb_kind": "DR",
				"virtual_servers[0].persistence_timeout": "5m0s", "virtual_servers[0].sorry_server.address": "10.0.0.99",
				"virtual_servers[0].sorry_server.port": "443", "virtual_servers[0].sorry_server.lvs_method": "NAT",
				"virtual_servers[0].quorum": "3", "virtual_servers[0].hysteresis": "1", "virtual_servers[0].inhibit_on_failure": "true",
				"virtual_servers[0].real_servers[0].weight": "2",
			},
		},
		{
			name:  "lvs_sched and lvs_method are the same keywords; persistence_timeout alone is 6 minutes",
			conf:  vs("10.0.0.100 80", " lvs_sched rr\n lvs_method TUN type gue port 6080\n persistence_timeout\n real_server 10.0.0.11 80 {\n }\n"),
			want:  map[string]string{"virtual_servers[0].lb_algo": "rr", "virtual_servers[0].lb_kind": "TUN", "virtual_servers[0].persistence_timeout": "6m0s"},
			diags: []string{`10: lvs_method: dropped the tunnel options "type gue port 6080"`},
		},
		{
			name: "invalid values are ignored as keepalived does",
			conf: vs("10.0.0.100 80", " lb_algo fastest\n quorum 0\n real_server 10.0.0.11 80 {\n  weight 70000\n }\n"),
			want: map[string]string{"virtual_servers[0].lb_algo": "wlc", "virtual_servers[0].quorum": "1", "virtual_servers[0].real_servers[0].weight": "65535"},
			diags: []string{
				`9: lb_algo: invalid scheduler "fastest"; ignored`,
				`10: quorum: "0" must be in [1, 4294967295]; set to 1`,
				"12: weight: 10.0.0.100:80: 70000 is above IPVS's 65535; set to 65535",
			},
		},
		{
			name: "HTTP_GET: url, status_code, digest, virtualhost, retry by its old name; delay_before_retry defaults to 3s",
			conf: vs("10.0.0.100 80", " virtualhost www.example.com\n real_server 10.0.0.11 80 {\n  HTTP_GET {\n   url {\n    path /health\n    status_code 200\n    digest 9B3A0C85A887A256D6939DA88AABD8CD\n   }\n   url {\n    path /\n    status_code 200-299\n   }\n   url {\n    path /x\n   }\n   connect_port 8080\n   connect_ip 10.0.0.111\n   nb_get_retry 3\n  }\n }\n"),
			want: map[string]string{
				"virtual_servers[0].real_servers[0].HTTP_GET.url[0].path":        "/health",
				"virtual_servers[0].real_servers[0].HTTP_GET.url[0].status_code": "200",
				"virtual_servers[0].real_servers[0].HTTP_GET.url[0].digest":      "9b3a0c85a887a256d6939da88aabd8cd",
				"virtual_servers[0].real_servers[0].HTTP_GET.url[1].status_code": "<none>",
				"virtual_servers[0].real_servers[0].HTTP_GET.url[2].status_code": "<none>",
				"virtual_servers[0].real_servers[0].HTTP_GET.virtualhost":        "www.example.com",
				"virtual_servers[0].real_servers[0].HTTP_GET.connect_port":       "8080",
				"virtual_servers[0].real_servers[0].HTTP_GET.connect_ip":         "10.0.0.111",
				"virtual_servers[0].real_servers[0].HTTP_GET.retry":              "3",
				"virtual_servers[0].real_servers[0].HTTP_GET.delay_before_retry": "3s",
				"virtual_servers[0].real_servers[0].HTTP_GET.connect_timeout":    "5s",
			},
			diags: []string{"26: nb_get_retry: deprecated: read as retry"},
		},
		{
			name: "status codes hacoord cannot express, a regex, and a second checker",
			conf: vs("10.0.0.100 80", " real_server 10.0.0.11 80 {\n  HTTP_GET {\n   url {\n    path /\n    status_code 200 301-302\n    regex ok\n   }\n   http_protocol 1.1\n  }\n  TCP_CHECK {\n  }\n  PING_CHECK {\n  }\n }\n"),
			want: map[string]string{"virtual_servers[0].real_servers[0].HTTP_GET.url[0].status_code": "200", "virtual_servers[0].real_servers[0].TCP_CHECK": "<none>"},
			diags: []string{
				"13: status_code: 10.0.0.100:80: meaning changes: hacoord accepts one status code (or any 2xx); 200 is used",
				"14: regex: dropped: hacoord's HTTP_GET checks status and digest only",
				"16: http_protocol: dropped",
				"18: TCP_CHECK: 10.0.0.100:80: dropped: hacoord runs one checker per real server, the HTTP_GET at line 10",
				"20: PING_CHECK: dropped: hacoord has TCP_CHECK, HTTP_GET and MISC_CHECK only",
			},
		},
		{
			name:  "SSL_GET becomes a TCP_CHECK",
			conf:  vs("10.0.0.100 443", " real_server 10.0.0.11 443 {\n  SSL_GET {\n   url {\n    path /\n   }\n   connect_timeout 2\n  }\n }\n"),
			want:  map[string]string{"virtual_servers[0].real_servers[0].TCP_CHECK.connect_timeout": "2s", "virtual_servers[0].real_servers[0].HTTP_GET": "<none>"},
			diags: []string{"10: SSL_GET: 10.0.0.100:443: meaning changes: hacoord has no TLS checker, so this becomes a TCP_CHECK"},
		},
		{
			name: "MISC_CHECK: quoted path with arguments; retry 0 and misc_timeout the delay_loop by default",
			conf: vs("10.0.0.100 80", " delay_loop 10\n real_server 10.0.0.11 80 {\n  MISC_CHECK {\n   misc_path \"/usr/local/bin/check.sh 10.0.0.11 80\"\n   misc_dynamic\n  }\n }\n real_server 10.0.0.12 80 {\n  MISC_CHECK {\n   misc_path /bin/true\n   misc_timeout 3\n   retry 2\n  }\n }\n"),
			want: map[string]string{
				"virtual_servers[0].real_servers[0].MISC_CHECK.misc_path":    "/usr/local/bin/check.sh 10.0.0.11 80",
				"virtual_servers[0].real_servers[0].MISC_CHECK.misc_dynamic": "true",
				"virtual_servers[0].real_servers[0].MISC_CHECK.misc_timeout": "10s",
				"virtual_servers[0].real_servers[0].MISC_CHECK.retry":        "0",
				"virtual_servers[0].real_servers[1].MISC_CHECK.misc_timeout": "3s",
				"virtual_servers[0].real_servers[1].MISC_CHECK.retry":        "2",
			},
		},
		{
			name:  "MISC_CHECK without misc_path is removed; connect_timeout is not one of its keywords",
			conf:  vs("10.0.0.100 80", " real_server 10.0.0.11 80 {\n  MISC_CHECK {\n   connect_timeout 3\n  }\n }\n"),
			want:  map[string]string{"virtual_servers[0].real_servers[0].MISC_CHECK": "<none>"},
			diags: []string{"11: connect_timeout: unknown keyword in MISC_CHECK", "10: MISC_CHECK: has no misc_path; removed"},
		},
		{
			name: "checker settings: virtual server, then real server, then checker",
			conf: vs("10.0.0.100 80", " connect_timeout 3\n retry 4\n delay_before_retry 2\n delay_loop 20\n alpha\n real_server 10.0.0.11 80 {\n  connect_timeout 4\n  TCP_CHECK {\n  }\n }\n real_server 10.0.0.12 80 {\n  retry 5\n  TCP_CHECK {\n   delay_loop 7\n   retry 6\n   alpha no\n  }\n }\n"),
			want: map[string]string{
				"virtual_servers[0].delay_loop":                                   "20s",
				"virtual_servers[0].real_servers[0].TCP_CHECK.connect_timeout":    "4s",
				"virtual_servers[0].real_servers[0].TCP_CHECK.retry":              "4",
				"virtual_servers[0].real_servers[0].TCP_CHECK.delay_before_retry": "2s",
				"virtual_servers[0].real_servers[0].TCP_CHECK.alpha":              "true",
				"virtual_servers[0].real_servers[0].TCP_CHECK.delay_loop":         "<none>",
				"virtual_servers[0].real_servers[1].TCP_CHECK.connect_timeout":    "3s",
				"virtual_servers[0].real_servers[1].TCP_CHECK.retry":              "6",
				"virtual_servers[0].real_servers[1].TCP_CHECK.delay_loop":         "7s",
				"virtual_servers[0].real_servers[1].TCP_CHECK.alpha":              "<none>",
			},
		},
		{
			name: "virtual server weight is the real servers' default; inhibit_on_failure per real server",
			conf: vs("10.0.0.100 80", " weight 5\n real_server 10.0.0.11 80 {\n  inhibit_on_failure\n }\n real_server 10.0.0.12 80 {\n  weight 0\n  inhibit_on_failure no\n }\n"),
			want: map[string]string{
				"virtual_servers[0].real_servers[0].weight": "5", "virtual_servers[0].real_servers[0].inhibit_on_failure": "true",
				"virtual_servers[0].real_servers[1].weight": "0", "virtual_servers[0].real_servers[1].inhibit_on_failure": "false",
			},
		},
		{
			name: "fwmark service; real server fixes keepalived makes for DR",
			conf: base("") + "virtual_server fwmark 7 {\n lb_kind DR\n ip_family inet\n real_server 10.0.0.11 80 {\n }\n}\nvirtual_server 10.0.0.100 80 {\n lb_kind DR\n real_server 10.0.0.11 8080 {\n }\n real_server 10.0.0.11 80 {\n }\n real_server 2001:db8::1 80 {\n }\n}\n",
			want: map[string]string{
				"virtual_servers[0].fwmark": "7", "virtual_servers[0].ip_family": "inet", "virtual_servers[0].address": "<none>",
				"virtual_servers[0].protocol": "<none>", "virtual_servers[0].real_servers[0].port": "<none>",
				"virtual_servers[1].real_servers[0].port": "<none>", "virtual_servers[1].real_servers[1]": "<none>",
			},
			diags: []string{
				"8: virtual_server: fwmark 7: a firewall-mark service names no VIP; it goes under instance VI_1",
				"11: real_server: fwmark 7: a firewall-mark service's real server 10.0.0.11:80 has no port; cleared",
				"16: real_server: 10.0.0.100:80: the port of 10.0.0.11:8080 does not match the service's and DR cannot change it; reset",
				"18: real_server: 10.0.0.100:80: 10.0.0.11:80 is duplicated (line 16); the second is removed",
				"20: real_server: 10.0.0.100:80: the address family of 2001:db8::1 does not match the service's; real server skipped",
			},
		},
		{
			name: "what hacoord's IPVS has no counterpart for",
			conf: vs("10.0.0.100 80", " ha_suspend\n persistence_granularity 255.255.255.0\n quorum_up /bin/up\n warmup 3\n real_server 10.0.0.11 80 {\n  notify_up /bin/x\n  uthreshold 100\n  TCP_CHECK {\n   bindto 10.0.0.1\n  }\n }\n"),
			diags: []string{
				"9: ha_suspend: dropped", "10: persistence_granularity: dropped", "11: quorum_up: dropped",
				"12: warmup: 10.0.0.100:80: dropped: hacoord starts every checker at once",
				"14: notify_up: dropped", "15: uthreshold: dropped", "17: bindto: dropped",
			},
		},
		{
			name:  "virtual_server group and virtual_server_group",
			conf:  base("") + "virtual_server_group G {\n 10.0.0.100 80\n}\nvirtual_server group G {\n real_server 10.0.0.11 80 {\n }\n}\n",
			want:  map[string]string{"virtual_servers": "<none>"},
			diags: []string{"8: virtual_server_group: dropped: hacoord's IPVS has no virtual server groups", "11: virtual_server: dropped: hacoord's IPVS has no virtual server groups"},
		},
		{
			name: "a service goes under the instance whose VIP it is",
			conf: base("") + "vrrp_instance VI_2 {\n interface eth1\n virtual_router_id 52\n virtual_ipaddress {\n  10.0.1.100/24\n }\n}\nvirtual_server 10.0.1.100 80 {\n real_server 10.0.1.11 80 {\n }\n}\n",
			want: map[string]string{"instances[0].virtual_servers": "<none>", "instances[1].virtual_servers[0].address": "10.0.1.100", "instances[1].program_on_backup": "true"},
		},
		{
			name:  "only virtual servers: written at the top level",
			conf:  "virtual_server 10.0.0.100 80 {\n real_server 10.0.0.11 80 {\n }\n}\n",
			want:  map[string]string{"virtual_servers[0].address": "10.0.0.100", "interface": "<none>"},
			diags: []string{"1: virtual_server: there is no vrrp_instance"},
		},
	})
}

// TestStoreBackend: --backend etcd / zk keeps the instances, names their groups after them and
// drops the VRRP-only keywords, each with a line.
func TestStoreBackend(t *testing.T) {
	conf := "global_defs {\n vrrp_version 3\n}\nvrrp_script w {\n script /bin/w\n weight -10\n}\n" +
		"vrrp_instance VI_1 {\n state MASTER\n interface eth0\n virtual_router_id 51\n priority 150\n advert_int 2\n nopreempt\n preempt_delay 5\n" +
		" authentication {\n  auth_type PASS\n  auth_pass x\n }\n unicast_src_ip 10.0.0.11\n unicast_peer {\n  10.0.0.12\n }\n" +
		" virtual_ipaddress {\n  10.0.0.100/24\n }\n virtual_ipaddress_excluded {\n  2001:db8::100/64\n }\n track_script {\n  w\n }\n}\n"
	runConvCases(t, []convCase{
		{
			name: "etcd",
			conf: conf,
			opt:  ConvertOptions{Backend: "etcd", Endpoints: []string{"http://10.0.0.1:2379", "http://10.0.0.2:2379"}},
			want: map[string]string{
				"backend": "etcd", "endpoints": "[http://10.0.0.1:2379 http://10.0.0.2:2379]", "group": "VI_1", "vrrp": "<none>",
				"vips": "[10.0.0.100/24 2001:db8::100/64]", "track_scripts[0].weight": "-10", "announce.count": "5",
			},
			diags: []string{
				"2: vrrp_version: dropped: VRRP only; with --backend etcd the store elects the master",
				"9: state: dropped: VRRP only", "11: virtual_router_id: dropped: VRRP only", "12: priority: dropped: VRRP only",
				"13: advert_int: dropped: VRRP only", "14: nopreempt: dropped: VRRP only", "15: preempt_delay: dropped: VRRP only",
				"16: authentication: dropped: VRRP only", "20: unicast_src_ip: dropped: VRRP only", "21: unicast_peer: dropped: VRRP only",
				"31: track_script: (VI_1) meaning changes: with --backend etcd a failing w withdraws the candidacy whatever its weight (-10)",
			},
		},
		{
			name: "zk needs endpoints",
			conf: conf,
			opt:  ConvertOptions{Backend: "zk"},
			err:  "--endpoints is required with --backend zk",
		},
		{
			name: "unknown backend",
			conf: conf,
			opt:  ConvertOptions{Backend: "consul", Endpoints: []string{"x"}},
			err:  `backend "consul": want vrrp, etcd or zk`,
		},
	})
}
