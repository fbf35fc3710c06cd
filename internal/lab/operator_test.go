package lab

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hacoord/hacoord/fencing"
)

// clientRun runs the hacoord binary with args in the lab's client namespace, which has no daemon of
// its own, and returns its standard output.
func clientRun(t *testing.T, l *Lab, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := l.Client.Command(ctx, hacoordBin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hacoord %s in the client namespace: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return out
}

// `hacoord status --backend B --endpoints ... -o json` from the client namespace names the node
// that really holds the VIP as master, and every node as a candidate, the master at the head.
func TestStatusFromClientNamespace(t *testing.T) { forBackends(t, testStatusFromClient) }

func testStatusFromClient(t *testing.T, backend string) {
	l := newLab(t, backend)
	h := steady(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The master record follows the bind: wait until the store names the holder.
	for {
		rec, err := l.LeaderRecord(ctx)
		if err == nil && rec.Node == h.Name {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the store's master record never named the holder %s: %+v %v", h.Name, rec, err)
		}
		tm := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-tm.C:
		}
	}
	out := clientRun(t, l, "status", "--backend", backend, "--endpoints", strings.Join(l.Store.Endpoints(), ","), "--group", "default", "-o", "json")
	var gs struct {
		Backend string `json:"backend"`
		Master  *struct {
			Node    string `json:"node"`
			Address string `json:"address"`
			Term    uint64 `json:"term"`
		} `json:"master"`
		Candidates []struct {
			Node     string `json:"node"`
			Priority int    `json:"priority"`
			Position int    `json:"position"`
			Master   bool   `json:"master"`
		} `json:"candidates"`
	}
	if err := json.Unmarshal(out, &gs); err != nil {
		t.Fatalf("status output is not JSON: %v\n%s", err, out)
	}
	t.Logf("status from the client namespace:\n%s", out)
	if gs.Master == nil || gs.Master.Node != h.Name || gs.Master.Address != h.Addr.String() || gs.Master.Term == 0 {
		t.Errorf("master %+v, want %s at %s with a term", gs.Master, h.Name, h.Addr)
	}
	var names []string
	for _, c := range gs.Candidates {
		names = append(names, c.Node)
	}
	sorted := slices.Sorted(slices.Values(names))
	if !slices.Equal(sorted, []string{"n1", "n2", "n3"}) {
		t.Fatalf("candidates %v, want n1 n2 n3", names)
	}
	if c := gs.Candidates[0]; c.Node != h.Name || !c.Master || c.Position != 1 {
		t.Errorf("head of the queue %+v, want the master %s at position 1", c, h.Name)
	}
	// The table names the master too.
	table := string(clientRun(t, l, "status", "--backend", backend, "--endpoints", strings.Join(l.Store.Endpoints(), ","), "--group", "default"))
	if !strings.Contains(table, "master: "+h.Name+"  address "+h.Addr.String()) || !strings.Contains(table, h.Name+" (master)") {
		t.Errorf("table does not name the master %s:\n%s", h.Name, table)
	}
}

// runMeasured is runScenario, but a run whose steady state broke before the fault (a master of a
// short-session profile letting go of the VIP for a moment: the soak counts those) is run again,
// up to twice, after the lab is steady again.
func runMeasured(t *testing.T, l *Lab, name string) Result {
	t.Helper()
	for attempt := 0; ; attempt++ {
		r, err := l.RunScenario(context.Background(), name)
		if err != nil && attempt < 2 && strings.Contains(err.Error(), "in steady state") {
			t.Logf("%s: %v; again", name, err)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			_, err = l.RestoreAll(ctx)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return tookOver(t, name, r)
	}
}

// firstBind returns how long after r's fault the new holder first held the VIP: the earlier of the
// sampler's first sight of it and its first gratuitous ARP (sent right after the bind). r.Takeover
// is the holder change WaitHolders woke up to: later, when the new master let go of the VIP and
// took it back meanwhile (between two samples, even). drops counts the times the sampler saw the
// VIP on no node after the first bind, until r.End.
func firstBind(l *Lab, r Result) (took time.Duration, drops int) {
	took = -1
	for _, c := range l.Sampler.HolderHistory() {
		switch {
		case !c.At.After(r.Fault) || c.At.After(r.End):
		case took < 0 && slices.Contains(c.Holders, r.New):
			took = c.At.Sub(r.Fault)
		case took >= 0 && len(c.Holders) == 0:
			drops++
		}
	}
	if took < 0 {
		took = r.Takeover
	}
	if n := l.Node(r.New); n != nil {
		for _, e := range l.ARP.Events(r.Fault, r.End) {
			if e.Gratuitous && e.MAC == n.MAC.String() {
				took = min(took, e.At.Sub(r.Fault))
				break
			}
		}
	}
	return took, drops
}

// explainBounds runs `hacoord explain -o json` with a node's daemon flags in the client namespace
// (so it reads the lab store's timing) and returns its bounds by key.
func explainBounds(t *testing.T, l *Lab) map[string]time.Duration {
	t.Helper()
	out := clientRun(t, l, append([]string{"explain", "-o", "json"}, l.Nodes[0].DaemonArgs()...)...)
	var exs []struct {
		Store string `json:"store"`
		Items []struct {
			Key          string  `json:"key"`
			BoundSeconds float64 `json:"bound_seconds"`
			Formula      string  `json:"formula"`
		} `json:"items"`
	}
	if err := json.Unmarshal(out, &exs); err != nil || len(exs) != 1 {
		t.Fatalf("explain output: %v\n%s", err, out)
	}
	t.Logf("explain: store: %s", exs[0].Store)
	b := map[string]time.Duration{}
	for _, it := range exs[0].Items {
		b[it.Key] = time.Duration(math.Round(it.BoundSeconds * 1e9))
		t.Logf("explain: %s <= %v: %s", it.Key, b[it.Key], it.Formula)
	}
	return b
}

// explain's bounds hold in the lab: crash, SIGKILL and a clean stop of the master, each measured
// (takeover: from the fault to the new holder's VIP in the sampler), stay within what `hacoord
// explain` prints for the lab's settings and store; so does a partitioned master's release.
func TestExplainBoundsHoldInTheLab(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) { testExplainBounds(t, backend, "") })
}

