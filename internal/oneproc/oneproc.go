// Package oneproc runs a process of hacoord's on one P (GOMAXPROCS=1): the daemon and its fence
// guard.
//
// Why: an idle master does a few small things a second (a keepalive or a ZooKeeper round trip, its
// answer, a line to the guard). With more than one P the runtime hands each of them between
// threads: the goroutine that is readied wakes an idle thread for the idle P, which spins, finds
// little and sleeps again. On one P the same work is a run-queue push. In the lab's idle ZooKeeper
// master this cut the daemon's context switches from 52 to 36 a second and its CPU by 7-18 % (two
// sittings; issue 14: an idle master at most 0.2 % of a core).
//
// What it costs: nothing the daemon does needs a second core (store clients, netlink, ARP, health
// checks: all waiting on I/O), and a blocking system call does not hold the P (the runtime hands it
// on). A goroutine that computes for long (a large Prometheus scrape, a configuration of many
// instances) delays the others, the self-fencing deadline's timer among them, only until the
// runtime preempts it, about every 10 ms: well inside the smallest fencing margin (100 ms), and the
// fence guard is a process of its own. TestTimerFiresOnTimeBesideABusyGoroutine holds that.
//
// An operator's GOMAXPROCS in the environment wins.
package oneproc

import (
	"os"
	"runtime"
)

// Set sets GOMAXPROCS to 1 unless the environment sets GOMAXPROCS, and reports whether it did.
func Set() bool {
	if os.Getenv("GOMAXPROCS") != "" {
		return false
	}
	runtime.GOMAXPROCS(1)
	return true
}
