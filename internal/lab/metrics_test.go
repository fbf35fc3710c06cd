package lab

import (
	"context"
	"net/http"
	"testing"
	"time"
)

const labSeries = `{group="default",instance="default"}`

// waitMetrics scrapes n's /metrics (from inside its namespace) until ok accepts the series, for
// up to 10s, and returns the last scrape.
func waitMetrics(t *testing.T, n *Node, what string, ok func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last map[string]float64
	var err error
	for {
		if last, err = n.Metrics(); err == nil && ok(last) {
			return last
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %s: not within 10s (last error %v); last scrape: %v", n.Name, what, err, last)
		case <-tick.C:
		}
	}
}

func TestMetricsDuringFailover(t *testing.T) { forBackends(t, testMetricsDuringFailover) }

// testMetricsDuringFailover reads every daemon's /metrics inside its namespace around a failover
// (the master partitioned from the store: it stays alive and lets go): the old master's
// hacoord_master goes from 1 to 0, the new master's from 0 to 1 with
// its takeover histogram counting the takeover; /healthz answers 200 on a healthy node.
func testMetricsDuringFailover(t *testing.T, backend string) {
	l := newLab(t, backend)
	old := steady(t, l)
	for _, n := range l.Nodes {
		want := 0.0
		if n == old {
			want = 1
		}
		m := waitMetrics(t, n, "hacoord_master before the fault", func(m map[string]float64) bool {
			v, ok := m["hacoord_master"+labSeries]
			return ok && v == want
		})
		if n != old && m["hacoord_takeover_seconds_count"+labSeries] != 0 {
			t.Errorf("%s: takeovers counted before it was ever master: %v", n.Name, m["hacoord_takeover_seconds_count"+labSeries])
		}
		if m[`hacoord_role{group="default",instance="default",role="backup"}`] != 1-want {
			t.Errorf("%s: hacoord_role backup = %v, want %v", n.Name, m[`hacoord_role{group="default",instance="default",role="backup"}`], 1-want)
		}
		if code, body, err := n.Get("/healthz"); err != nil || code != http.StatusOK {
			t.Errorf("%s: /healthz = %d %q %v, want 200", n.Name, code, body, err)
		}
	}
	waitMetrics(t, old, "store round trips observed", func(m map[string]float64) bool {
		return m["hacoord_store_rtt_seconds_count"+labSeries] > 0
	})

	r := runScenario(t, l, Partition)
	nn := l.Node(r.New)
	got := waitMetrics(t, nn, "hacoord_master 1 and a takeover counted", func(m map[string]float64) bool {
		return m["hacoord_master"+labSeries] == 1 && m["hacoord_takeover_seconds_count"+labSeries] == 1
	})
	t.Logf("%s: takeover %.1fms from the backend's 'you are master' to the VIP bound and announced (lab: %v from the fault to the VIP seen)",
		nn.Name, 1000*got["hacoord_takeover_seconds_sum"+labSeries], r.Takeover)
	if got[`hacoord_transitions_total{group="default",instance="default",to="master"}`] != 1 {
		t.Errorf("%s: transitions to master %v, want 1", nn.Name, got[`hacoord_transitions_total{group="default",instance="default",to="master"}`])
	}
	// Cut off, it lets go at its deadline (a self-fence) or, when the backend reports the loss
	// first (ZooKeeper's disconnect), by stepping down to fault: either way it no longer holds.
	om := waitMetrics(t, old, "hacoord_master 0, not master", func(m map[string]float64) bool {
		return m["hacoord_master"+labSeries] == 0 && m[`hacoord_role{group="default",instance="default",role="master"}`] == 0
	})
	t.Logf("%s (old master): self-fences %v, roles: backup %v fault %v", old.Name, om["hacoord_self_fence_total"+labSeries],
		om[`hacoord_role{group="default",instance="default",role="backup"}`], om[`hacoord_role{group="default",instance="default",role="fault"}`])
	if code, body, err := nn.Get("/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("%s (new master): /healthz = %d %q %v, want 200", nn.Name, code, body, err)
	}
}