// The same for issue 14's fast profiles (ZooKeeper tickTime 100ms and a 300ms session, etcd
// election timeout 500ms and a 1s TTL). There a SIGKILL's or a clean stop's takeover may come by
// the store's own expiry instead of the guard's or the resign's request (on a loaded host the
// session runs out first): explain's fallback for both, the crash bound, holds.
func TestExplainBoundsHoldFastProfile(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) { testExplainBounds(t, backend, ProfileFast) })
}

func testExplainBounds(t *testing.T, backend, profile string) {
	l := newLab(t, backend, func(o *Options) {
		if profile != "" {
			p, err := SoakProfile(backend, profile)
			if err != nil {
				t.Fatal(err)
			}
			o.Store, o.TTL = p.Store, p.TTL
		}
		o.Jitter = o.TTL / 2
	})
	steady(t, l)
	bounds := explainBounds(t, l)
	if !strings.Contains(fmt.Sprint(bounds), "crash") {
		t.Fatalf("no crash bound in %v", bounds)
	}
	const runs = 2
	var report []string
	first := true
	for _, sc := range []struct{ scenario, key string }{{Crash, "crash"}, {Kill, "kill"}, {Term, "stop"}} {
		bound := bounds[sc.key]
		if bound <= 0 {
			t.Fatalf("explain printed no bound for %s: %v", sc.key, bounds)
		}
		var got []time.Duration
		for i := range runs {
			if !first {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				_, err := l.RestoreAll(ctx)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
			}
			first = false
			r := runMeasured(t, l, sc.scenario)
			took, drops := firstBind(l, r)
			got = append(got, took)
			if r.TwoHolders != 0 {
				t.Errorf("%s run %d: two holders for %v", sc.scenario, i, r.TwoHolders)
			}
			switch {
			case took <= bound:
			case profile == "" || took > bounds["crash"]:
				t.Errorf("%s run %d: takeover %v, beyond explain's bound %v", sc.scenario, i, took, bound)
			default:
				// A short session: the store's own expiry (explain's fallback, the crash bound)
				// came before the guard's or the resign's request got through on a loaded host.
				t.Logf("%s run %d: takeover %v, beyond the guard/resign path %v, within the crash bound %v explain names for it", sc.scenario, i, took, bound, bounds["crash"])
			}
			if drops > 0 {
				// The new master let go at its deadline and took the VIP back (same term): the cost
				// of a short session on a loaded host, which explain warns of; not a takeover.
				t.Logf("%s run %d: %s dropped the VIP %d times after taking it over", sc.scenario, i, r.New, drops)
			}
		}
		slices.Sort(got)
		report = append(report, fmt.Sprintf("%s: takeover min %v max %v, bound %v", sc.scenario, got[0], got[len(got)-1], bound))
	}
	// A partitioned master lets go by its deadline, TTL - margin after the cut at most (explain's
	// hold-after-loss: the daemon acts then; the netlink delete that follows is what the margin is
	// for, so the VIP must be gone before hold + margin, when the store could first expire the
	// lease), and another node takes over as after a crash.
	hold, margin := bounds["hold-after-loss"], fencing.DefaultMargin(l.TTL())
	var released []time.Duration
	for i := range runs {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := l.RestoreAll(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		r := runMeasured(t, l, Partition)
		released = append(released, r.OldReleased)
		if r.TwoHolders != 0 {
			t.Errorf("partition run %d: two holders for %v", i, r.TwoHolders)
		}
		if r.OldReleased < 0 || r.OldReleased > hold+margin {
			t.Errorf("partition run %d: the cut-off master let go %v after the cut, explain's bound %v (+ margin %v)", i, r.OldReleased, hold, margin)
		}
		if took, _ := firstBind(l, r); took > bounds["crash"] {
			t.Errorf("partition run %d: takeover %v, beyond explain's crash bound %v", i, took, bounds["crash"])
		}
	}
	slices.Sort(released)
	report = append(report, fmt.Sprintf("partition: old master released min %v max %v, bound %v", released[0], released[len(released)-1], hold))
	t.Logf("%s %s: %s", backend, cmp.Or(profile, "lab"), strings.Join(report, "; "))
}

// What explain says a store leader change costs holds against a 3-member store whose leader is
// SIGKILLed: no failover, never two holders, and where explain says the TTL does not ride it out,
// the VIP is on no node for at most its drop figure (where it says it does, not at all).
func TestExplainLeaderChangeCost(t *testing.T) { forBackends(t, testExplainLeaderChange) }

func testExplainLeaderChange(t *testing.T, backend string) {
	l := newLab(t, backend, func(o *Options) { o.StoreMembers = 3 })
	steady(t, l)
	out := clientRun(t, l, append([]string{"explain", "-o", "json"}, l.Nodes[0].DaemonArgs()...)...)
	var exs []struct {
		Store string `json:"store"`
		Items []struct {
			Key          string  `json:"key"`
			RidesOut     *bool   `json:"rides_out"`
			DropSeconds  float64 `json:"drop_seconds"`
			BoundSeconds float64 `json:"bound_seconds"`
			Formula      string  `json:"formula"`
		} `json:"items"`
	}
	if err := json.Unmarshal(out, &exs); err != nil || len(exs) != 1 {
		t.Fatalf("explain output: %v\n%s", err, out)
	}
	var rides *bool
	var drop time.Duration
	for _, it := range exs[0].Items {
		if it.Key == "leader-change" {
			rides, drop = it.RidesOut, time.Duration(math.Round(it.DropSeconds*1e9))
			t.Logf("explain: store: %s; leader change: %s", exs[0].Store, it.Formula)
		}
	}
	if rides == nil {
		t.Fatalf("explain printed no leader-change verdict for a 3-member store:\n%s", out)
	}
	r, err := l.RunScenario(context.Background(), StoreLeaderKill)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r.Summary())
	if r.TwoHolders != 0 || r.Spurious != 0 || r.New != r.Old {
		t.Errorf("store leader kill: two holders %v, %d spurious failovers (%s -> %s)", r.TwoHolders, r.Spurious, r.Old, r.New)
	}
	switch {
	case *rides && r.NoHolder != 0:
		t.Errorf("explain says the TTL rides out a leader change; the VIP was on no node for %v", r.NoHolder)
	case !*rides && r.NoHolder > drop:
		t.Errorf("the VIP was on no node for %v, beyond explain's %v", r.NoHolder, drop)
	}
	t.Logf("%s leader kill: no holder %v (explain: rides out %v, drop <= %v)", backend, r.NoHolder, *rides, drop)
}
