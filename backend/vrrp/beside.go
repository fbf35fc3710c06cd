package vrrp

import (
	"fmt"
	"net/netip"
	"time"
)

// MasterBeside reports an advert for this VRID from another router while this one is master and
// stays master: a router with a lower priority (or an equal one and a lower address) that still
// believes it is master, or a router whose adverts do not match (Mismatch), which drops this
// router's adverts as this one drops its own, so both stay master. Either way two routers may hold
// the VIPs (split brain). Step emits one per such advert, except within one advert interval of
// becoming master, when the old master's last advert may still be on its way (a preemption).
type MasterBeside struct {
	Source   netip.Addr
	Priority int
	// Mismatch is why the advert does not match, "" when it does (a lower priority).
	Mismatch MismatchReason
}

func (MasterBeside) output() {}

// String renders b for logs and the status file.
func (b MasterBeside) String() string {
	if b.Mismatch != "" {
		return fmt.Sprintf("vrrp master %s (priority %d, mismatched %s)", b.Source, b.Priority, b.Mismatch)
	}
	return fmt.Sprintf("vrrp master %s (priority %d)", b.Source, b.Priority)
}

// beside appends a MasterBeside for the advert v from src when this router is master and stays
// master (see MasterBeside).
func (m *Machine) beside(now time.Time, v verdict, src netip.Addr, out []Output) []Output {
	if m.state != Master || v.own || now.Sub(m.masterSince) < m.cfg.AdvertInt {
		return out
	}
	p := v.p
	switch {
	case v.drop != "" && v.mismatch == "": // noise, or not for our VRID
		return out
	case p.Priority == PriorityStop: // stepping down
		return out
	case v.drop == "" && (p.Priority > m.prio || (p.Priority == m.prio && src.Compare(m.self) > 0)):
		return out // it wins: this router becomes backup
	}
	return append(out, MasterBeside{Source: src, Priority: int(p.Priority), Mismatch: v.mismatch})
}

// OnMasterBeside sets the function told of every MasterBeside, on Run's goroutine: it must be quick
// and must not call the Elector. Call it before Run.
func (e *Elector) OnMasterBeside(f func(MasterBeside)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.onBeside = f
}

// masterBeside hands b to the OnMasterBeside function, if any.
func (e *Elector) masterBeside(b MasterBeside) {
	e.mu.Lock()
	f := e.onBeside
	e.mu.Unlock()
	if f != nil {
		f(b)
	}
}
