package main

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/internal/etcdtest"
	"github.com/hacoord/hacoord/internal/zktest"
)

// groupFixture is what the store tests publish: a master record for n2 and three candidates in
// queue order, one of them an older hacoord's bare node name.
var (
	fixtureSince  = time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	fixtureRecord = election.Record{Group: "web", Node: "n2", Address: netip.MustParseAddr("10.0.0.12"),
		VIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.100/24")}, Term: 42, Since: fixtureSince}
	healthy       = true
	fixtureValues = [][]byte{
		election.Candidate{Node: "n2", Address: netip.MustParseAddr("10.0.0.12"), Priority: 150, Preempt: true, Healthy: &healthy}.Marshal(),
		[]byte("n1"), // an older hacoord: its bare name
		election.Candidate{Node: "n3", Priority: 90}.Marshal(),
	}
)

// checkFixture checks what `status -o json` printed for the fixture.
func checkFixture(t *testing.T, backend, out string) {
	t.Helper()
	var gs GroupStatus
	if err := json.Unmarshal([]byte(out), &gs); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if gs.Backend != backend || gs.Group != "web" {
		t.Errorf("backend %q group %q, want %s web", gs.Backend, gs.Group, backend)
	}
	if gs.Master == nil || gs.Master.Node != "n2" || gs.Master.Term != 42 || !gs.Master.Since.Equal(fixtureSince) || gs.Master.Address.String() != "10.0.0.12" {
		t.Errorf("master %+v, want n2 at 10.0.0.12, term 42, since %v", gs.Master, fixtureSince)
	}
	var got []string
	for _, c := range gs.Candidates {
		got = append(got, c.Node)
	}
	if strings.Join(got, ",") != "n2,n1,n3" {
		t.Fatalf("candidates %v, want n2,n1,n3 (queue order)", got)
	}
	c := gs.Candidates
	if c[0].Position != 1 || !c[0].Master || c[0].Priority != 150 || c[0].Healthy == nil || !*c[0].Healthy {
		t.Errorf("head %+v: want position 1, master, priority 150, healthy", c[0])
	}
	if c[1].Position != 2 || c[1].Master || c[1].Priority != election.DefaultPriority || c[1].Healthy != nil {
		t.Errorf("second %+v: want position 2, default priority, health not published", c[1])
	}
	if c[2].Position != 3 || c[2].Priority != 90 {
		t.Errorf("third %+v: want position 3, priority 90", c[2])
	}
}

func TestStatusFromEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	ep := srv.Endpoints()[0]
	args := []string{"status", "--backend", "etcd", "--endpoints", ep, "--group", "web"}

	t.Run("empty group", func(t *testing.T) {
		code, out, errs := runHacoord(append(args, "-o", "json")...)
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, errs)
		}
		var gs GroupStatus
		if err := json.Unmarshal([]byte(out), &gs); err != nil || gs.Master != nil || len(gs.Candidates) != 0 {
			t.Fatalf("status of an empty group: %v %+v\n%s", err, gs, out)
		}
		code, out, errs = runHacoord(args...)
		if code != exitOK || !strings.Contains(out, "master: none") || !strings.Contains(out, "candidates: none") {
			t.Fatalf("table of an empty group: exit %d\n%s%s", code, out, errs)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	g, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	// Keys that sort against the queue order: the queue is create-revision order.
	for i, key := range []string{"c", "a", "b"} {
		if _, err := cli.Put(ctx, "/hacoord/web/election/"+key, string(fixtureValues[i]), clientv3.WithLease(g.ID)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Put(ctx, "/hacoord/web/leader", string(fixtureRecord.Marshal()), clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	// Another group's candidate is not listed.
	if _, err := cli.Put(ctx, "/hacoord/web2/election/z", "x9"); err != nil {
		t.Fatal(err)
	}

	t.Run("json", func(t *testing.T) {
		code, out, errs := runHacoord(append(args, "-o", "json")...)
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, errs)
		}
		checkFixture(t, "etcd", out)
	})
	t.Run("table", func(t *testing.T) {
		code, out, errs := runHacoord(args...)
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, errs)
		}
		checkTable(t, out)
	})
}

