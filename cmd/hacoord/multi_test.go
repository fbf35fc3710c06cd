package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/internal/etcdtest"
	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
	"github.com/hacoord/hacoord/internal/zktest"
)

// syncBuffer is an io.Writer safe to read while a daemon writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// node is one in-process daemon in its own network namespace.
type node struct {
	name string
	ns   *netnstest.NS
	dir  string
	log  *syncBuffer
	stop context.CancelFunc
	done chan int
}

// twoNodes makes two namespaces joined by a veth (eth0: 192.0.2.1 and .2/24).
func twoNodes(t *testing.T) (*netnstest.NS, *netnstest.NS) {
	t.Helper()
	a, b := netnstest.New(t, "mi1"), netnstest.New(t, "mi2")
	if _, _, err := netnstest.Veth(a, "eth0", netip.MustParsePrefix("192.0.2.1/24"), b, "eth0", netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	return a, b
}

// startNode runs the daemon of node name with the configuration body (name, endpoints and the
// status files' directory are filled in: %[1]s node, %[2]s endpoint, %[3]s dir) inside ns, on a
// thread switched into it (its sockets open there), and stops it in t.Cleanup.
func startNode(t *testing.T, ns *netnstest.NS, name, endpoint, body string) *node {
	t.Helper()
	n := &node{name: name, ns: ns, dir: t.TempDir(), log: &syncBuffer{}, done: make(chan int, 1)}
	p := filepath.Join(n.dir, "hacoord.yaml")
	if err := os.WriteFile(p, []byte(fmt.Sprintf(body, name, endpoint, n.dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	go func() {
		code := -1
		_ = ns.Do(func() error { code = run(ctx, []string{"--config", p}, io.Discard, n.log); return nil })
		n.done <- code
	}()
	t.Cleanup(func() { n.exit(t) })
	return n
}

// exit stops the daemon (as SIGTERM does) and checks it exits 0 with no VIP left.
func (n *node) exit(t *testing.T) {
	t.Helper()
	if n.stop == nil {
		return
	}
	n.stop()
	n.stop = nil
	select {
	case code := <-n.done:
		if code != exitOK {
			t.Errorf("%s exited %d; log:\n%s", n.name, code, n.log.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not stop within 30s; log:\n%s", n.name, n.log.String())
	}
	if got := n.vips(t); len(got) > 0 {
		t.Errorf("%s left VIPs bound after stopping: %v", n.name, got)
	}
}

// vips returns the VIPs (192.0.2.100-199) bound on the node's eth0.
func (n *node) vips(t *testing.T) []string {
	t.Helper()
	l, err := n.ns.Netlink.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := n.ns.Netlink.AddrList(l, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Is4() && ip.As4()[3] >= 100 && ip.As4()[3] < 200 {
			out = append(out, ip.String())
		}
	}
	return out
}

func (n *node) has(t *testing.T, vip string) bool {
	for _, v := range n.vips(t) {
		if v == vip {
			return true
		}
	}
	return false
}

// status reads the status file of the node's instance group (a zero Status while there is none).
func (n *node) status(t *testing.T, group string) Status {
	t.Helper()
	var st Status
	b, err := os.ReadFile(filepath.Join(n.dir, group+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return st
	}
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil {
		t.Fatalf("%s status of %s: %v", n.name, group, err)
	}
	return st
}

// eventually polls cond (every 20ms, for at most 15s) until it holds.
func eventually(t *testing.T, what string, cond func() bool, logs ...*node) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			for _, n := range logs {
				t.Logf("%s log:\n%s", n.name, n.log.String())
			}
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// store is a running etcd or ZooKeeper for the daemons under test, with an Observer per group
// that keeps the latest master record.
type store struct {
	backend  string
	endpoint string
	lines    string // the configuration's store keys
	mu       sync.Mutex
	records  map[string]election.Record
}

// startStore starts the backend's store and follows the master records of groups, until t ends.
func startStore(t *testing.T, backend string, groups ...string) *store {
	t.Helper()
	st := &store{backend: backend, records: map[string]election.Record{}}
	switch backend {
	case backendEtcd:
		srv := etcdtest.Start(t)
		st.endpoint, st.lines = "http://"+srv.Endpoints()[0], "lease_ttl: 1s"
	case backendZK:
		srv := zktest.Start(t, zktest.Options{})
		st.endpoint, st.lines = srv.Addr(), "zookeeper: {session_timeout: 1s}"
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, g := range groups {
		obs := st.observer(t, g)
		recs := make(chan election.Record)
		wg.Add(2)
		go func() { defer wg.Done(); _ = obs.Observe(ctx, recs) }()
		go func() {
			defer wg.Done()
			for {
				select {
				case r := <-recs:
					st.mu.Lock()
					st.records[g] = r
					st.mu.Unlock()
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	return st
}

func (st *store) observer(t *testing.T, group string) election.Observer {
	t.Helper()
	var (
		obs election.Observer
		err error
	)
	if st.backend == backendEtcd {
		c := etcd.DefaultConfig()
		c.Endpoints, c.Group = []string{st.endpoint}, group
		obs, err = etcd.NewObserver(c, nil)
	} else {
		c := zk.DefaultConfig()
		c.Servers, c.Group = []string{st.endpoint}, group
		obs, err = zk.NewObserver(c, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return obs
}

// leader returns the latest master record of group (zero when none).
func (st *store) leader(group string) election.Record {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.records[group]
}

// forStores runs test over etcd and over ZooKeeper.
func forStores(t *testing.T, test func(t *testing.T, backend string)) {
	for _, b := range []string{backendEtcd, backendZK} {
		t.Run(b, func(t *testing.T) { test(t, b) })
	}
}

// The configuration of both nodes: instances A (192.0.2.101) and B (192.0.2.102), each with a track
// script that fails while dir/fail-<instance> exists.
const twoInstances = `backend: {{backend}}
name: %[1]s
endpoints: [%[2]s]
{{store}}
fence_guard: false
log: {format: json, level: info}
interface: eth0
announce: {count: 1, repeat: 0, refresh: 0s}
instances:
  - name: A
    vips: [192.0.2.101/24]
    status_file: %[3]s/A.json
    track_scripts: [{name: chk, script: "test ! -e %[3]s/fail-A", interval: 100ms, timeout: 5s}]
  - name: B
    vips: [192.0.2.102/24]
    status_file: %[3]s/B.json
    track_scripts: [{name: chk, script: "test ! -e %[3]s/fail-B", interval: 100ms, timeout: 5s}]
`

func fail(t *testing.T, n *node, instance string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(n.dir, "fail-"+instance), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// startPair starts n1, waits until it is master of both instances, then starts n2.
func startPair(t *testing.T, st *store, body string) (*node, *node) {
	t.Helper()
	body = strings.NewReplacer("{{backend}}", st.backend, "{{store}}", st.lines).Replace(body)
	a, b := twoNodes(t)
	n1 := startNode(t, a, "n1", st.endpoint, body)
	eventually(t, "n1 master of A and B, holding both VIPs", func() bool {
		return st.leader("A").Node == "n1" && st.leader("B").Node == "n1" && n1.has(t, "192.0.2.101") && n1.has(t, "192.0.2.102")
	}, n1)
	n2 := startNode(t, b, "n2", st.endpoint, body)
	eventually(t, "n2 a backup of both", func() bool {
		return n2.status(t, "A").Role == "backup" && n2.status(t, "B").Role == "backup"
	}, n2)
	return n1, n2
}

// One daemon runs two instances, each its own election: when A's track script fails on the node
// that holds both, A's master record and VIP move to the other node; B stays where it is, with the
// same term. The status files and log lines name their instance.
func TestTwoInstancesFailOverIndependently(t *testing.T) {
	testenv.RequireRoot(t)
	forStores(t, func(t *testing.T, backend string) {
		st := startStore(t, backend, "A", "B")
		n1, n2 := startPair(t, st, twoInstances)
		termB := st.leader("B").Term
		eventually(t, "n1's status file of A naming instance A, master", func() bool {
			s := n1.status(t, "A")
			return s.Instance == "A" && s.Group == "A" && s.Role == "master" && s.Promoted
		}, n1)

		fail(t, n1, "A")
		eventually(t, "A's record and VIP on n2", func() bool {
			return st.leader("A").Node == "n2" && n2.has(t, "192.0.2.101") && !n1.has(t, "192.0.2.101")
		}, n1, n2)
		if r := st.leader("B"); r.Node != "n1" || r.Term != termB {
			t.Errorf("B's record %+v after A failed over, want n1 with term %d still", r, termB)
		}
		if !n1.has(t, "192.0.2.102") || n2.has(t, "192.0.2.102") {
			t.Errorf("B's VIP moved: n1 %v, n2 %v", n1.vips(t), n2.vips(t))
		}
		eventually(t, "n1's status of A: not promoted, not eligible", func() bool {
			s := n1.status(t, "A")
			return !s.Promoted && !s.Eligible
		}, n1)
		checkLogs(t, n1)
	})
}

// A sync group moves together: when B's track script fails on the node that holds the group, both
// A and B move to the other node (their records and VIPs), and the failed node holds neither.
func TestSyncGroupMovesTogether(t *testing.T) {
	testenv.RequireRoot(t)
	forStores(t, func(t *testing.T, backend string) {
		st := startStore(t, backend, "A", "B")
		n1, n2 := startPair(t, st, twoInstances+"sync_groups:\n  - {name: G, instances: [A, B]}\n")

		fail(t, n1, "B")
		eventually(t, "A and B on n2", func() bool {
			return st.leader("A").Node == "n2" && st.leader("B").Node == "n2" &&
				n2.has(t, "192.0.2.101") && n2.has(t, "192.0.2.102")
		}, n1, n2)
		if got := n1.vips(t); len(got) > 0 {
			t.Errorf("n1 still holds %v after its group moved", got)
		}
		// n1 is healthy again: stopping n2 hands the whole group back.
		if err := os.Remove(filepath.Join(n1.dir, "fail-B")); err != nil {
			t.Fatal(err)
		}
		n2.exit(t)
		eventually(t, "A and B back on n1", func() bool {
			return st.leader("A").Node == "n1" && st.leader("B").Node == "n1" &&
				n1.has(t, "192.0.2.101") && n1.has(t, "192.0.2.102")
		}, n1)
		checkLogs(t, n1)
	})
}

// checkLogs checks every JSON log line of n: no key twice, and the instances' lines name theirs.
func checkLogs(t *testing.T, n *node) {
	t.Helper()
	named := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(n.log.String()))
	for sc.Scan() {
		line := sc.Bytes()
		keys, err := topKeys(line)
		if err != nil {
			t.Errorf("%s: log line is not JSON: %v: %s", n.name, err, line)
			continue
		}
		seen := map[string]bool{}
		for _, k := range keys {
			if seen[k] {
				t.Errorf("%s: key %q twice in log line %s", n.name, k, line)
			}
			seen[k] = true
		}
		var m map[string]any
		_ = json.Unmarshal(line, &m)
		if in, ok := m["instance"].(string); ok {
			named[in]++
		}
	}
	if named["A"] == 0 || named["B"] == 0 {
		t.Errorf("%s: log lines naming instance A: %d, B: %d; want both", n.name, named["A"], named["B"])
	}
}

// topKeys returns the keys of a JSON object in order, duplicates included.
func topKeys(b []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not an object")
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// A VIP in the long form goes on its own device with its own label: the master binds it there
// beside the instance's VIP on its interface, and lets go of both when it stops.
func TestVIPOnAnotherDevice(t *testing.T) {
	testenv.RequireRoot(t)
	srv := etcdtest.Start(t)
	a, b := twoNodes(t)
	if _, _, err := netnstest.Veth(a, "eth1", netip.MustParsePrefix("198.51.100.1/24"), b, "eth1", netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, a, "n1", "http://"+srv.Endpoints()[0], `name: %[1]s
endpoints: [%[2]s]
lease_ttl: 1s
fence_guard: false
interface: eth0
group: web
status_file: %[3]s/web.json
vips: [192.0.2.101/24, {address: 198.51.100.101/24, dev: eth1, label: "eth1:web"}]
`)
	labelled := func() bool {
		l, err := a.Netlink.LinkByName("eth1")
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := a.Netlink.AddrList(l, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range addrs {
			if x.IP.String() == "198.51.100.101" && x.Label == "eth1:web" {
				return true
			}
		}
		return false
	}
	eventually(t, "both VIPs bound, each on its device, and in the status file", func() bool {
		return n.has(t, "192.0.2.101") && labelled() && len(n.status(t, "web").BoundVIPs) == 2
	}, n)
	n.exit(t)
	if labelled() {
		t.Error("the VIP on eth1 is still bound after the daemon stopped")
	}
}

// The notify hooks hear the instance's transitions: notify master and backup; notify_master,
// notify_backup, notify_fault and notify_stop their own role (the store going away is a fault).
func TestNotifyHooks(t *testing.T) {
	testenv.RequireRoot(t)
	srv := etcdtest.Start(t)
	a, _ := twoNodes(t)
	dir := t.TempDir()
	hook := filepath.Join(dir, "hook")
	// Each hook appends "<its name> <role> <group> <term>" to dir/events.
	script := "#!/bin/sh\necho \"$(basename \"$0\") $3 $1 $4\" >> " + filepath.Join(dir, "events") + "\n"
	for _, name := range []string{"notify", "master", "backup", "fault", "stop"} {
		if err := os.WriteFile(hook+"-"+name, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	n := startNode(t, a, "n1", "http://"+srv.Endpoints()[0], etcdWebNode+`hooks: {notify: `+hook+`-notify, notify_master: `+hook+`-master, notify_backup: `+hook+`-backup,
        notify_fault: `+hook+`-fault, notify_stop: `+hook+`-stop}
`)
	events := func() string { b, _ := os.ReadFile(filepath.Join(dir, "events")); return string(b) }
	eventually(t, "notify and notify_master told of master", func() bool {
		e := events()
		return strings.Contains(e, "hook-notify master web") && strings.Contains(e, "hook-master master web")
	}, n)
	srv.Close()
	eventually(t, "the master let go and notify_fault was told", func() bool {
		e := events()
		return !n.has(t, "192.0.2.101") && strings.Contains(e, "hook-fault fault web") &&
			strings.Contains(e, "hook-notify backup web") && strings.Contains(e, "hook-backup backup web")
	}, n)
	n.exit(t)
	if e := events(); !strings.Contains(e, "hook-stop stop web") || strings.Contains(e, "hook-master backup") {
		t.Errorf("events after stop:\n%s\nwant notify_stop told, and each notify_<role> only its role", e)
	}
}

// etcdWebNode is startNode's configuration of an etcd node holding one VIP in group web (1s lease,
// no fence guard, status in web.json); a test appends its own lines.
const etcdWebNode = `name: %[1]s
endpoints: [%[2]s]
lease_ttl: 1s
fence_guard: false
interface: eth0
group: web
status_file: %[3]s/web.json
vips: [192.0.2.101/24]
`

// vrrpSync is one node of a VRRP pair whose instances A and B form a sync group; B has a track
// script that fails while dir/fail-B exists.
const vrrpSync = `backend: vrrp
name: %[1]s
fence_guard: false
log: {format: json, level: debug}
interface: eth0
vrrp: {priority: %[2]s, advert_int: 100ms}
announce: {count: 1, repeat: 0, refresh: 0s}
instances:
  - {name: A, vips: [192.0.2.101/24], vrrp: {vrid: 11}, status_file: %[3]s/A.json}
  - name: B
    vips: [192.0.2.102/24]
    vrrp: {vrid: 12}
    status_file: %[3]s/B.json
    track_scripts: [{name: chk, script: "test ! -e %[3]s/fail-B", interval: 100ms, timeout: 5s}]
sync_groups:
  - {name: G, instances: [A, B]}
`

// startBinary runs the real daemon (HACOORD_BIN) in ns with vrrpSync (startBinaryConf).
func startBinary(t *testing.T, bin string, ns *netnstest.NS, name, prio string) *node {
	t.Helper()
	return startBinaryConf(t, bin, ns, name, func(dir string) string { return fmt.Sprintf(vrrpSync, name, prio, dir) })
}

// With native VRRP, a sync group also moves as one: when a member's check fails on the master, the
// whole group goes to the other router (the followers wait in FAULT for their leader), and comes
// back, whole, when the preferred router is healthy again.
func TestVRRPSyncGroupMovesTogether(t *testing.T) {
	testenv.RequireRoot(t)
	bin := hacoordBin(t)
	a, b := twoNodes(t)
	n1 := startBinary(t, bin, a, "n1", "150")
	eventually(t, "n1 master of both", func() bool { return n1.has(t, "192.0.2.101") && n1.has(t, "192.0.2.102") }, n1)
	n2 := startBinary(t, bin, b, "n2", "100")
	eventually(t, "n2 waiting: B in fault while A is backup", func() bool {
		return n2.status(t, "A").Role == "backup" && n2.status(t, "B").Role == "fault"
	}, n2)

	fail(t, n1, "B")
	eventually(t, "A and B on n2, none on n1", func() bool {
		return n2.has(t, "192.0.2.101") && n2.has(t, "192.0.2.102") && len(n1.vips(t)) == 0
	}, n1, n2)
	if err := os.Remove(filepath.Join(n1.dir, "fail-B")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "A and B back on n1 (it preempts), none on n2", func() bool {
		return n1.has(t, "192.0.2.101") && n1.has(t, "192.0.2.102") && len(n2.vips(t)) == 0
	}, n1, n2)
}
