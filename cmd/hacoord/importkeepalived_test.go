package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
)

func runHacoord(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// directorConf is a director pair's keepalived.conf (this is lb1): two instances in a sync group,
// weighted track scripts, a virtual server with two real servers checked by HTTP_GET and
// TCP_CHECK. Its scripts are BIN/check; the vrrp_scripts come from an included file.
const directorConf = `! lb1
global_defs {
    router_id lb1
    notification_email {
        ops@example.com
    }
}

include conf.d/*.conf

vrrp_sync_group G_LB {
    group {
        VI_EXT
        VI_INT
    }
    track_script {
        chk_haproxy weight -30
    }
}

vrrp_instance VI_EXT {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    authentication {
        auth_type PASS
        auth_pass s3cr3t
    }
    virtual_ipaddress {
        192.168.10.100/24 dev eth0 label eth0:vip
    }
    track_interface {
        eth1
    }
    notify_master "BIN/check MASTER"
}

vrrp_instance VI_INT {
    state MASTER
    interface eth1
    virtual_router_id 52
    priority 150
    unicast_src_ip 10.0.0.11
    unicast_peer {
        10.0.0.12
    }
    virtual_ipaddress {
        10.0.0.100
    }
}

virtual_server 192.168.10.100 80 {
    delay_loop 6
    lb_algo wrr
    lb_kind DR
    real_server 192.168.10.21 80 {
        weight 3
        HTTP_GET {
            url {
                path /health
                status_code 200
            }
            connect_timeout 3
        }
    }
    real_server 192.168.10.22 80 {
        TCP_CHECK {
            connect_timeout 3
        }
    }
}
`

const scriptsConf = `vrrp_script chk_haproxy {
    script "BIN/check haproxy"
    interval 2
    fall 2
    rise 2
}
`

// singleConf is one instance that the single-instance settings express.
const singleConf = `global_defs {
    router_id web1
}
vrrp_script chk {
    script BIN/check
    interval 2
    weight 2
}
vrrp_instance VI_WEB {
    state BACKUP
    interface eth0
    virtual_router_id 60
    priority 101
    virtual_ipaddress {
        192.168.10.100/24
    }
    track_script {
        chk
    }
    notify BIN/check
}
virtual_server 192.168.10.100 443 {
    delay_loop 5
    real_server 192.168.10.21 8443 {
        TCP_CHECK {
        }
    }
}
`

// writeConfs writes the keepalived files under a temporary directory, with BIN replaced by a
// directory holding an executable `check`, and returns the main files' paths.
func writeConfs(t *testing.T) (director, single string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	writeFile(t, filepath.Join(bin, "check"), "#!/bin/sh\nexit 0\n", 0o755)
	sub := func(s string) string { return strings.ReplaceAll(s, "BIN", bin) }
	director, single = filepath.Join(dir, "keepalived.conf"), filepath.Join(dir, "single.conf")
	writeFile(t, director, sub(directorConf), 0o644)
	writeFile(t, filepath.Join(dir, "conf.d", "scripts.conf"), sub(scriptsConf), 0o644)
	writeFile(t, single, sub(singleConf), 0o644)
	return director, single
}

var diagLine = regexp.MustCompile(`^(/[^:]+):(\d+): [a-z_]+: .+`)

// TestImportKeepalived: exit 0, the YAML on stdout, one FILE:LINE: keyword: line per warning on
// stderr (an included file named as such).
func TestImportKeepalived(t *testing.T) {
	director, _ := writeConfs(t)
	code, stdout, stderr := runHacoord("import-keepalived", director)
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{"# hacoord configuration imported from " + director, "backend: vrrp", "name: lb1",
		"  - name: VI_EXT", "vip_label: eth0:vip", "sync_groups:", "script: " + filepath.Dir(director) + "/bin/check haproxy"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for _, l := range lines {
		if !diagLine.MatchString(l) {
			t.Errorf("stderr line is not FILE:LINE: keyword: message: %q", l)
		}
	}
	for _, want := range []string{
		director + ":4: notification_email: dropped",
		director + ":22: state: (VI_EXT) meaning changes",
		director + ":36: notify_master: (VI_EXT) meaning changes",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestImportKeepalivedErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	unclosed := filepath.Join(dir, "unclosed.conf")
	writeFile(t, unclosed, "global_defs {\n  router_id a\n\nvrrp_instance VI_1 {\n  state MASTER\n", 0o644)
	cycle := filepath.Join(dir, "cycle.conf")
	writeFile(t, cycle, "include cycle.conf\n", 0o644)
	novrid := filepath.Join(dir, "novrid.conf")
	writeFile(t, novrid, "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 300\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n", 0o644)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"missing file", []string{dir + "/nope.conf"}, []string{"nope.conf: no such file or directory"}},
		{"unclosed block", []string{unclosed}, []string{unclosed + ":4: vrrp_instance: '{' is never closed"}},
		{"include cycle", []string{cycle}, []string{cycle + ":1: include: include cycle"}},
		{"instance keepalived refuses", []string{novrid}, []string{
			novrid + `:3: virtual_router_id: (VI_1) "300" is not valid`, novrid + ":1: vrrp_instance: (VI_1) the virtual router id must be set"}},
		{"no file", nil, []string{"accepts 1 arg(s), received 0"}},
		{"two files", []string{"a", "b"}, []string{"accepts 1 arg(s), received 2"}},
		{"store without endpoints", []string{"--backend", "etcd", novrid}, []string{"--endpoints is required with --backend etcd"}},
		{"unknown backend", []string{"--backend", "raft", novrid}, []string{`backend "raft": want vrrp, etcd or zk`}},
		{"unknown flag", []string{"--bogus", novrid}, []string{"bogus"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runHacoord(append([]string{"import-keepalived"}, tc.args...)...)
			if code != exitConfig {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitConfig, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout is not empty:\n%s", stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// TestImportedConfigChecks: what import-keepalived prints, `hacoord check-config` accepts: the
// single-instance form, the director pair (instances and a sync group), and the same pair over
// etcd. check-config looks the interfaces up, so it runs in a namespace with eth0 and eth1.
func TestImportedConfigChecks(t *testing.T) {
	testenv.RequireRoot(t)
	director, single := writeConfs(t)
	ns, peer := netnstest.New(t, "ika"), netnstest.New(t, "ikb")
	if _, _, err := netnstest.Veth(ns, "eth0", netip.MustParsePrefix("192.168.10.11/24"), peer, "eth0", netip.MustParsePrefix("192.168.10.12/24")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := netnstest.Veth(ns, "eth1", netip.MustParsePrefix("10.0.0.11/24"), peer, "eth1", netip.MustParsePrefix("10.0.0.12/24")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"single instance", []string{single}},
		{"director pair", []string{director}},
		{"director pair over etcd", []string{"--backend", "etcd", "--endpoints", "http://10.0.0.1:2379,http://10.0.0.2:2379", director}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runHacoord(append([]string{"import-keepalived"}, tc.args...)...)
			if code != exitOK {
				t.Fatalf("import-keepalived: exit %d; stderr:\n%s", code, stderr)
			}
			out := filepath.Join(t.TempDir(), "hacoord.yaml")
			writeFile(t, out, stdout, 0o644)
			var checkOut, checkErr string
			if err := ns.Do(func() error {
				code, checkOut, checkErr = runHacoord("check-config", "--config", out, "--name", "lb1")
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if code != exitOK {
				t.Fatalf("check-config: exit %d; stderr:\n%s\nconfiguration:\n%s", code, checkErr, stdout)
			}
			if !strings.Contains(checkOut, "configuration OK") {
				t.Errorf("check-config printed:\n%s", checkOut)
			}
		})
	}
}

// TestImportedLongVIPFormChecks: a VIP on another device than the instance's interface is written
// in the long form {address, dev, label} that docs/config.md adds for import-keepalived; check-config
// must accept it. (It fails until cmd/hacoord decodes that form.)
func TestImportedLongVIPFormChecks(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "keepalived.conf")
	writeFile(t, conf, "vrrp_instance VI_1 {\n interface eth1\n virtual_router_id 51\n virtual_ipaddress {\n  192.168.10.100/24 dev eth0 label eth0:vip\n  192.168.10.101/24 dev eth0\n }\n}\n", 0o644)
	ns, peer := netnstest.New(t, "ilv"), netnstest.New(t, "ilw")
	if _, _, err := netnstest.Veth(ns, "eth0", netip.MustParsePrefix("192.168.10.11/24"), peer, "eth0", netip.MustParsePrefix("192.168.10.12/24")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := netnstest.Veth(ns, "eth1", netip.MustParsePrefix("10.0.0.11/24"), peer, "eth1", netip.MustParsePrefix("10.0.0.12/24")); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runHacoord("import-keepalived", conf)
	if code != exitOK || !strings.Contains(stdout, "{address: 192.168.10.100/24, dev: eth0, label: 'eth0:vip'}") {
		t.Fatalf("import-keepalived: exit %d; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	out := filepath.Join(dir, "hacoord.yaml")
	writeFile(t, out, stdout, 0o644)
	var checkErr string
	if err := ns.Do(func() error {
		code, _, checkErr = runHacoord("check-config", "--config", out, "--name", "lb1")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if code != exitOK {
		t.Fatalf("check-config: exit %d; stderr:\n%s\nconfiguration:\n%s", code, checkErr, stdout)
	}
}

// pairConf is one node of a keepalived pair on eth0; lb1 and lb2 differ in state and priority.
const pairConf = `global_defs {
    router_id %s
}
vrrp_instance VI_1 {
    state %s
    interface eth0
    virtual_router_id 51
    priority %d
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass s3cr3t
    }
    virtual_ipaddress {
        192.168.10.100/24
        192.168.10.101/24
    }
}
`

// procLog collects a process's output for the test's failure message.
type procLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *procLog) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *procLog) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// startInNS starts a process group in ns, killed when the test ends; it returns the process and
// its output.
func startInNS(t *testing.T, ns *netnstest.NS, name string, args ...string) (*os.Process, *procLog) {
	t.Helper()
	out := &procLog{}
	cmd := ns.Command(context.Background(), name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if t.Failed() {
			t.Logf("%s in %s:\n%s", name, ns.Name, out)
		}
	})
	return cmd.Process, out
}

// holds reports whether addr is bound on eth0 in ns.
func holds(t *testing.T, ns *netnstest.NS, addr netip.Addr) bool {
	t.Helper()
	l, err := ns.Netlink.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	as, err := ns.Netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if a.IP.Equal(addr.AsSlice()) {
			return true
		}
	}
	return false
}

// TestImportedNodeJoinsKeepalived is the drop-in promise, end to end: lb1 runs keepalived, lb2's
// keepalived.conf is imported and the real hacoord daemon runs the result. hacoord must accept
// keepalived's adverts (same VRID, VRRPv2, password, VIP list, interval) and stay backup, so only
// lb1 holds the VIPs; when keepalived is killed, hacoord takes them over after Master_Down_Interval.
func TestImportedNodeJoinsKeepalived(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "keepalived", "Debian package keepalived")
	bin := hacoordBin(t)
	dir := t.TempDir()
	lb1, lb2 := filepath.Join(dir, "lb1.conf"), filepath.Join(dir, "lb2.conf")
	writeFile(t, lb1, fmt.Sprintf(pairConf, "lb1", "MASTER", 150), 0o600)
	writeFile(t, lb2, fmt.Sprintf(pairConf, "lb2", "BACKUP", 100), 0o600)
	code, stdout, stderr := runHacoord("import-keepalived", lb2)
	if code != exitOK {
		t.Fatalf("import-keepalived: exit %d; stderr:\n%s", code, stderr)
	}
	yamlPath := filepath.Join(dir, "hacoord.yaml")
	writeFile(t, yamlPath, stdout, 0o600)

	a, b := netnstest.New(t, "kja"), netnstest.New(t, "kjb")
	if _, _, err := netnstest.Veth(a, "eth0", netip.MustParsePrefix("192.168.10.11/24"), b, "eth0", netip.MustParsePrefix("192.168.10.12/24")); err != nil {
		t.Fatal(err)
	}
	vip := netip.MustParseAddr("192.168.10.100")
	ka, _ := startInNS(t, a, "keepalived", "--dont-fork", "--log-console", "--no-syslog", "--vrrp", "--dont-respawn",
		"--use-file", lb1, "--pid", filepath.Join(dir, "ka.pid"), "--vrrp_pid", filepath.Join(dir, "vrrp.pid"),
		"--checkers_pid", filepath.Join(dir, "checkers.pid"), "--bfd_pid", filepath.Join(dir, "bfd.pid"))
	waitUntil(t, 10*time.Second, "keepalived (lb1) holds the VIP", func() bool { return holds(t, a, vip) })

	_, hlog := startInNS(t, b, bin, "--config", yamlPath, "--name", "lb2", "--status-file", filepath.Join(dir, "status.json"))
	// Master_Down_Interval at priority 100 is 3*1s + (256-100)/256 s: a backup that did not accept
	// keepalived's adverts would be master well within 6s.
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		if holds(t, b, vip) {
			t.Fatalf("hacoord (lb2) bound the VIP while keepalived (lb1) is master: it does not accept keepalived's adverts\nconfiguration:\n%s", stdout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !holds(t, a, vip) {
		t.Fatal("keepalived (lb1) lost the VIP while hacoord joined")
	}
	if strings.Contains(strings.ToLower(hlog.String()), "mismatch") {
		t.Errorf("hacoord reports mismatched adverts:\n%s", hlog)
	}
	_ = syscall.Kill(-ka.Pid, syscall.SIGKILL)
	waitUntil(t, 8*time.Second, "hacoord (lb2) takes the VIP over", func() bool { return holds(t, b, vip) })
}

func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