// checkTable checks the table of the fixture: the master line and one line per candidate, in order.
func checkTable(t *testing.T, out string) {
	t.Helper()
	if !strings.Contains(out, "master: n2  address 10.0.0.12  term 42  since 2026-12-02T01:00:00Z") {
		t.Errorf("no master line:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var rows []string
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 3 && (f[0] == "1" || f[0] == "2" || f[0] == "3") {
			rows = append(rows, strings.Join(f[:5], " "))
		}
	}
	want := []string{"1 n2 (master) 150 healthy", "2 n1 100 - no", "3 n3 90 - no"}
	if strings.Join(rows, "|") != strings.Join(want, "|") {
		t.Errorf("candidate rows %q, want %q\n%s", rows, want, out)
	}
}

func TestStatusFromZooKeeper(t *testing.T) {
	srv := zktest.Start(t, zktest.Options{})
	args := []string{"status", "--backend", "zk", "--endpoints", srv.Addr() + "/ha", "--group", "web"}

	code, out, errs := runHacoord(append(args, "-o", "json")...)
	if code != exitOK || !strings.Contains(out, `"master": null`) {
		t.Fatalf("status of a group that does not exist: exit %d\n%s%s", code, out, errs)
	}

	conn, ev, err := gozk.Connect([]string{srv.Addr()}, 10*time.Second, gozk.WithLogger(nopZKLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := time.After(10 * time.Second)
	for e := range ev {
		if e.State == gozk.StateHasSession {
			break
		}
		select {
		case <-deadline:
			t.Fatal("no ZooKeeper session")
		default:
		}
	}
	acl := gozk.WorldACL(gozk.PermAll)
	for _, p := range []string{"/ha", "/ha/hacoord", "/ha/hacoord/web", "/ha/hacoord/web/election"} {
		if _, err := conn.Create(p, nil, 0, acl); err != nil && err != gozk.ErrNodeExists {
			t.Fatal(err)
		}
	}
	// Protected names whose GUIDs sort against the queue order: the queue is sequence order.
	for i, guid := range []string{"ccc", "aaa", "bbb"} {
		if _, err := conn.Create("/ha/hacoord/web/election/_c_"+guid+"-n_", fixtureValues[i], gozk.FlagEphemeral|gozk.FlagSequence, acl); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Create("/ha/hacoord/web/leader", fixtureRecord.Marshal(), gozk.FlagEphemeral, acl); err != nil {
		t.Fatal(err)
	}
	// n4 is in maintenance (`hacoord maintenance on`): listed after the queue, with no position.
	if _, err := conn.Create("/ha/hacoord/web/maintenance", nil, 0, acl); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Create("/ha/hacoord/web/maintenance/n4", election.Candidate{Node: "n4", Priority: 120}.Marshal(), gozk.FlagEphemeral, acl); err != nil {
		t.Fatal(err)
	}

	// A planned move to n1 is under way (`hacoord transfer --to n1`).
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if _, err := conn.Create("/ha/hacoord/web/transfer", election.Transfer{From: "n2", To: "n1", Until: until}.Marshal(), gozk.FlagEphemeral, acl); err != nil {
		t.Fatal(err)
	}

	code, out, errs = runHacoord(append(args, "-o", "json")...)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var gs GroupStatus
	if err := json.Unmarshal([]byte(out), &gs); err != nil || len(gs.Candidates) != 4 {
		t.Fatalf("want 4 candidates (one in maintenance): %v\n%s", err, out)
	}
	if m := gs.Candidates[3]; m.Node != "n4" || !m.Maintenance || m.Position != 0 || m.Master {
		t.Errorf("maintenance entry %+v: want n4, maintenance, no position", m)
	}
	if tr := gs.Transfer; tr == nil || tr.From != "n2" || tr.To != "n1" || !tr.Until.Equal(until) {
		t.Errorf("transfer %+v, want n2 -> n1 until %v", tr, until)
	}
	if !strings.Contains(out, `"maintenance": true`) {
		t.Errorf("JSON does not show the maintenance flag:\n%s", out)
	}
	trimmed := gs
	trimmed.Candidates = gs.Candidates[:3]
	b, _ := json.Marshal(trimmed)
	checkFixture(t, "zk", string(b))
	code, out, errs = runHacoord(args...)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	checkTable(t, out)
	if !strings.Contains(out, "transfer: n2 -> n1 until "+until.Format(time.RFC3339)) {
		t.Errorf("table lacks the transfer:\n%s", out)
	}
	if !strings.Contains(out, "-  n4") || !strings.Contains(out, "yes") {
		t.Errorf("table lacks n4 in maintenance:\n%s", out)
	}
}

// A store that does not answer is an error naming it, within --timeout; settings that cannot work
// are usage errors naming the flag.
func TestStatusStoreErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	for _, b := range []struct{ backend, ep string }{{"etcd", "http://" + l.Addr().String()}, {"zk", l.Addr().String()}} {
		t.Run(b.backend, func(t *testing.T) {
			start := time.Now()
			code, out, errs := runHacoord("status", "--backend", b.backend, "--endpoints", b.ep, "--group", "web", "--timeout", "700ms")
			took := time.Since(start)
			if code != exitError || out != "" {
				t.Errorf("exit %d, stdout %q; want %d and nothing", code, out, exitError)
			}
			if !strings.Contains(errs, "did not answer in time (--timeout)") || !strings.Contains(errs, l.Addr().String()) {
				t.Errorf("error does not say the store at %s did not answer: %s", l.Addr(), errs)
			}
			if took > 5*time.Second {
				t.Errorf("took %v with --timeout 700ms", took)
			}
		})
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--backend", "vrrp", "--endpoints", "x"}, "--backend"},
		{[]string{"--endpoints", "http://127.0.0.1:1"}, "--backend"},
		{[]string{"--backend", "etcd"}, "--endpoints"},
		{[]string{"--backend", "etcd", "--endpoints", "http://127.0.0.1:1", "-o", "yaml"}, "--output"},
		{[]string{"--backend", "etcd", "--endpoints", "http://127.0.0.1:1", "--timeout", "0s"}, "--timeout"},
	} {
		code, _, errs := runHacoord(append([]string{"status"}, c.args...)...)
		if code != exitConfig || !strings.Contains(errs, c.want) {
			t.Errorf("status %v: exit %d, %q; want %d naming %s", c.args, code, errs, exitConfig, c.want)
		}
	}
}

type nopZKLogger struct{}

func (nopZKLogger) Printf(string, ...any) {}
