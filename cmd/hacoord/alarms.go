package main

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/hacoord/hacoord/backend/vrrp"
	"github.com/hacoord/hacoord/vip"
)

// Split-brain alarms: while master, another host answering ARP (IPv4) or NDP (IPv6) for a VIP
// with its own MAC (vip.Manager.OnForeign), or another VRRP master's adverts for our VRID
// (vrrp.Elector.OnMasterBeside). Each is logged at error, at most once per alarmInterval for one
// kind, subject (the VIP, the other router) and MAC, counted in hacoord_split_brain_alarms_total
// and listed in the status file while it lasts.

// Alarm kinds: the kind label of hacoord_split_brain_alarms_total.
const (
	alarmARP  = "arp"
	alarmNDP  = "ndp"
	alarmVRRP = "vrrp"
)

var alarmKinds = []string{alarmARP, alarmNDP, alarmVRRP}

// alarmInterval is how often one alarm is logged and counted again while it goes on.
const alarmInterval = 10 * time.Second

// alarmShown is how long the status file lists an alarm after it was last heard.
const alarmShown = time.Minute

// maxAlarms bounds the alarms remembered (a flood from forged MACs must not grow it).
const maxAlarms = 64

type alarmKey struct{ kind, subject, mac string }

type alarmEntry struct {
	first, last, logged time.Time
	detail              string
}

// alarms is one instance's split-brain alarms. Safe from any goroutine; raise is called on the VIP
// watch's and the VRRP Elector's loops, so it only logs and counts.
type alarms struct {
	log *zap.Logger

	mu     sync.Mutex
	m      map[alarmKey]*alarmEntry
	counts map[string]uint64
}

func newAlarms(log *zap.Logger) *alarms {
	return &alarms{log: log, m: map[alarmKey]*alarmEntry{}, counts: map[string]uint64{}}
}

// raise records an alarm heard at now: logged and counted the first time, and again once
// alarmInterval has passed since it was last logged. It reports whether it logged.
func (a *alarms) raise(now time.Time, kind, subject, mac, detail string) bool {
	k := alarmKey{kind, subject, mac}
	a.mu.Lock()
	e, ok := a.m[k]
	if !ok {
		if len(a.m) >= maxAlarms {
			a.evictOldestLocked()
		}
		e = &alarmEntry{first: now}
		a.m[k] = e
	}
	e.last, e.detail = now, detail
	log := e.logged.IsZero() || now.Sub(e.logged) >= alarmInterval
	if log {
		e.logged = now
		a.counts[kind]++
	}
	a.mu.Unlock()
	if log {
		a.log.Error("split brain: "+detail+" while this node is master",
			zap.String("kind", kind), zap.String("subject", subject), zap.String("mac", mac), zap.Time("since", e.first))
	}
	return log
}

func (a *alarms) evictOldestLocked() {
	var oldest alarmKey
	var at time.Time
	for k, e := range a.m {
		if at.IsZero() || e.last.Before(at) {
			oldest, at = k, e.last
		}
	}
	delete(a.m, oldest)
}

// count returns the alarms of kind raised (logged) so far.
func (a *alarms) count(kind string) uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.counts[kind]
}

// recent returns the alarms heard within alarmShown before now, for the status file, sorted: what
// and since when (not when last heard, so that the file changes only when the list does).
func (a *alarms) recent(now time.Time) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, e := range a.m {
		if now.Sub(e.last) < alarmShown {
			out = append(out, fmt.Sprintf("%s since %s", e.detail, e.first.UTC().Format(time.RFC3339)))
		}
	}
	slices.Sort(out)
	return out
}

// wireAlarms gives every instance its alarms and hooks them to its VIP Managers' watch and, for
// VRRP, to its Elector. Call it before the instances run.
func wireAlarms(insts []*instance) {
	for _, in := range insts {
		a := newAlarms(in.log.Named("split-brain"))
		in.alarms = a
		for _, vm := range in.vms {
			vm.OnForeign(func(c vip.Conflict) { a.foreign(c) })
		}
		if e, ok := in.el.(*vrrp.Elector); ok {
			e.OnMasterBeside(func(b vrrp.MasterBeside) {
				a.raise(time.Now(), alarmVRRP, b.Source.String(), "", b.String()+" advertises our VRID")
			})
		}
	}
}

// foreign raises the alarm for another host claiming a held VIP.
func (a *alarms) foreign(c vip.Conflict) {
	kind := alarmARP
	if c.VIP.Addr().Is6() {
		kind = alarmNDP
	}
	mac := c.HardwareAddr.String()
	a.raise(c.Since, kind, c.VIP.String(), mac, fmt.Sprintf("%s: another host answers for %s at %s", kind, c.VIP, mac))
}

// withAlarms adds a's recent alarms to the Status snap builds (a nil: none).
func withAlarms(snap func() Status, a *alarms) func() Status {
	if a == nil {
		return snap
	}
	return func() Status {
		st := snap()
		st.SplitBrain = a.recent(time.Now())
		return st
	}
}
