package vrrp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hacoord/hacoord/election"
)

// Maintenance takes a master out at once (priority-0 advert, Fault named "maintenance"); health
// coming back does not bring it back while maintenance is on; off, it is a backup again and, with
// the higher priority, master after Master_Down_Interval. Health and maintenance are independent:
// maintenance off with a failing check stays in Fault.
func TestMachineMaintenance(t *testing.T) {
	h, mdi := newMaster(t)

	h.step(mdi, SetMaintenance{On: true})
	h.wantSent(0)
	h.wantState(Fault)
	if tr, ok := h.out[len(h.out)-1].(Transition); !ok || tr.Reason != "maintenance" {
		t.Fatalf("outputs %v, want a transition to Fault for maintenance", h.out)
	}
	if h.m.Priority() != 0 {
		t.Errorf("priority %d in maintenance, want 0", h.m.Priority())
	}
	h.step(mdi, SetEligible{OK: false})
	h.step(mdi, SetEligible{OK: true}) // the check passes again: still in maintenance
	h.wantState(Fault)
	for i := 1; i <= 5; i++ { // a lower-priority master is not preempted, no master down timer runs
		at := mdi + time.Duration(i)*time.Second
		h.step(at, h.advert(addrB, 100))
		h.step(at, Tick{})
		h.wantState(Fault)
	}
	at := mdi + 6*time.Second
	h.step(at, SetMaintenance{On: false})
	h.wantState(Backup)
	h.step(at+h.m.MasterDownInterval(), Tick{})
	h.wantState(Master)

	// A failing check, then maintenance on and off: still Fault for the check.
	h.step(at+10*time.Second, SetEligible{OK: false})
	h.wantState(Fault)
	h.step(at+10*time.Second, SetMaintenance{On: true})
	h.step(at+10*time.Second, SetMaintenance{On: false})
	h.wantState(Fault)
	h.step(at+10*time.Second, SetEligible{OK: true})
	h.wantState(Backup)
}

// Resign over VRRP: the master steps down, the backup takes over within its Skew_Time, and the
// resigned router (the higher priority, preempt on) does not take it straight back; once the
// other stops, it is master again. A backup cannot resign; Transfer is not supported, and says why.
func TestElectorResign(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &fakeNet{}
		a, b := startPair(t, n, 150, 100)
		if a.last().Role != election.Master {
			t.Fatalf("A %+v", a.last())
		}
		if err := b.e.Resign(context.Background()); !errors.Is(err, election.ErrNotMaster) {
			t.Errorf("Resign on a backup: %v, want ErrNotMaster", err)
		}
		err := a.e.Transfer(context.Background(), "node-b", time.Second)
		if !errors.Is(err, election.ErrUnsupported) || !strings.Contains(err.Error(), "priority") {
			t.Errorf("Transfer: %v, want ErrUnsupported saying why", err)
		}
		start := time.Now()
		if err := a.e.Resign(context.Background()); err != nil {
			t.Fatalf("Resign: %v", err)
		}
		if a.last().Role != election.Backup {
			t.Errorf("A after Resign returned: %+v", a.last())
		}
		time.Sleep(70 * time.Millisecond) // B's Skew_Time at priority 100: 61ms
		synctest.Wait()
		took, ok := b.firstSince(start, func(s election.State) bool { return s.Role == election.Master })
		if !ok {
			t.Fatalf("B did not take over within its skew time: %+v", b.last())
		}
		t.Logf("B master %v after the resign", took.Sub(start))
		// Many Master_Down_Intervals later A (150, preempt) has not taken it back.
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if a.last().Role != election.Backup || b.last().Role != election.Master {
			t.Fatalf("10s after the resign: A %+v, B %+v", a.last(), b.last())
		}
		b.stop(t)
		time.Sleep(time.Second)
		synctest.Wait()
		if a.last().Role != election.Master {
			t.Fatalf("B stopped: A %+v, want master", a.last())
		}
	})
}

// A router alone that resigns is master again after Master_Down_Interval: nobody else took over.
func TestElectorResignAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &fakeNet{}
		cfg := LocalConfig()
		cfg.Interface, cfg.VRID = "eth0", 9
		a := startNode(t, n, addrA, cfg)
		defer a.stop(t)
		time.Sleep(time.Second)
		synctest.Wait()
		if err := a.e.Resign(context.Background()); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		time.Sleep(time.Second)
		synctest.Wait()
		back, ok := a.firstSince(start, func(s election.State) bool { return s.Role == election.Master })
		if !ok || a.last().Term != 2 {
			t.Fatalf("alone after resigning: %+v, want master again with term 2", a.last())
		}
		t.Logf("master again %v after resigning alone", back.Sub(start))
	})
}

// Maintenance through the Elector, set before Run: the router never becomes master, not even the
// address owner (priority 255), which is master from its start-up otherwise; off, it is.
func TestElectorMaintenanceBeforeRun(t *testing.T) {
	for _, prio := range []int{100, PriorityOwner} {
		t.Run(fmt.Sprint(prio), func(t *testing.T) { testMaintenanceBeforeRun(t, prio) })
	}
}

func testMaintenanceBeforeRun(t *testing.T, prio int) {
	synctest.Test(t, func(t *testing.T) {
		n := &fakeNet{}
		cfg := LocalConfig()
		cfg.Interface, cfg.VRID, cfg.Priority = "eth0", 9, prio
		wire := n.conn(addrC)
		log := &eventLog{}
		sniffed := make(chan struct{})
		go func() { defer close(sniffed); sniff(wire, log) }()
		defer func() { wire.Close(); <-sniffed }()
		e, err := New(cfg, nil, WithConn(n.conn(addrA)))
		if err != nil {
			t.Fatal(err)
		}
		e.SetMaintenance(true)
		nd := runWith(t, e)
		defer nd.stop(t)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if evs := log.get(); len(evs) != 0 { // a master that leaves sends one
			t.Fatalf("in maintenance from the start, the router was master for a moment: %v on the wire", evs)
		}
		for _, s := range nd.all() {
			if s.Role == election.Master {
				t.Fatalf("in maintenance from the start, reported %+v", s)
			}
		}
		if nd.last().Role != election.Fault {
			t.Fatalf("in maintenance: %+v, want Fault", nd.last())
		}
		e.SetMaintenance(false)
		time.Sleep(time.Second)
		synctest.Wait()
		if nd.last().Role != election.Master {
			t.Fatalf("maintenance off, alone: %+v, want master", nd.last())
		}
	})
}

func (nd *node) all() []election.State {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return append([]election.State(nil), nd.states...)
}
