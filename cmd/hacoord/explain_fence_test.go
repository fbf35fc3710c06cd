package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// A fence hook holds every takeover back by (1 + hooks.fence_retries) x hooks.timeout +
// fence_retries x fence_retry_interval (fenceStep.Prepare: each run killed at its timeout, the
// last one allowed succeeding). explain adds that to crash, kill and stop, gives it its own line
// with the formula, and leaves it out of a leader change's drop (the same term is not fenced again).
func TestExplainCountsFenceRetries(t *testing.T) {
	base := common(explainInput{backend: backendEtcd, ttl: 2 * time.Second, margin: 200 * time.Millisecond,
		keepalive: 500 * time.Millisecond, etcd: assumedEtcdTiming})
	base.probe = 0
	// A TTL that cannot ride out a leader change, so the drop is computed.
	base.etcd.ElectionTimeout = 2 * time.Second
	without := explainTimeline(base)
	in := base
	in.fenceHook, in.fenceRetry = 5*time.Second, retryPolicy{retries: 2, interval: time.Second}
	ex := explainTimeline(in)
	const fence = 3*5*time.Second + 2*time.Second // 17s
	f := item(t, ex, "fence-hook")
	if f.Bound != fence || !strings.Contains(f.Formula, "(1 + hooks.fence_retries 2) x hooks.timeout 5s + hooks.fence_retries 2 x hooks.fence_retry_interval 1s") {
		t.Errorf("fence-hook item %v %q, want 17s with the formula", f.Bound, f.Formula)
	}
	for _, k := range []string{"crash", "kill", "stop"} {
		if got, want := item(t, ex, k).Bound, item(t, without, k).Bound+fence; got != want {
			t.Errorf("%s with the fence hook: %v, want %v (%v without + 17s)", k, got, want, item(t, without, k).Bound)
		}
	}
	if got := item(t, ex, "stop").Bound; got != fence+takeoverSlack {
		t.Errorf("stop %v, want 17.25s", got)
	}
	lc, lc0 := item(t, ex, "leader-change"), item(t, without, "leader-change")
	if lc0.Drop == 0 || lc.Drop != lc0.Drop {
		t.Errorf("leader change drop %v with the hook, %v without: want the same, non-zero (no hook on a same-term resume)", lc.Drop, lc0.Drop)
	}
	if _, has := func() (ExplainItem, bool) {
		for _, it := range without.Items {
			if it.Key == "fence-hook" {
				return it, true
			}
		}
		return ExplainItem{}, false
	}(); has {
		t.Error("a fence-hook item without a fence hook")
	}
}

// From the flags: --hook-timeout, --fence-retries and --fence-retry-interval reach the bound.
func TestExplainFenceRetriesFromFlags(t *testing.T) {
	code, out, errs := runHacoord("explain", "--backend", "etcd", "--endpoints", "http://127.0.0.1:2379", "--name", "n1",
		"--interface", "lo", "--vip", "10.9.0.100/24", "--fence-hook", "/bin/true", "--hook-timeout", "2s",
		"--fence-retries", "1", "--fence-retry-interval", "500ms", "--no-store", "-o", "json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var exs []Explanation
	if err := json.Unmarshal([]byte(out), &exs); err != nil || len(exs) != 1 {
		t.Fatalf("%v: %s", err, out)
	}
	if got := item(t, exs[0], "fence-hook").BoundSeconds; got != 4.5 {
		t.Errorf("fence-hook bound %v, want (1+1) x 2s + 1 x 500ms = 4.5s", got)
	}
	if got := item(t, exs[0], "stop").BoundSeconds; got < (4500*time.Millisecond + takeoverSlack).Seconds() {
		t.Errorf("stop bound %v, want at least 4.5s + the takeover slack", got)
	}
}
