package main

import (
	"strings"
	"testing"
)

// check-config's summary gives every instance's effective priority and preemption, whatever its
// backend: the backend-neutral keys, VRRP's own keys as the fallback, keepalived's defaults.
func TestCheckConfigPrintsPriorityForEveryBackend(t *testing.T) {
	for _, tc := range []struct {
		body string
		want []string
	}{{
		body: multiHead + `instances:
  - {name: e, group: e, vips: [10.0.0.100/24], priority: 200, nopreempt: true}
  - {name: d, group: d, vips: [10.0.2.100/24]}
  - {name: v, backend: vrrp, vips: [10.0.3.100/24], vrrp: {vrid: 7, priority: 150, nopreempt: true}}
  - {name: w, backend: vrrp, vips: [10.0.4.100/24], vrrp: {vrid: 8}, preempt_delay: 5s}
`,
		want: []string{
			"# instance e: etcd on lo, group e, priority 200, nopreempt\n",
			"# instance d: etcd on lo, group d, priority 100, preempt\n",
			"# instance v: vrrp on lo, vrid 7, priority 150, nopreempt\n",
			"# instance w: vrrp on lo, vrid 8, priority 100, preempt after 5s\n",
		},
	}, {
		body: `backend: zk
name: n1
endpoints: [127.0.0.1:2181]
interface: lo
instances:
  - {name: z, vips: [10.0.1.100/24], priority: 90, preempt_delay: 30s}
  - {name: y, vips: [10.0.5.100/24], vrrp: {priority: 120}}
`,
		want: []string{
			"# instance z: zk on lo, group z, priority 90, preempt after 30s\n",
			"# instance y: zk on lo, group y, priority 120, preempt\n",
		},
	}} {
		code, out, stderr := checkFile(t, tc.body)
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		for _, want := range tc.want {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	}
}
