package lab

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// reloadVIP is the VIP a reload adds.
var reloadVIP = netip.MustParseAddr("10.77.0.101")

// SIGHUP to the master's daemon with a VIP added to its file binds the new VIP on the master at once,
// without a failover: the term does not move, the lab VIP never leaves the master, and no other node
// binds anything (the backups, reloaded too, only record the new list). A reload with a changed
// group, and one with a file that does not parse, are refused: the daemon runs on and holds both
// VIPs, with the same term. The fence guard learnt the new VIP: when the master is SIGKILLed it
// removes both, and the next master binds both.
func TestReloadWithoutFailover(t *testing.T) { forBackends(t, testReload) }

func testReload(t *testing.T, backend string) {
	l := newLab(t, backend, func(o *Options) { o.Config, o.NoStart = true, true })
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	base := "vips: [" + VIP.String() + "]\n"
	m, before := startConfigured(ctx, t, l, base)
	from := time.Now()

	added := "vips: [" + VIP.String() + ", " + reloadVIP.String() + "/24]\n"
	for _, n := range l.Nodes {
		if err := n.WriteConfig(added); err != nil {
			t.Fatal(err)
		}
	}
	sent := time.Now()
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	bound := waitAddr(ctx, t, l, m, reloadVIP)
	t.Logf("%s: the new VIP bound %v after the SIGHUP", backend, bound.Sub(sent).Round(time.Millisecond))
	if _, err := m.Daemon().WaitLine(ctx, `reloaded: +vip `+reloadVIP.String()+`/24`); err != nil {
		t.Fatal(err)
	}
	for _, n := range l.Nodes {
		if n != m {
			reloadWith(ctx, t, n, added, `reloaded: +vip `+reloadVIP.String()+`/24`)
		}
	}
	waitStatus(ctx, t, m, func(s DaemonStatus) bool { return slices.Contains(s.BoundVIPs, reloadVIP.String()+"/24") })
	for _, n := range l.Nodes { // the status file shows the new configuration, on the backups too
		waitStatus(ctx, t, n, func(s DaemonStatus) bool { return slices.Contains(s.VIPs, reloadVIP.String()+"/24") })
	}
	checkHeld(t, l, m, before.Term, from)

	for _, tc := range []struct{ name, body, line string }{
		{"changed group", "group: other\n" + added, `group: default to other`},
		{"broken file", "vips: [" + VIP.String() + "\n", "the configuration does not validate"},
	} {
		line := reloadWith(ctx, t, m, tc.body, tc.line)
		if !strings.Contains(line, "reload refused") {
			t.Errorf("%s: the refusal is not said as such: %s", tc.name, line)
		}
		if m.Daemon().Exited() {
			t.Fatalf("%s: the daemon exited on SIGHUP", tc.name)
		}
		checkHeld(t, l, m, before.Term, from)
	}
	// The daemon still answers (its status file is rewritten on change; its process is alive).
	if st, err := m.Status(); err != nil || st.Term != before.Term || !st.Promoted {
		t.Fatalf("status after the refused reloads: %+v, %v; want promoted in term %d", st, err, before.Term)
	}

	// The fence guard learnt the new VIP: SIGKILL the master, and the guard removes it with the lab
	// VIP (bound without a kernel lifetime at this TTL, it would stay for good otherwise); the next
	// master, a reloaded backup, binds both.
	killed := time.Now()
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	gone := waitNoAddr(ctx, t, m, reloadVIP)
	t.Logf("%s: the killed master's new VIP removed %v after the SIGKILL", backend, gone.Sub(killed).Round(time.Millisecond))
	next, _, err := l.Sampler.WaitHolders(ctx, func(h []string) bool { return len(h) == 1 && h[0] != m.Name })
	if err != nil {
		t.Fatal(err)
	}
	waitAddr(ctx, t, l, l.Node(next[0]), reloadVIP)
}

// startConfigured writes body as every node's configuration, starts the daemons, waits until each
// runs (signals are caught once it does: a SIGHUP in its first milliseconds ends it) and the lab is
// steady, and returns the master with its status once promoted.
func startConfigured(ctx context.Context, t *testing.T, l *Lab, body string) (*Node, DaemonStatus) {
	t.Helper()
	for _, n := range l.Nodes {
		if err := n.WriteConfig(body); err != nil {
			t.Fatal(err)
		}
		if err := n.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range l.Nodes {
		if _, err := n.Daemon().WaitLine(ctx, `"msg":"starting"`); err != nil {
			t.Fatal(err)
		}
	}
	m := steady(t, l)
	return m, waitStatus(ctx, t, m, func(s DaemonStatus) bool { return s.Promoted })
}

// reloadWith writes body as n's configuration, sends its daemon SIGHUP and waits for the log line
// that contains line, which it returns.
func reloadWith(ctx context.Context, t *testing.T, n *Node, body, line string) string {
	t.Helper()
	if err := n.WriteConfig(body); err != nil {
		t.Fatal(err)
	}
	if err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	got, err := n.Daemon().WaitLine(ctx, line)
	if err != nil {
		t.Fatalf("%s: reload: no %q: %v", n.Name, line, err)
	}
	return got
}

// waitNoAddr waits until n no longer holds a; it returns when.
func waitNoAddr(ctx context.Context, t *testing.T, n *Node, a netip.Addr) time.Time {
	t.Helper()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		has, err := n.HasAddr(a)
		if err != nil {
			t.Fatal(err)
		}
		if !has {
			return time.Now()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s kept %s", n.Name, a)
		case <-tick.C:
		}
	}
}

