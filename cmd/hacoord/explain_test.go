package main

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/internal/etcdtest"
	"github.com/hacoord/hacoord/internal/zktest"
)

func item(t *testing.T, ex Explanation, key string) ExplainItem {
	t.Helper()
	for _, it := range ex.Items {
		if it.Key == key {
			return it
		}
	}
	t.Fatalf("no %s item in %+v", key, ex.Items)
	return ExplainItem{}
}

// common is the takeover path's inputs at the defaults: the 60ms probe, the guard, one device.
func common(in explainInput) explainInput {
	in.probe, in.probes, in.probeEvery = 60*time.Millisecond, 3, 20*time.Millisecond
	in.guard, in.guardEnds, in.lifetime = true, true, true
	return in
}

func TestExplainEtcdArithmetic(t *testing.T) {
	for _, c := range []struct {
		name                 string
		ttl                  time.Duration
		tm                   etcd.Timing
		crash, hold          time.Duration
		leader               time.Duration
		rides                bool
		gone, lifetime, ride string
	}{
		// etcd's defaults (election timeout 1s): README's table.
		{"2s", 2 * time.Second, etcd.Timing{ElectionTimeout: time.Second, MinTTL: 2 * time.Second},
			2360 * time.Millisecond /* TTL + a 50ms reading (headroom) + probe 60ms + slack */, 1800 * time.Millisecond, 2100 * time.Millisecond, false, "up to 2.1s - 1.3s + the promote path (conflict probe 60ms + takeover slack 250ms) = 1.11s", "no kernel lifetime", "--lease-ttl 4s would"},
		{"4s", 4 * time.Second, etcd.Timing{ElectionTimeout: time.Second, MinTTL: 2 * time.Second},
			4810 * time.Millisecond, 3600 * time.Millisecond, 2100 * time.Millisecond, true, "", "= 2s", ""},
		// Issue 14's fast profile: election timeout 500ms, TTL 1s.
		{"1s fast", time.Second, etcd.TimingFromMinTTL(time.Second),
			1360 * time.Millisecond, 900 * time.Millisecond, 2*666666666 + 100*time.Millisecond, false, "", "no kernel lifetime", "--lease-ttl 3s would"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := common(explainInput{backend: backendEtcd, ttl: c.ttl, margin: fencing10(c.ttl), keepalive: c.ttl / 4, etcd: c.tm})
			ex := explainTimeline(in)
			if got := item(t, ex, "crash").Bound; got != c.crash {
				t.Errorf("crash %v, want %v", got, c.crash)
			}
			if got := item(t, ex, "kill").Bound; got != 410*time.Millisecond {
				t.Errorf("kill %v, want 410ms (guard reaction + probe + slack)", got)
			}
			if got := item(t, ex, "stop").Bound; got != 310*time.Millisecond {
				t.Errorf("stop %v, want 310ms (probe + slack)", got)
			}
			h := item(t, ex, "hold-after-loss")
			if h.Bound != c.hold || !strings.Contains(h.Formula, c.lifetime) {
				t.Errorf("hold %v %q, want %v and %q", h.Bound, h.Formula, c.hold, c.lifetime)
			}
			lc := item(t, ex, "leader-change")
			if lc.Bound != c.leader || lc.RidesOut == nil || *lc.RidesOut != c.rides {
				t.Errorf("leader change %v rides %v, want %v %v", lc.Bound, lc.RidesOut, c.leader, c.rides)
			}
			if !strings.Contains(lc.Formula, c.gone) || !strings.Contains(lc.Formula, c.ride) {
				t.Errorf("leader change formula %q lacks %q / %q", lc.Formula, c.gone, c.ride)
			}
			if want := map[bool]time.Duration{true: 0, false: c.leader - (c.ttl - fencing10(c.ttl) - c.ttl/4) + 310*time.Millisecond}[c.rides]; lc.Drop != want {
				t.Errorf("leader change drop %v, want %v", lc.Drop, want)
			}
			if (len(ex.Warnings) > 0) == c.rides {
				t.Errorf("warnings %q with rides out %v", ex.Warnings, c.rides)
			}
		})
	}
	// Without the guard, or with VIPs on two devices, nothing ends a killed daemon's candidacy.
	in := common(explainInput{backend: backendEtcd, ttl: 2 * time.Second, margin: 200 * time.Millisecond, keepalive: 500 * time.Millisecond, etcd: assumedEtcdTiming})
	in.guard = false
	if ex := explainTimeline(in); item(t, ex, "kill").Bound != 2360*time.Millisecond || !strings.Contains(strings.Join(ex.Warnings, "\n"), "--fence-guard=false") {
		t.Errorf("kill without the guard %v (warnings %q), want the crash bound 2.36s and a warning: no lifetime at 2s", item(t, ex, "kill").Bound, ex.Warnings)
	}
	in.guard, in.guardEnds = true, false
	if got := item(t, explainTimeline(in), "kill").Bound; got != 2360*time.Millisecond {
		t.Errorf("kill with two devices %v, want the crash bound 2.36s", got)
	}
	// --conflict off and a fence hook move the takeover path.
	in.guardEnds, in.probe, in.fenceHook = true, 0, 5*time.Second
	if got := item(t, explainTimeline(in), "stop").Bound; got != 5250*time.Millisecond {
		t.Errorf("stop with no probe and a 5s fence hook %v, want 5.25s", got)
	}
	if ex := explainTimeline(common(explainInput{backend: backendEtcd, ttl: time.Second, margin: 100 * time.Millisecond,
		keepalive: 250 * time.Millisecond, etcd: assumedEtcdTiming})); !strings.Contains(strings.Join(ex.Warnings, "\n"), "below the store's minimum TTL 2s") {
		t.Errorf("TTL 1s on a store whose minimum is 2s: warnings %q", ex.Warnings)
	}
}

