package lab

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fenceLab is a lab whose daemons run a fence hook (hooks.timeout 10s, 1 retry 200ms later) that
// does what dir/mode-<node> says: ok, slow (3 s, longer than the 2 s TTL) or fail; every run
// appends "<unix ns> <node> start|done|fail <term> <attempt> <previous master> <previous address>"
// to dir/fence.log.
type fenceLab struct {
	*Lab
	dir string
}

func newFenceLab(t *testing.T, backend string) *fenceLab {
	t.Helper()
	dir := t.TempDir()
	hook := filepath.Join(dir, "fence")
	script := `#!/bin/sh
d=` + dir + `
mode=$(cat $d/mode-$2 2>/dev/null || echo ok)
line() { echo "$(date +%s%N) $2 $1 $HACOORD_TERM $HACOORD_ATTEMPT $HACOORD_PREVIOUS_MASTER $HACOORD_PREVIOUS_ADDRESS" >> $d/fence.log; }
line start "$2"
case $mode in
slow) sleep 3 ;;
fail) line fail "$2"; echo "ipmi: $HACOORD_PREVIOUS_ADDRESS does not answer"; exit 1 ;;
esac
line done "$2"
`
	if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	l := newLab(t, backend, func(o *Options) {
		o.ExtraArgs = append(o.ExtraArgs, "--fence-hook", hook, "--hook-timeout", "10s",
			"--fence-retries", "1", "--fence-retry-interval", "200ms")
	})
	return &fenceLab{Lab: l, dir: dir}
}

func (f *fenceLab) mode(t *testing.T, n *Node, mode string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, "mode-"+n.Name), []byte(mode), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fenceRun is one line of fence.log.
type fenceRun struct {
	at                   time.Time
	node, what           string
	term                 uint64
	attempt              int
	prevMaster, prevAddr string
}

func (f *fenceLab) runs(t *testing.T, since time.Time) []fenceRun {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(f.dir, "fence.log"))
	var out []fenceRun
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		p := strings.Fields(l)
		if len(p) < 5 {
			continue
		}
		ns, _ := strconv.ParseInt(p[0], 10, 64)
		r := fenceRun{at: time.Unix(0, ns), node: p[1], what: p[2]}
		r.term, _ = strconv.ParseUint(p[3], 10, 64)
		r.attempt, _ = strconv.Atoi(p[4])
		if len(p) > 6 {
			r.prevMaster, r.prevAddr = p[5], p[6]
		}
		if !r.at.Before(since) {
			out = append(out, r)
		}
	}
	return out
}

func (f *fenceLab) holders(ctx context.Context, t *testing.T, what string, ok func([]string) bool) time.Time {
	t.Helper()
	_, at, err := f.Sampler.WaitHolders(ctx, ok)
	if err != nil {
		t.Fatalf("%s: %v\n%s", what, err, f.Tails(30))
	}
	return at
}

// A fence hook fit for STONITH, in the lab on both stores:
//   - slow: the master's daemon is SIGKILLed; the next master's hook takes 3 s, longer than the
//     TTL; it is told the killed master's name and address, keeps its candidacy meanwhile (one
//     run, one term), binds the VIP only after the hook is done, and never two nodes hold it;
//   - failing: the next candidate's hook fails, runs twice for its term, that node never binds the
//     VIP and yields, and the third node (hook ok) takes over.
func TestFenceHookLab(t *testing.T) { forBackends(t, testFenceHook) }

func testFenceHook(t *testing.T, backend string) {
	f := newFenceLab(t, backend)
	t.Logf("lab logs in %s", f.Dir())
	old := steady(t, f.Lab)
	for _, n := range f.Nodes {
		f.mode(t, n, "slow")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	killed := time.Now()
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}
	f.holders(ctx, t, "the killed master's VIP removed", func(h []string) bool { return !slices.Contains(h, old.Name) })
	bound := f.holders(ctx, t, "another node holding the VIP", func(h []string) bool { return len(h) == 1 && h[0] != old.Name })
	newMaster := f.Node(f.Sampler.Holders()[0])
	runs := f.runs(t, killed)
	var start, done *fenceRun
	for i := range runs {
		r := &runs[i]
		if r.node != newMaster.Name {
			t.Errorf("%s ran its fence hook (%s) while %s took over: %+v", r.node, r.what, newMaster.Name, runs)
		}
		switch r.what {
		case "start":
			if start != nil {
				t.Errorf("the hook ran more than once: %+v", runs)
			}
			start = r
		case "done":
			done = r
		}
	}
	if start == nil || done == nil {
		t.Fatalf("no complete fence hook run on %s: %+v", newMaster.Name, runs)
	}
	if start.prevMaster != old.Name || start.prevAddr != old.Addr.String() {
		t.Errorf("the hook was told previous master %q %q, want %s %s", start.prevMaster, start.prevAddr, old.Name, old.Addr)
	}
	if bound.Before(done.at) {
		t.Errorf("%s bound the VIP %v before its fence hook was done", newMaster.Name, done.at.Sub(bound))
	}
	rec, err := f.LeaderRecord(ctx)
	if err != nil || rec.Node != newMaster.Name || rec.Term != start.term {
		t.Errorf("master record %+v (%v); the hook was told term %d: the candidacy was not kept through the hook", rec, err, start.term)
	}
	if two, _ := f.Sampler.HolderTimes(killed, time.Now()); two > 0 {
		t.Errorf("two holders for %v", two)
	}
	t.Logf("%s slow hook: VIP bound %v after the kill, %v after the hook's end (hook %v, TTL %v)", backend,
		bound.Sub(killed).Round(time.Millisecond), bound.Sub(done.at).Round(time.Millisecond),
		done.at.Sub(start.at).Round(time.Millisecond), f.TTL())

	// Failing: the killed node restarts and queues last; the candidate after the new master fails.
	if _, err := f.RestoreAll(ctx); err != nil {
		t.Fatal(err)
	}
	master := f.Node(f.Sampler.Holders()[0])
	var third *Node
	for _, n := range f.Nodes {
		if n != master && n != old {
			third = n
		}
	}
	f.mode(t, third, "fail")
	f.mode(t, old, "ok")
	killed = time.Now()
	if err := master.Kill(); err != nil {
		t.Fatal(err)
	}
	bound = f.holders(ctx, t, "a node other than the killed one holding the VIP", func(h []string) bool {
		return len(h) == 1 && h[0] != master.Name
	})
	holder := f.Sampler.Holders()[0]
	runs = f.runs(t, killed)
	var fails []fenceRun
	for _, r := range runs {
		if r.node == third.Name && r.what == "fail" {
			fails = append(fails, r)
		}
	}
	if holder != old.Name {
		t.Errorf("%s holds the VIP; want %s, whose hook succeeds", holder, old.Name)
	}
	if len(fails) < 2 || fails[0].attempt != 1 || fails[1].attempt != 2 || fails[0].term != fails[1].term {
		t.Errorf("%s's failing hook runs %+v: want attempts 1 and 2 of one term", third.Name, fails)
	}
	for _, c := range f.Sampler.HolderHistory() {
		if c.At.After(killed) && slices.Contains(c.Holders, third.Name) {
			t.Errorf("%s held the VIP at %v although its fence hook failed", third.Name, f.Since(c.At))
		}
	}
	if two, _ := f.Sampler.HolderTimes(killed, time.Now()); two > 0 {
		t.Errorf("two holders for %v", two)
	}
	t.Logf("%s failing hook: %d failed runs on %s, then %s bound the VIP %v after the kill", backend, len(fails), third.Name,
		holder, bound.Sub(killed).Round(time.Millisecond))
}
