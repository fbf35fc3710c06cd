package main

import (
	"strings"
	"testing"
	"time"

	"github.com/hacoord/hacoord/backend/zk"
)

// The conflict probe's interval scales with a short lease or session (ttl/60 within [5ms, 20ms]),
// and explain's timeline uses the probe the daemon runs.
func TestConflictIntervalScalesWithTTL(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		every      time.Duration
	}{
		{"zk 300ms", "backend: zk\nendpoints: [127.0.0.1:2181]\nname: n1\ninterface: eth0\nvips: [10.0.0.100/24]\nzookeeper:\n  session_timeout: 300ms\n", 5 * time.Millisecond},
		{"zk 120ms", "backend: zk\nendpoints: [127.0.0.1:2181]\nname: n1\ninterface: eth0\nvips: [10.0.0.100/24]\nzookeeper:\n  session_timeout: 120ms\n", 5 * time.Millisecond},
		{"zk default 4s", "backend: zk\nendpoints: [127.0.0.1:2181]\nname: n1\ninterface: eth0\nvips: [10.0.0.100/24]\n", 20 * time.Millisecond},
		{"zk 600ms", "backend: zk\nendpoints: [127.0.0.1:2181]\nname: n1\ninterface: eth0\nvips: [10.0.0.100/24]\nzookeeper:\n  session_timeout: 600ms\n", 10 * time.Millisecond},
		{"etcd 1s", reloadBase + "lease_ttl: 1s\n", 1000 * time.Millisecond / 60},
		{"etcd 2s", reloadBase + "lease_ttl: 2s\n", 20 * time.Millisecond},
	} {
		p := reloadPlanOf(t, tc.body)
		c := p.instances[0].vipSets[0].cfg.Conflict
		if c.Interval != tc.every || c.Probes != 3 {
			t.Errorf("%s: conflict probe %d x %v, want 3 x %v", tc.name, c.Probes, c.Interval, tc.every)
		}
		in := explainInputs(p)[0]
		if in.probe != 3*tc.every || in.probeEvery != tc.every {
			t.Errorf("%s: explain's probe %v (every %v), want %v", tc.name, in.probe, in.probeEvery, 3*tc.every)
		}
	}
}

// On a standalone server a 300ms session keeps session - renewal - margin = 125ms of validity in
// contact: explain says so, and does not warn of a thin validity or of the probe outlasting it.
func TestExplainZKStandaloneValidity(t *testing.T) {
	standalone := zk.Timing{Tick: 100 * time.Millisecond, MinSession: 200 * time.Millisecond, MaxSession: 2 * time.Second}
	in := common(explainInput{backend: backendZK, session: 300 * time.Millisecond, zk: standalone})
	in.probe, in.probeEvery = 30*time.Millisecond, 10*time.Millisecond
	ex := explainTimeline(in)
	if f := item(t, ex, "hold-after-loss").Formula; !strings.Contains(f, "session - renewal - margin (standalone) = 125ms") {
		t.Errorf("hold-after-loss formula %q, want the standalone validity 125ms", f)
	}
	if len(ex.Warnings) != 0 {
		t.Errorf("warnings %q, want none", ex.Warnings)
	}
}
