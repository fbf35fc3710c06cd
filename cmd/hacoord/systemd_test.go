package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hacoord/hacoord/internal/testenv"
)

const unitFile = "../../deploy/systemd/hacoord.service"

// unitKeys reads the [Service] section of the unit: key -> values in order.
func unitKeys(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys, section := map[string][]string{}, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, _ := strings.Cut(line, "=")
			keys[k] = append(keys[k], v)
		}
	}
	return keys
}

// The unit passes `systemd-analyze verify` (with ExecStart pointed at a binary that exists here),
// with no warning: systemd ignores a bad value with a warning and exit status 0, so any output is
// a failure.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze := testenv.RequireCommand(t, "systemd-analyze", "Debian package systemd")
	bin := os.Getenv("HACOORD_BIN")
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	unit := strings.Replace(string(b), "ExecStart=/usr/local/bin/hacoord ", "ExecStart="+bin+" ", 1)
	if unit == string(b) {
		t.Fatal("the unit's ExecStart does not run /usr/local/bin/hacoord")
	}
	p := filepath.Join(t.TempDir(), "hacoord.service")
	if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", p).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	k := unitKeys(t)
	for key, want := range map[string]string{"Type": "notify", "NotifyAccess": "main", "RuntimeDirectory": "hacoord",
		"StateDirectory": "hacoord", "NoNewPrivileges": "yes"} {
		if got := k[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%q, want %s", key, got, want)
		}
	}
	if u := k["User"]; len(u) != 1 || u[0] == "" || u[0] == "root" || u[0] == "0" {
		t.Errorf("User=%q: want a user other than root", u)
	}
	if len(k["WatchdogSec"]) != 1 {
		t.Error("no WatchdogSec: a wedged Coordinator loop would never get the daemon restarted")
	}
}

// unitCaps returns the unit's AmbientCapabilities as setpriv spells them ("net_admin").
func unitCaps(t *testing.T) []string {
	var caps []string
	for _, v := range unitKeys(t)["AmbientCapabilities"] {
		for _, c := range strings.Fields(v) {
			caps = append(caps, strings.ToLower(strings.TrimPrefix(c, "CAP_")))
		}
	}
	if len(caps) == 0 {
		t.Fatal("the unit grants no AmbientCapabilities")
	}
	return caps
}

// The daemon as the unit runs it: not root, with the unit's ambient capabilities only (and that
// bounding set, no new privileges). Native VRRP needs the most of them (raw IP protocol 112
// socket, netlink, gratuitous ARP); the fence guard, a child, inherits them: it removes the VIP of
// a SIGKILLed daemon.
func TestDaemonRunsWithTheUnitsCapabilities(t *testing.T) {
	testenv.RequireRoot(t)
	setpriv := testenv.RequireCommand(t, "setpriv", "Debian package util-linux")
	bin := hacoordBin(t)
	const nobody = 65534
	a, _ := twoNodes(t)
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // t.TempDir makes both 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := filepath.Join(dir, "run") // the unit's RuntimeDirectory and StateDirectory, owned by its user
	if err := os.Mkdir(run, 0o755); err != nil || os.Chown(run, nobody, nobody) != nil {
		t.Fatalf("status directory: %v", err)
	}
	conf := filepath.Join(dir, "hacoord.yaml")
	if err := os.WriteFile(conf, []byte(`backend: vrrp
name: n1
fence_guard: true
log: {format: json, level: info}
interface: eth0
group: web
vips: [192.0.2.101/24]
vrrp: {vrid: 21, priority: 150, advert_int: 100ms}
announce: {count: 1, repeat: 0, refresh: 0s}
status_file: `+run+`/web.json
control_socket: `+run+`/n1.sock
state_dir: `+run+`
`), 0o644); err != nil {
		t.Fatal(err)
	}
	caps := strings.Join(func() (out []string) {
		for _, c := range unitCaps(t) {
			out = append(out, "+"+c)
		}
		return out
	}(), ",")
	n := &node{name: "n1", ns: a, dir: run, log: &syncBuffer{}}
	cmd := exec.Command("ip", "netns", "exec", a.Name, setpriv, "--reuid="+strconv.Itoa(nobody), "--regid="+strconv.Itoa(nobody),
		"--clear-groups", "--inh-caps=-all,"+caps, "--ambient-caps=-all,"+caps, "--bounding-set=-all,"+caps,
		"--no-new-privs", bin, "--config", conf)
	cmd.Stdout, cmd.Stderr = n.log, n.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second // the fence guard holds the output pipes until it exits
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	var guardPID int
	t.Cleanup(func() {
		if guardPID > 0 {
			_ = syscall.Kill(guardPID, syscall.SIGKILL)
		}
		_ = cmd.Process.Kill()
		<-exited
	})
	eventually(t, "the unprivileged daemon master, holding the VIP", func() bool {
		return n.has(t, "192.0.2.101") && n.status(t, "web").Role == "master"
	}, n)
	if uid := procUID(t, cmd.Process.Pid); uid != nobody {
		t.Fatalf("the daemon runs as uid %d", uid)
	}
	guardPID = childOf(t, cmd.Process.Pid)
	if uid := procUID(t, guardPID); uid != nobody {
		t.Fatalf("the fence guard runs as uid %d", uid)
	}
	// SIGKILL: only the guard, with the inherited capabilities, can take the VIP off.
	_ = cmd.Process.Kill()
	<-exited
	eventually(t, "the fence guard removed the dead daemon's VIP", func() bool { return !n.has(t, "192.0.2.101") }, n)
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(guardPID, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the fence guard (pid %d) still runs 10s after the daemon died; log:\n%s", guardPID, n.log.String())
		}
		time.Sleep(20 * time.Millisecond) // polling a process that exits on its own
	}
	guardPID = 0
	if strings.Contains(n.log.String(), "operation not permitted") {
		t.Errorf("something lacked a privilege:\n%s", n.log.String())
	}
}

// procUID returns the real uid of process pid.
func procUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" {
			uid, _ := strconv.Atoi(f[1])
			return uid
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return -1
}

// childOf returns the one child process of pid (the fence guard), whichever thread forked it.
func childOf(t *testing.T, pid int) int {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	var f []string
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err == nil {
			f = append(f, strings.Fields(string(b))...)
		}
	}
	if len(f) != 1 {
		t.Fatalf("daemon %d has children %q, want the fence guard alone", pid, f)
	}
	c, _ := strconv.Atoi(f[0])
	return c
}
