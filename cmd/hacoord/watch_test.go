package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/internal/etcdtest"
)

// hacoord watch --once prints {} for a group without a master, and the record once one is
// published, against a real etcd.
func TestWatchOnceAgainstEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	ep := "http://" + srv.Endpoints()[0]
	args := []string{"watch", "--once", "--backend", "etcd", "--endpoints", ep, "--group", "web"}
	code, out, stderr := runCLI(t, args...)
	if code != exitOK || strings.TrimSpace(out) != "{}" {
		t.Fatalf("no master: exit %d, out %q, stderr %q; want {}", code, out, stderr)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	rec := election.Record{Group: "web", Node: "node1", Term: 42, Since: time.Unix(1700000000, 0).UTC()}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, etcd.LeaderKey("web"), string(rec.Marshal())); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = runCLI(t, args...)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got, err := election.ParseRecord([]byte(strings.TrimSpace(out)))
	if err != nil || got.Node != "node1" || got.Term != 42 {
		t.Fatalf("watch printed %q (%v), want node1 term 42", out, err)
	}
}

func TestWatchRefusesVRRP(t *testing.T) {
	code, _, stderr := runCLI(t, "watch", "--backend", "vrrp")
	if code != exitConfig || !strings.Contains(stderr, "VRRP publishes no master record") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

// hacoord status prints the daemon's snapshot, fails without one, and calls a stale one stale.
func TestStatusCommand(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.json")
	code, _, stderr := runCLI(t, "status", "--status-file", p)
	if code != exitError || !strings.Contains(stderr, "is the daemon") {
		t.Fatalf("missing file: exit %d, %q", code, stderr)
	}
	st := Status{Group: "web", Node: "n1", Role: "master", Term: 7, Updated: time.Now().UTC(), BoundVIPs: []string{"10.0.0.100/24"}}
	if err := writeJSONFile(p, st); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, "status", "--status-file", p)
	var back Status
	if code != exitOK || json.Unmarshal([]byte(out), &back) != nil || back.Role != "master" || back.Term != 7 {
		t.Fatalf("exit %d, out %q, stderr %q", code, out, stderr)
	}
	st.Updated = time.Now().Add(-time.Minute)
	if err := writeJSONFile(p, st); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr = runCLI(t, "status", "--status-file", p); code != exitError || !strings.Contains(stderr, "stopped or hung") {
		t.Fatalf("stale: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(p + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
}