// checkHeld fails unless m is master in term, holds the lab VIP and the reload's, has held the
// lab VIP alone since from, and no other node holds either.
func checkHeld(t *testing.T, l *Lab, m *Node, term uint64, from time.Time) {
	t.Helper()
	for _, h := range l.Sampler.HolderHistory() {
		if h.At.After(from) {
			t.Errorf("the lab VIP's holders changed to %v at %v after the reload began: a failover", h.Holders, h.At.Sub(from))
		}
	}
	if hs := l.Sampler.Holders(); !slices.Equal(hs, []string{m.Name}) {
		t.Errorf("holders %v, want %s", hs, m.Name)
	}
	st, err := m.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Term != term || !st.Promoted {
		t.Errorf("%s status: term %d promoted %v; want term %d promoted (no new election)", m.Name, st.Term, st.Promoted, term)
	}
	for _, n := range l.Nodes {
		has, err := n.HasAddr(reloadVIP)
		if err != nil {
			t.Fatal(err)
		}
		if has != (n == m) {
			t.Errorf("%s holds %s: %v", n.Name, reloadVIP, has)
		}
	}
}

// waitAddr waits until m holds a, checking meanwhile that no other node does; it returns when.
func waitAddr(ctx context.Context, t *testing.T, l *Lab, m *Node, a netip.Addr) time.Time {
	t.Helper()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, n := range l.Nodes {
			has, err := n.HasAddr(a)
			if err != nil {
				t.Fatal(err)
			}
			if has && n != m {
				t.Fatalf("%s bound %s", n.Name, a)
			}
			if has {
				return time.Now()
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never bound %s:\n%s", m.Name, a, m.Daemon().Tail(20))
		case <-tick.C:
		}
	}
}

// waitStatus waits until n's status file satisfies ok and returns it.
func waitStatus(ctx context.Context, t *testing.T, n *Node, ok func(DaemonStatus) bool) DaemonStatus {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if st, err := n.Status(); err == nil && ok(st) {
			return st
		}
		select {
		case <-ctx.Done():
			st, err := n.Status()
			t.Fatalf("%s status never as wanted: %+v, %v", n.Name, st, err)
		case <-tick.C:
		}
	}
}

// A reload adds a track script and a notify hook without a failover (the new check starts
// passing); once the script fails on the master, it withdraws, another node takes over and the new
// notify hook hears the master become backup. A reload that removes the script makes it a
// candidate again.
func TestReloadTrackScriptAndHook(t *testing.T) { forBackends(t, testReloadTrackScript) }

func testReloadTrackScript(t *testing.T, backend string) {
	l := newLab(t, backend, func(o *Options) { o.Config, o.NoStart = true, true })
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	base := "vips: [" + VIP.String() + "]\n"
	hook := filepath.Join(l.Dir(), "notify.sh")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho \"$HACOORD_ROLE $HACOORD_REASON\" >> \""+l.Dir()+"/$HACOORD_NODE.events\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	m, before := startConfigured(ctx, t, l, base)
	from := time.Now()
	withCheck := func(n *Node) string {
		return base + "track_scripts:\n  - {name: chk, script: \"test ! -e " + filepath.Join(l.Dir(), n.Name+".down") +
			"\", interval: 100ms}\nhooks: {notify: " + hook + "}\n"
	}
	for _, n := range l.Nodes {
		reloadWith(ctx, t, n, withCheck(n), `reloaded: +track_script chk, +hooks.notify`)
	}
	waitStatus(ctx, t, m, func(s DaemonStatus) bool { return s.Checks["chk"] && s.Eligible })
	for _, h := range l.Sampler.HolderHistory() {
		if h.At.After(from) {
			t.Fatalf("holders changed to %v after adding a passing track script by reload", h.Holders)
		}
	}
	if st, _ := m.Status(); st.Term != before.Term {
		t.Fatalf("term %d after the reload, want %d", st.Term, before.Term)
	}

	if err := os.WriteFile(filepath.Join(l.Dir(), m.Name+".down"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	next, _, err := l.Sampler.WaitHolders(ctx, func(h []string) bool { return len(h) == 1 && h[0] != m.Name })
	if err != nil {
		t.Fatal(err)
	}
	waitFile(ctx, t, filepath.Join(l.Dir(), m.Name+".events"), "backup")
	waitFile(ctx, t, filepath.Join(l.Dir(), next[0]+".events"), "master")

	reloadWith(ctx, t, m, base+"hooks: {notify: "+hook+"}\n", `reloaded: -track_script chk`)
	waitStatus(ctx, t, m, func(s DaemonStatus) bool { return s.Eligible && len(s.Checks) == 0 })
}

// waitFile waits until the file at path contains substr.
func waitFile(ctx context.Context, t *testing.T, path, substr string) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), substr) {
			return
		}
		select {
		case <-ctx.Done():
			b, _ := os.ReadFile(path)
			t.Fatalf("%s never said %q: %q", path, substr, b)
		case <-tick.C:
		}
	}
}
