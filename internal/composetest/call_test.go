package composetest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hacoord/hacoord/internal/netnstest"
)

func TestCallRoundTrip(t *testing.T) {
	start := time.Date(2026, 12, 1, 20, 1, 2, 345_000_000, time.UTC)
	for _, c := range []Call{
		{Start: start, Duration: 2 * time.Millisecond, Reply: "web1 via node2"},
		{Start: start, Duration: 500 * time.Millisecond, Err: "dial tcp 172.31.77.100:8080: i/o timeout"},
	} {
		line := c.String()
		got, err := ParseCall(line)
		if err != nil {
			t.Fatalf("ParseCall(%q): %v", line, err)
		}
		if got != c {
			t.Errorf("ParseCall(%q) = %+v, want %+v", line, got, c)
		}
	}
	c, _ := ParseCall("2026-12-01T20:01:02.345Z ok 2ms web1 via node2")
	if c.Node() != "node2" || c.Backend() != "web1" || !c.OK() {
		t.Errorf("node %q backend %q ok %v", c.Node(), c.Backend(), c.OK())
	}
	for _, bad := range []string{"", "READY [::]:8080", "2026-12-01T20:01:02.345Z maybe 2ms x", "yesterday ok 2ms web1 via node1"} {
		if _, err := ParseCall(bad); err == nil {
			t.Errorf("ParseCall(%q) accepted", bad)
		}
	}
}

func TestParseCallsSortsAndSkips(t *testing.T) {
	in := strings.Join([]string{
		"2026-12-01T20:00:00.300Z ok 1ms web2 via node1",
		"compose node node1: proxy on [::]:8080",
		"2026-12-01T20:00:00.100Z error 500ms dial tcp: i/o timeout",
		"2026-12-01T20:00:00.200Z ok 1ms web1 via node1",
	}, "\n")
	calls, err := ParseCalls(strings.NewReader(in))
	if err != nil || len(calls) != 3 {
		t.Fatalf("ParseCalls: %d calls, %v", len(calls), err)
	}
	for i := 1; i < len(calls); i++ {
		if calls[i].Start.Before(calls[i-1].Start) {
			t.Errorf("not sorted: %v", calls)
		}
	}
}

// calls builds calls every 100ms from t0: "n1" answered by node1, "n2" by node2, "x" failed.
func calls(t0 time.Time, pattern ...string) []Call {
	var out []Call
	for i, p := range pattern {
		c := Call{Start: t0.Add(time.Duration(i) * 100 * time.Millisecond), Duration: 2 * time.Millisecond}
		switch p {
		case "x":
			c.Duration, c.Err = 500*time.Millisecond, "dial tcp 10.0.0.100:8080: i/o timeout"
		default:
			c.Reply = "web1 via node" + p[1:]
		}
		out = append(out, c)
	}
	return out
}

func TestAnalyze(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
	// node1 answers until 200ms, the fault is at 250ms, node2 answers from 900ms.
	cs := calls(t0, "n1", "n1", "n1", "x", "x", "x", "x", "x", "x", "n2", "n2", "x")
	f, err := Analyze(cs, "docker kill node1", t0.Add(250*time.Millisecond), "node1")
	if err != nil {
		t.Fatal(err)
	}
	if f.New != "node2" || f.LastOld.Start != cs[2].Start || f.First.Start != cs[9].Start {
		t.Fatalf("new %s, last old %v, first %v", f.New, f.LastOld, f.First)
	}
	// 902ms - 202ms; the failed calls are those that ended in between (the one that started at
	// 500ms ended at 1000ms, after node2's first answer).
	if f.Outage != 700*time.Millisecond {
		t.Errorf("outage %v, want 700ms", f.Outage)
	}
	if len(f.Failed) != 2 {
		t.Errorf("%d failed calls, want 2 (ended between the answers)", len(f.Failed))
	}
	if len(f.After) != 2 || f.FailuresAfter() != 1 {
		t.Errorf("after: %d calls, %d failed; want 2, 1", len(f.After), f.FailuresAfter())
	}
	tl := f.Timeline()
	for _, want := range []string{"docker kill node1", "first answer: web1 via node2", "node1 -> node2: outage 700ms", "then 1 more failed calls out of 2"} {
		if !strings.Contains(tl, want) {
			t.Errorf("timeline lacks %q:\n%s", want, tl)
		}
	}

	if _, err := Analyze(calls(t0, "n1", "x", "x", "n1"), "kill", t0.Add(50*time.Millisecond), "node1"); !errors.Is(err, ErrNoFailover) {
		t.Errorf("the old master answering again is no failover: err %v", err)
	}
}

func TestSteady(t *testing.T) {
	t0 := time.Now()
	for _, tc := range []struct {
		pattern []string
		want    string
	}{
		{[]string{"n1", "n1", "n1"}, "node1"},
		{[]string{"n1", "n1"}, ""},
		{[]string{"n1", "x", "n1"}, ""},
		{[]string{"n1", "n2", "n2"}, ""},
	} {
		if got, _ := steady(calls(t0, tc.pattern...)); got != tc.want {
			t.Errorf("steady(%v) = %q, want %q", tc.pattern, got, tc.want)
		}
	}
}

func TestProjectOwner(t *testing.T) {
	for name, want := range map[string]int{"hacoordtest1234x00ff": 1234, "hacoord-lab": 0, "hacoordtestx1": 0, "hacoordtest12": 0} {
		pid, ok := projectOwner(name)
		if pid != want || ok != (want != 0) {
			t.Errorf("projectOwner(%q) = %d, %v; want %d", name, pid, ok, want)
		}
	}
	if pid, _ := projectOwner(TestProject()); pid <= 0 || !netnstest.Alive(pid) {
		t.Errorf("TestProject names pid %d, not this live process", pid)
	}
}
