package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/internal/etcdtest"
	"github.com/hacoord/hacoord/internal/testenv"
)

// fenceNode is a node of group web with VIP 192.0.2.101, a fence hook and a notify hook (both
// in dir; the notify hook appends "role reason" to dir/notify-<node>).
const fenceNode = `backend: {{backend}}
name: %[1]s
endpoints: [%[2]s]
{{store}}
fence_guard: false
log: {format: json, level: info}
interface: eth0
group: web
status_file: %[3]s/web.json
vips: [192.0.2.101/24]
announce: {count: 1, repeat: 0, refresh: 0s}
hooks: {fence: {{fence}}, notify: {{notify}}, timeout: 10s, fence_retries: 1, fence_retry_interval: 200ms}
`

// writeHook writes an executable shell script.
func writeHook(t *testing.T, path, body string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// hookDir writes, in a new directory, the notify hook (it appends "<node> <role> <reason>" to
// dir/notify) and a fence hook that succeeds at once, and returns the directory and both hooks.
func hookDir(t *testing.T) (dir, notify, quick string) {
	t.Helper()
	dir = t.TempDir()
	notify = writeHook(t, filepath.Join(dir, "notify"), `echo "$2 $3 $HACOORD_REASON" >> `+dir+`/notify`)
	quick = writeHook(t, filepath.Join(dir, "quick"), "exit 0")
	return dir, notify, quick
}

func readText(path string) string { b, _ := os.ReadFile(path); return string(b) }

// fenceBody is fenceNode for st with the given hooks.
func fenceBody(st *store, fence, notify string) string {
	return strings.NewReplacer("{{backend}}", st.backend, "{{store}}", st.lines, "{{fence}}", fence,
		"{{notify}}", notify).Replace(fenceNode)
}

// A fence hook that takes longer than the lease TTL (1 s) and succeeds: the node keeps its
// candidacy meanwhile (the term the hook was told is the term it becomes master of), binds
// nothing until the hook is done, then takes the VIP. The hook is told the previous master's name
// and address; the notify hook of a node that was never master hears backup with its reason.
func TestSlowFenceHookThenTakeover(t *testing.T) {
	testenv.RequireRoot(t)
	forStores(t, func(t *testing.T, backend string) {
		st := startStore(t, backend, "web")
		a, b := twoNodes(t)
		dir, notify, quick := hookDir(t)
		slow := writeHook(t, filepath.Join(dir, "slow"), `echo "$HACOORD_PREVIOUS_MASTER $HACOORD_PREVIOUS_ADDRESS $HACOORD_TERM $HACOORD_ATTEMPT" > `+dir+`/fenced
sleep 2.5
touch `+dir+`/done`)
		n1 := startNode(t, a, "n1", st.endpoint, fenceBody(st, quick, notify))
		eventually(t, "n1 master with the VIP", func() bool { return st.leader("web").Node == "n1" && n1.has(t, "192.0.2.101") }, n1)
		n2 := startNode(t, b, "n2", st.endpoint, fenceBody(st, slow, notify))
		eventually(t, "n2 a backup", func() bool { return n2.status(t, "web").Role == "backup" }, n2)

		n1.exit(t) // resigns: n2 is master in the store and runs its fence hook
		start := time.Now()
		eventually(t, "n2's fence hook started", func() bool { return readText(dir+"/fenced") != "" }, n2)
		eventually(t, "n2's status file saying it is fencing", func() bool {
			st := n2.status(t, "web")
			return st.Fencing && !st.Promoted || fileExists(dir+"/done")
		}, n2)
		if fileExists(dir + "/done") {
			t.Fatal("the status file never said fencing while the 2.5 s hook ran")
		}
		var hookDone time.Time
		eventually(t, "n2 holding the VIP after its fence hook", func() bool {
			done := fileExists(dir + "/done")
			if done && hookDone.IsZero() {
				hookDone = time.Now()
			}
			if n2.has(t, "192.0.2.101") {
				if !done {
					t.Fatalf("n2 bound the VIP while its fence hook was running")
				}
				return true
			}
			return false
		}, n2)
		took := time.Since(start)
		f := strings.Fields(readText(dir + "/fenced"))
		if len(f) != 4 || f[0] != "n1" || f[1] != "192.0.2.1" || f[3] != "1" {
			t.Fatalf("the fence hook saw previous master, address, term, attempt %q; want n1 192.0.2.1 <term> 1", f)
		}
		rec := st.leader("web")
		if rec.Node != "n2" || f[2] != itoa(rec.Term) {
			t.Fatalf("master record %+v; the hook was told term %s: the candidacy was not kept through the hook", rec, f[2])
		}
		t.Logf("%s: VIP on n2 %v after n1 resigned (fence hook 2.5 s, lease TTL 1 s)", backend, took.Round(time.Millisecond))
		n2.exit(t)
		got := readText(dir + "/notify")
		for _, want := range []string{"n2 backup ", "n2 master ", "n2 backup shutdown", "n2 stop shutdown", "n1 stop shutdown"} {
			if !strings.Contains(got, want) {
				t.Errorf("notify events:\n%s\nwant a line starting %q", got, want)
			}
		}
	})
}

// A fence hook that fails blocks the takeover: the node never binds the VIP, runs the hook
// 1 + fence_retries times for the term, then yields, and another node takes over.
func TestFailingFenceHookBlocksTakeover(t *testing.T) {
	testenv.RequireRoot(t)
	forStores(t, func(t *testing.T, backend string) {
		st := startStore(t, backend, "web")
		a, b := twoNodes(t)
		dir, notify, quick := hookDir(t)
		failing := writeHook(t, filepath.Join(dir, "failing"), `echo "$HACOORD_TERM $HACOORD_ATTEMPT" >> `+dir+`/attempts
echo "ipmi: no answer from $HACOORD_PREVIOUS_ADDRESS"; exit 1`)
		n1 := startNode(t, a, "n1", st.endpoint, fenceBody(st, quick, notify))
		eventually(t, "n1 master with the VIP", func() bool { return st.leader("web").Node == "n1" && n1.has(t, "192.0.2.101") }, n1)
		n2 := startNode(t, b, "n2", st.endpoint, fenceBody(st, failing, notify))
		eventually(t, "n2 a backup", func() bool { return n2.status(t, "web").Role == "backup" }, n2)

		n1.exit(t)
		// n2 is the only candidate: it wins, fails its hook twice, yields, wins again, ...
		eventually(t, "n2 ran its fence hook twice for a term", func() bool {
			return strings.Count(readText(dir+"/attempts"), " 2\n") >= 1
		}, n2)
		lines := strings.Split(strings.TrimSpace(readText(dir+"/attempts")), "\n")
		if len(lines) < 2 || !strings.HasSuffix(lines[0], " 1") || !strings.HasSuffix(lines[1], " 2") ||
			strings.Fields(lines[0])[0] != strings.Fields(lines[1])[0] {
			t.Fatalf("attempts %q: want attempt 1 then 2 of one term", lines)
		}
		if n2.has(t, "192.0.2.101") {
			t.Fatal("n2 bound the VIP although its fence hook failed")
		}
		n1 = startNode(t, a, "n1", st.endpoint, fenceBody(st, quick, notify))
		eventually(t, "n1 master again once n2 yielded", func() bool {
			if n2.has(t, "192.0.2.101") {
				t.Fatal("n2 bound the VIP although its fence hook failed")
			}
			return st.leader("web").Node == "n1" && n1.has(t, "192.0.2.101")
		}, n1, n2)
		if !strings.Contains(n2.log.String(), "fence hook failed") || !strings.Contains(n2.log.String(), "ipmi: no answer from 192.0.2.1") {
			t.Errorf("n2's log does not show the failed fence hook with its output:\n%s", n2.log.String())
		}
		n1.exit(t)
		n2.exit(t)
		if got := readText(dir + "/notify"); strings.Contains(got, "n2 master") {
			t.Errorf("notify told n2 master although it never held the VIP:\n%s", got)
		}
	})
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func itoa(u uint64) string { return strconv.FormatUint(u, 10) }

// The notify hook of a node that is never master hears backup when it joins, fault when the
// store goes away and stop when it stops, each with its reason.
func TestNotifyOnNodeNeverMaster(t *testing.T) {
	testenv.RequireRoot(t)
	srv := etcdtest.Start(t)
	a, b := twoNodes(t)
	dir, notify, quick := hookDir(t)
	st := &store{backend: backendEtcd, endpoint: "http://" + srv.Endpoints()[0], lines: "lease_ttl: 1s"}
	body := fenceBody(st, quick, notify)
	n1 := startNode(t, a, "n1", st.endpoint, body)
	eventually(t, "n1 master", func() bool { return n1.has(t, "192.0.2.101") }, n1)
	n2 := startNode(t, b, "n2", st.endpoint, body)
	eventually(t, "n2 told backup", func() bool { return strings.Contains(readText(dir+"/notify"), "n2 backup ") }, n2)
	srv.Close()
	eventually(t, "n2 told fault, with the reason", func() bool {
		return strings.Contains(readText(dir+"/notify"), "n2 fault etcd unreachable")
	}, n2)
	n2.exit(t)
	n1.exit(t)
	got := readText(dir + "/notify")
	if !strings.Contains(got, "n2 stop shutdown") || strings.Contains(got, "n2 master") {
		t.Errorf("n2's notify events:\n%s\nwant backup, fault, stop and never master", got)
	}
}

// The previous master a fence hook is told is the last other master seen since this node last
// held the VIPs, and the notify hooks hear each role once, with its reason.
func TestHooksWatchPreviousMasterAndRoles(t *testing.T) {
	h := &hooks{node: "n2"}
	rec := func(n string) election.Record {
		return election.Record{Node: n, Term: 5, Address: netip.MustParseAddr("192.0.2.1")}
	}
	steps := []struct {
		cs       election.Status
		previous string
		role     string
	}{
		{election.Status{State: election.State{Role: election.Backup, Leader: rec("n1"), Reason: "campaigning"}}, "n1", roleBackup},
		{election.Status{State: election.State{Role: election.Backup, Reason: "master record gone"}}, "n1", roleBackup},
		{election.Status{State: election.State{Role: election.Master, Leader: rec("n2")}, Preparing: true, Reason: "preparing"}, "n1", roleBackup},
		{election.Status{State: election.State{Role: election.Master, Leader: rec("n2"), Reason: "elected"}, Promoted: true, Reason: "promoted"}, "", roleMaster},
		{election.Status{State: election.State{Role: election.Fault, Reason: "etcd unreachable"}, Fenced: true, Reason: "self-fence"}, "", roleFault},
		{election.Status{State: election.State{Role: election.Backup, Leader: rec("n3")}}, "n3", roleBackup},
	}
	for i, s := range steps {
		h.watch(s.cs)
		if got := h.previousMaster().Node; got != s.previous {
			t.Errorf("step %d: previous master %q, want %q", i, got, s.previous)
		}
		if h.told != s.role {
			t.Errorf("step %d: told %q, want %q", i, h.told, s.role)
		}
	}
	if r, why := hookRole(steps[4].cs); r != roleFault || why != "self-fence" {
		t.Errorf("a self-fence is told as %s (%s), want fault (self-fence)", r, why)
	}
}
