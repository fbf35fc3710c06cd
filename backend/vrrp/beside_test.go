package vrrp

import (
	"testing"
	"time"
)

// besides returns the MasterBesides of the last step.
func (h *harness) besides() []MasterBeside {
	var b []MasterBeside
	for _, o := range h.out {
		if mb, ok := o.(MasterBeside); ok {
			b = append(b, mb)
		}
	}
	return b
}

// TestMasterBeside: a master that hears another router's adverts for its VRID and stays master
// reports it, with the source: a lower priority, or a mismatched router (which never steps
// down); not in the advert interval after becoming master, not for a higher priority (it steps
// down), a priority-0 advert or its own adverts, and never as a backup.
func TestMasterBeside(t *testing.T) {
	cfg := testConfig(3)
	h := newHarness(t, cfg, addrB)
	h.step(0, Startup{})
	h.step(time.Second, h.advert(addrA, 50))
	if b := h.besides(); len(b) != 0 {
		t.Fatalf("a backup reported %v", b)
	}
	up := h.m.MasterDownInterval()
	h.step(up, Tick{})
	h.wantState(Master)
	h.step(up+cfg.AdvertInt/2, h.advert(addrA, 50))
	if b := h.besides(); len(b) != 0 {
		t.Fatalf("within an advert interval of becoming master: reported %v", b)
	}
	at := up + 2*cfg.AdvertInt
	h.step(at, h.advert(addrA, 50))
	if b := h.besides(); len(b) != 1 || b[0].Source != addrA || b[0].Priority != 50 || b[0].Mismatch != "" {
		t.Fatalf("lower-priority master: reported %v, want one from %s priority 50", b, addrA)
	}
	h.wantState(Master)
	h.step(at, h.advert(addrC, 100, func(p *Packet) { p.Version = 2; p.AdvertInt = 1 }))
	if b := h.besides(); len(b) != 1 || b[0].Source != addrC || b[0].Mismatch != MismatchVersion {
		t.Fatalf("mismatched router: reported %v, want one from %s (version)", b, addrC)
	}
	h.step(at, h.advert(addrA, 0))
	if b := h.besides(); len(b) != 0 {
		t.Fatalf("priority 0: reported %v", b)
	}
	h.step(at, h.advert(addrB, 100))
	if b := h.besides(); len(b) != 0 {
		t.Fatalf("own advert: reported %v", b)
	}
	h.step(at, h.advert(addrA, 200))
	if b := h.besides(); len(b) != 0 {
		t.Fatalf("higher priority: reported %v (it wins)", b)
	}
	h.wantState(Backup)
}
