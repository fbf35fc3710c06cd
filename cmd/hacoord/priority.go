package main

import (
	"time"

	"github.com/hacoord/hacoord/election"
)

// priorityOf returns an instance's priority, nopreempt and preempt_delay: the backend-neutral keys
// (priority, nopreempt, preempt_delay; --priority, --nopreempt, --preempt-delay) where set, else
// VRRP's own vrrp.priority, vrrp.nopreempt and vrrp.preempt_delay, which keep working for every
// backend (vrrp.priority defaults to 100).
func priorityOf(k instanceKeys) (prio int, noPreempt bool, delay time.Duration) {
	prio, noPreempt, delay = k.Priority, k.NoPreempt || k.VRRP.NoPreempt, k.PreemptDelay
	if prio == 0 {
		prio = k.VRRP.Priority
	}
	if prio == 0 {
		prio = election.DefaultPriority
	}
	if delay == 0 {
		delay = k.VRRP.PreemptDelay
	}
	return prio, noPreempt, delay
}