func fencing10(ttl time.Duration) time.Duration {
	return min(max(ttl/10, 100*time.Millisecond), time.Second)
}

func TestExplainZKArithmetic(t *testing.T) {
	fast := zk.Timing{Tick: 100 * time.Millisecond, MinSession: 200 * time.Millisecond, MaxSession: 2 * time.Second, InitLimit: 10, SyncLimit: 5}
	// Issue 14's fast profile: tick 100ms, session 300ms (margin 100ms).
	ex := explainTimeline(common(explainInput{backend: backendZK, session: 300 * time.Millisecond, zk: fast}))
	if got := item(t, ex, "crash").Bound; got != 710*time.Millisecond {
		t.Errorf("crash %v, want session 300ms + tick 100ms + 310ms", got)
	}
	if got := item(t, ex, "hold-after-loss").Bound; got != 200*time.Millisecond {
		t.Errorf("hold %v, want 300ms - 100ms", got)
	}
	if w := strings.Join(ex.Warnings, "\n"); !strings.Contains(w, "as little as session/2 - margin = 50ms") || !strings.Contains(w, "conflict probe (60ms) outlasts") {
		t.Errorf("a 300ms session: want a warning of its 50ms validity, got %q", ex.Warnings)
	}
	lc := item(t, ex, "leader-change")
	// 5 ticks + 200ms + 2 ticks + pause max(300ms/20, 10ms) = 915ms, against 150ms - 100ms of validity.
	if lc.Bound != 915*time.Millisecond || *lc.RidesOut || lc.Drop != 915*time.Millisecond-50*time.Millisecond+310*time.Millisecond {
		t.Errorf("leader change %v rides %v drop %v, want 915ms, no, 915ms - 50ms + 310ms", lc.Bound, *lc.RidesOut, lc.Drop)
	}
	// The server clamps the session: 100ms asked of [200ms, 2s] is 200ms; 60s is 2s.
	if got := item(t, explainTimeline(common(explainInput{backend: backendZK, session: 100 * time.Millisecond, zk: fast})), "crash").Bound; got != 610*time.Millisecond {
		t.Errorf("crash with a clamped 200ms session %v, want 610ms", got)
	}
	ex = explainTimeline(common(explainInput{backend: backendZK, session: time.Minute, zk: fast}))
	if got := item(t, ex, "hold-after-loss").Bound; got != 1800*time.Millisecond || !strings.Contains(ex.Settings[0], "asked 1m0s") {
		t.Errorf("hold with a session clamped to 2s: %v (%q), want 1.8s", got, ex.Settings)
	}
	// README: over tick 100ms and syncLimit 5 a session rides out a leader election from 2.6s.
	if lc := item(t, ex, "leader-change"); *lc.RidesOut || !strings.Contains(lc.Formula, "--zk-session-timeout 2.6s would") {
		t.Errorf("a 2s session over a 100ms tick: %s", lc.Formula)
	}
	wide := fast
	wide.MaxSession = 10 * time.Second
	if lc := item(t, explainTimeline(common(explainInput{backend: backendZK, session: 2600 * time.Millisecond, zk: wide})), "leader-change"); !*lc.RidesOut {
		t.Errorf("a 2.6s session over a 100ms tick should ride out a leader change: %s", lc.Formula)
	}
	// A standalone server has no leader change to ride out.
	standalone := fast
	standalone.SyncLimit = 0
	if lc := item(t, explainTimeline(common(explainInput{backend: backendZK, session: 2 * time.Second, zk: standalone})), "leader-change"); !lc.NoBound {
		t.Errorf("standalone leader change %+v, want no bound", lc)
	}
}

func TestExplainVRRPArithmetic(t *testing.T) {
	ex := explainTimeline(common(explainInput{backend: backendVRRP, advert: time.Second, priority: 100, version: 3}))
	skew := 255 * time.Second / 256
	if got := item(t, ex, "crash").Bound; got != 3*time.Second+skew+310*time.Millisecond {
		t.Errorf("crash %v, want 3 adverts + skew + 310ms", got)
	}
	if got := item(t, ex, "kill").Bound; got != item(t, ex, "crash").Bound {
		t.Errorf("kill %v, want the crash bound (nothing ends a VRRP candidacy)", got)
	}
	if got := item(t, ex, "stop").Bound; got != skew+310*time.Millisecond {
		t.Errorf("stop %v, want skew + 310ms", got)
	}
	if h := item(t, ex, "hold-after-loss"); !h.NoBound || !strings.Contains(h.Formula, "split brain") || !strings.Contains(h.Formula, "2.7s") {
		t.Errorf("hold %+v: want no bound, split brain, 2.7s for a stopped master", h)
	}
}

