package main

import (
	"testing"
	"time"
)

// The backend-neutral keys win; VRRP's own keys apply where they are not set; the default is 100.
func TestPriorityOf(t *testing.T) {
	for _, tc := range []struct {
		name  string
		k     instanceKeys
		prio  int
		nopre bool
		delay time.Duration
	}{
		{"defaults", defaultInstance(), 100, false, 0},
		{"vrrp keys", func() instanceKeys {
			k := defaultInstance()
			k.VRRP.Priority, k.VRRP.NoPreempt, k.VRRP.PreemptDelay = 150, true, time.Second
			return k
		}(), 150, true, time.Second},
		{"neutral keys win", func() instanceKeys {
			k := defaultInstance()
			k.VRRP.Priority, k.VRRP.PreemptDelay = 150, time.Second
			k.Priority, k.PreemptDelay = 200, 3*time.Second
			return k
		}(), 200, false, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, n, d := priorityOf(tc.k)
			if p != tc.prio || n != tc.nopre || d != tc.delay {
				t.Fatalf("priorityOf = %d, %v, %v; want %d, %v, %v", p, n, d, tc.prio, tc.nopre, tc.delay)
			}
		})
	}
}

// --priority reaches the etcd backend's validation, which names the flag.
func TestPriorityFlagForEtcd(t *testing.T) {
	code, _, stderr := runCLI(t, "check-config", "--backend", "etcd", "--endpoints", "http://127.0.0.1:2379",
		"--name", "n1", "--interface", "lo", "--vip", "10.0.0.100/24", "--priority", "300")
	wantAll(t, code, stderr, "--priority: priority 300 must be 1-254")
}
