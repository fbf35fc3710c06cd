package vrrp

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/hacoord/hacoord/election"
)

// TestKeepalivedResign: hacoord (200) is master, keepalived (100) its backup. Resign hands over
// within keepalived's Skew_Time (the priority-0 advert goes after our demote), and hacoord, though
// of higher priority with preemption, does not take it back; when keepalived stops (priority 0 on
// SIGTERM), hacoord is master again after its own Skew_Time.
func TestKeepalivedResign(t *testing.T) {
	p := profileV3
	h, ka := p.hacoordOverKeepalived(t, 200)

	resigned := time.Now()
	if err := h.e.Resign(context.Background()); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	d := ka.waitMasterSince(true, resigned, p.handover(100))
	t.Logf("keepalived master %s after hacoord resigned (skew %s)", d, p.skew(100))
	h.waitFor(t, p.follow(), "hacoord follows keepalived", followsMaster(p.addr(1)))
	h.stayRole(t, election.Backup, 3*p.masterDown(200)) // no preemption back
	ka.stay(true, 0)

	stopped := time.Now()
	ka.stop(syscall.SIGTERM)
	d = h.waitSince(t, stopped, p.handover(200), "hacoord master after keepalived's priority 0", isRole(election.Master))
	t.Logf("hacoord master again %s after keepalived stopped (skew %s)", d, p.skew(200))
}

// TestKeepalivedMaintenance: hacoord (200), master, goes into maintenance: keepalived (100) takes
// over within its Skew_Time, hacoord stays in Fault however long; out of maintenance it preempts
// keepalived again (Master_Down_Interval after it rejoins), and keepalived steps down.
func TestKeepalivedMaintenance(t *testing.T) {
	p := profileV3
	h, ka := p.hacoordOverKeepalived(t, 200)

	on := time.Now()
	h.e.SetMaintenance(true)
	d := ka.waitMasterSince(true, on, p.handover(100))
	t.Logf("keepalived master %s after hacoord went into maintenance (skew %s)", d, p.skew(100))
	h.waitFor(t, p.follow(), "hacoord in Fault", isRole(election.Fault))
	h.stayRole(t, election.Fault, 3*p.masterDown(200))
	h.e.SetEligible(true) // its checks pass: still in maintenance
	h.stayRole(t, election.Fault, p.masterDown(200))

	off := time.Now()
	h.e.SetMaintenance(false)
	d = h.waitSince(t, off, p.takeover(200), "hacoord preempts after maintenance", isRole(election.Master))
	ka.waitMasterSince(false, off.Add(d), slack)
	t.Logf("hacoord master %s after maintenance off (Master_Down_Interval %s)", d, p.masterDown(200))
}