func TestKernelLifetime(t *testing.T) {
	// vip/doc.go: TTL 3s (2.7s left) gets 1s, 5s (4.5s) 2s, 10s (9s) 6s; below 2.39s none.
	for left, want := range map[time.Duration]int{2700 * time.Millisecond: 1, 4500 * time.Millisecond: 2, 9 * time.Second: 6,
		2380 * time.Millisecond: 0, 2400 * time.Millisecond: 1, 1800 * time.Millisecond: 0} {
		if got := kernelLifetime(left); got != want {
			t.Errorf("kernelLifetime(%v) = %d, want %d", left, got, want)
		}
	}
}

// explain reads the store's own timing: etcd's minimum TTL (the embedded etcd's 200ms election
// timeout gives 1s), ZooKeeper's tickTime and session bounds.
func TestExplainReadsStoreTiming(t *testing.T) {
	explain := func(t *testing.T, args ...string) Explanation {
		t.Helper()
		code, out, errs := runHacoord(append([]string{"explain", "--interface", "lo", "--vip", "10.0.0.100/24", "--name", "n1", "-o", "json"}, args...)...)
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, errs)
		}
		var exs []Explanation
		if err := json.Unmarshal([]byte(out), &exs); err != nil || len(exs) != 1 {
			t.Fatalf("%v: %s", err, out)
		}
		for i, it := range exs[0].Items {
			exs[0].Items[i].Bound = time.Duration(math.Round(it.BoundSeconds * 1e9))
		}
		return exs[0]
	}
	t.Run("etcd", func(t *testing.T) {
		srv := etcdtest.Start(t)
		ex := explain(t, "--backend", "etcd", "--endpoints", srv.Endpoints()[0], "--lease-ttl", "1s")
		if !strings.Contains(ex.Store, "minimum lease TTL 1s") {
			t.Errorf("store %q: want the minimum TTL read (1s)", ex.Store)
		}
		if lc := item(t, ex, "leader-change"); lc.Bound != 2*666666666+100*time.Millisecond {
			t.Errorf("leader change %v, want 2 x 666ms + 100ms", lc.Bound)
		}
		ex = explain(t, "--backend", "etcd", "--endpoints", srv.Endpoints()[0], "--lease-ttl", "1s", "--store-election-timeout", "200ms")
		if lc := item(t, ex, "leader-change"); lc.Bound != 500*time.Millisecond || !*lc.RidesOut {
			t.Errorf("leader change with a 200ms election timeout %v, rides %v; want 500ms, yes", lc.Bound, *lc.RidesOut)
		}
	})
	t.Run("zk", func(t *testing.T) {
		srv := zktest.Start(t, zktest.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := srv.WaitServing(ctx); err != nil {
			t.Fatal(err)
		}
		ex := explain(t, "--backend", "zk", "--endpoints", srv.Addr(), "--zk-session-timeout", "100ms")
		if !strings.Contains(ex.Store, "tickTime 100ms") || !strings.Contains(ex.Store, "standalone") {
			t.Errorf("store %q: want tickTime 100ms", ex.Store)
		}
		// The server grants at least 2 ticks: 200ms + 1 tick + probe (3 x 5ms for the 100ms
		// asked: conflictInterval) + slack.
		if got := item(t, ex, "crash").Bound; got != 565*time.Millisecond {
			t.Errorf("crash %v, want 565ms (the session clamped to 200ms)", got)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		ex := explain(t, "--backend", "etcd", "--endpoints", "http://127.0.0.1:1", "--timeout", "300ms")
		if !strings.Contains(ex.Store, "assuming etcd's defaults") || item(t, ex, "crash").Bound != 2360*time.Millisecond {
			t.Errorf("store %q crash %v: want the defaults assumed", ex.Store, item(t, ex, "crash").Bound)
		}
	})
	code, _, errs := runHacoord("explain", "--backend", "etcd", "--interface", "lo", "--vip", "10.0.0.100/24", "-o", "yaml")
	if code != exitConfig || !strings.Contains(errs, "--output") {
		t.Errorf("-o yaml: exit %d %q", code, errs)
	}
}

// A file of several instances gets a timeline each, with each instance's backend.
func TestExplainConfigInstances(t *testing.T) {
	code, out, errs := runHacoord("explain", "--config", "../../deploy/hacoord.instances.example.yaml", "--name", "lb1", "--no-store", "-o", "json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var exs []Explanation
	if err := json.Unmarshal([]byte(out), &exs); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ex := range exs {
		got = append(got, ex.Instance+":"+ex.Backend)
	}
	if strings.Join(got, " ") != "ext:etcd int:etcd legacy:vrrp" {
		t.Errorf("instances %v, want ext:etcd int:etcd legacy:vrrp", got)
	}
}
