package main

import (
	"strings"
	"testing"
	"time"

	"github.com/hacoord/hacoord/internal/lab"
)

func results(outages ...time.Duration) []lab.Result {
	var rs []lab.Result
	for _, o := range outages {
		rs = append(rs, lab.Result{Outage: o})
	}
	return rs
}

// The ratio table puts hacoord's median beside keepalived's of the same scenario at each advert
// interval, 1s first.
func TestRatioTable(t *testing.T) {
	ms := time.Millisecond
	k1 := setup{backend: "vrrp", impl: lab.ImplKeepalived, advert: time.Second}
	k100 := setup{backend: "vrrp", impl: lab.ImplKeepalived, advert: 100 * ms}
	zk := setup{backend: "zk", impl: lab.ImplHacoord, profile: lab.ProfileFast}
	rows := []row{
		{setup: k1, scenario: lab.Crash, results: results(3000*ms, 3100*ms, 2900*ms)},
		{setup: k100, scenario: lab.Crash, results: results(300*ms, 400*ms)},
		{setup: zk, scenario: lab.Crash, results: results(330*ms, 310*ms, 320*ms)},
		{setup: zk, scenario: lab.Resign, results: results(30 * ms)}, // keepalived has none: left out
		{setup: zk, scenario: lab.Term, failed: 3},                   // no result: left out
	}
	for i := range rows[0].results { // a killed keepalived's VIP stays in the kernel
		rows[0].results[i].TwoHolders, rows[0].results[i].OldReleased = 8*time.Second, -1
	}
	var b strings.Builder
	ratioTable(&b, rows)
	out := b.String()
	lines := strings.Split(out, "\n")
	var head, crash string
	for _, l := range lines {
		if strings.HasPrefix(l, "setup") {
			head = l
		}
		if strings.HasPrefix(l, "hacoord zk fast") {
			if crash != "" {
				t.Fatalf("more than one hacoord row:\n%s", out)
			}
			crash = l
		}
	}
	if i, j := strings.Index(head, "keepalived 1s"), strings.Index(head, "keepalived 100ms"); i < 0 || j < i {
		t.Fatalf("header %q: want keepalived 1s, then 100ms", head)
	}
	if f := strings.Fields(crash); len(f) != 12 || f[3] != "crash" || f[4] != "320" || f[5] != "0" || f[6] != "3000" || f[7] != "8000+" || f[8] != "0.11" || f[9] != "350" || f[11] != "0.91" {
		t.Fatalf("crash row %q: want hacoord 320 (two holders 0), keepalived 1s 3000 (8000+, 0.11), 100ms 350 (0.91)", crash)
	}
}
