package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
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

// hacoord watch (without --once) prints the current record, then a line for every change, {} when
// the master goes, and exits 0 when interrupted.
func TestWatchStreamsChanges(t *testing.T) {
	srv := etcdtest.Start(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		code <- run(ctx, []string{"watch", "--backend", "etcd", "--endpoints", "http://" + srv.Endpoints()[0], "--group", "web"}, pw, &stderr)
		pw.Close()
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("watch ended before %s; stderr %s", what, stderr.String())
			}
			return l
		case <-time.After(10 * time.Second):
			t.Fatalf("no line for %s within 10s", what)
		}
		return ""
	}
	if l := next("the empty group"); l != "{}" {
		t.Fatalf("first line %q, want {}", l)
	}
	put := func(node string, term uint64) {
		t.Helper()
		rec := election.Record{Group: "web", Node: node, Term: term, Since: time.Unix(1700000000, 0).UTC()}
		pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer pcancel()
		if _, err := cli.Put(pctx, etcd.LeaderKey("web"), string(rec.Marshal())); err != nil {
			t.Fatal(err)
		}
	}
	for i, node := range []string{"node1", "node2"} {
		put(node, uint64(10+i))
		got, err := election.ParseRecord([]byte(next(node)))
		if err != nil || got.Node != node || got.Term != uint64(10+i) {
			t.Fatalf("line for %s: %+v, %v", node, got, err)
		}
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	if _, err := cli.Delete(dctx, etcd.LeaderKey("web")); err != nil {
		t.Fatal(err)
	}
	if l := next("the master's departure"); l != "{}" {
		t.Fatalf("after delete %q, want {}", l)
	}
	cancel()
	select {
	case c := <-code:
		if c != exitOK {
			t.Fatalf("exit %d after interrupt, want 0; stderr %s", c, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not exit within 10s of the interrupt")
	}
}
