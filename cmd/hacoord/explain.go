package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/fencing"
	"github.com/hacoord/hacoord/vip"
)

// The allowances explain adds to what the design fixes. They are not guarantees of the design but
// what the rest of a takeover costs on a LAN: explain names them in every formula that uses them.
const (
	// takeoverSlack covers what follows the decisive event of a takeover: the store's watch event
	// reaching the next candidate, its campaign (a transaction or a znode read), the promote chain
	// up to the bind and the first GARP, and scheduling on a loaded host.
	takeoverSlack = 250 * time.Millisecond
	// etcdLessorScan is how often etcd's lessor looks for expired leases (lessor.runLoop): an
	// expired lease's keys go up to this long after its TTL ran out.
	etcdLessorScan = 500 * time.Millisecond
	// kernelLateness is the base of the kernel's lateness in removing an address whose lifetime
	// ended (vip/doc.go, "Lifetime backstop").
	kernelLateness = 1250 * time.Millisecond
	// guardReaction covers the fence guard's wake-up on its pipe's end and the netlink delete
	// before it ends the dead daemon's candidacy (tens of ms; up to 220ms seen on a loaded 2-core
	// host).
	guardReaction = 100 * time.Millisecond
	// thinValidity is the validity below which explain warns that an ordinary stall (a GC pause,
	// a loaded host, a slow answer) makes a master let go of its VIPs.
	thinValidity = 100 * time.Millisecond
)

// What explain assumes of a store it could not read.
var (
	// etcd's defaults: election timeout 1s, so a minimum lease TTL of 2s.
	assumedEtcdTiming = etcd.Timing{ElectionTimeout: time.Second, MinTTL: 2 * time.Second}
	// ZooKeeper's sample configuration (Debian's zoo.cfg): tickTime 2000, initLimit 10, syncLimit 5.
	assumedZKTiming = zk.Timing{Tick: 2 * time.Second, InitLimit: 10, SyncLimit: 5}
)

// Explanation is the worst-case timeline of one instance, as `hacoord explain -o json` prints it.
type Explanation struct {
	Instance string `json:"instance"`
	Backend  string `json:"backend"`
	Group    string `json:"group,omitempty"`
	// Store says what explain learnt of the store's own timing, or what it assumed and why.
	Store    string        `json:"store,omitempty"`
	Settings []string      `json:"settings"`
	Items    []ExplainItem `json:"items"`
	Warnings []string      `json:"warnings,omitempty"`
}

// ExplainItem is one line of the timeline: a worst case, its bound and the formula that gives it.
type ExplainItem struct {
	// Key is stable: crash, kill, stop, hold-after-loss, leader-change, fence-hook (with one),
	// conflict-probe.
	Key  string `json:"key"`
	What string `json:"what"`
	// Bound is the worst case (0 with NoBound: there is none).
	Bound        time.Duration `json:"-"`
	BoundSeconds float64       `json:"bound_seconds"`
	NoBound      bool          `json:"no_bound,omitempty"`
	Formula      string        `json:"formula"`
	// RidesOut (leader-change) says whether the master keeps its VIPs through it; where it does
	// not, Drop is the longest the VIPs may be on no node (the master keeps its term and takes them
	// back: no failover).
	RidesOut    *bool         `json:"rides_out,omitempty"`
	Drop        time.Duration `json:"-"`
	DropSeconds float64       `json:"drop_seconds,omitempty"`
}

// explainInput is what the timeline depends on: one instance's settings and the store's timing.
type explainInput struct {
	name, backend, group string

	// etcd: TTL, margin and keepalive interval as the elector uses them; the store's timing.
	ttl, margin, keepalive time.Duration
	etcd                   etcd.Timing
	// zk: the requested session timeout and configured margin (0: default); the ensemble's timing.
	session, zkMargin time.Duration
	zk                zk.Timing
	// vrrp
	advert            time.Duration
	priority, version int

	store string // what was learnt of the store, or assumed

	probe      time.Duration // the conflict probe's window (0: --conflict off)
	probes     int           // its rounds
	probeEvery time.Duration // and their interval
	policy     vip.ConflictPolicy
	fenceHook  time.Duration // the fence hook's timeout (0: none)
	fenceRetry retryPolicy   // its retries after a failed run (fencehook.go)
	guard      bool          // --fence-guard
	guardEnds  bool          // the guard ends the candidacy (it does, on every device, since one guard serves the daemon)
	lifetime   bool          // VIPs carry a kernel lifetime
}

// ms formats d for a formula: milliseconds below 10s, else seconds.
func ms(d time.Duration) string {
	if d < 10*time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

// kernelLifetime is the whole-second valid_lft the vip package writes with left to the deadline:
// floor((left - 1.25s) * 7/8), 0 when under 1s (no lifetime is then set).
func kernelLifetime(left time.Duration) int {
	r := left - kernelLateness
	if r <= 0 {
		return 0
	}
	return int(r * 7 / 8 / time.Second)
}

// negotiatedSession is the session timeout a ZooKeeper server grants for requested: clamped to
// [minSessionTimeout, maxSessionTimeout], by default 2 and 20 ticks.
func negotiatedSession(requested time.Duration, t zk.Timing) time.Duration {
	lo, hi := t.MinSession, t.MaxSession
	if lo == 0 {
		lo = 2 * t.Tick
	}
	if hi == 0 {
		hi = 20 * t.Tick
	}
	return min(max(requested, lo), hi)
}

// zkMarginFor is the margin the zk elector uses for session timeout t (zk's marginFor).
func zkMarginFor(configured, t time.Duration) time.Duration {
	if configured == 0 || fencing.CheckMargin(t, configured) != nil {
		return fencing.DefaultMargin(t)
	}
	return configured
}

// explainTimeline computes the worst-case timeline of in. It is pure: every number comes from in.
func explainTimeline(in explainInput) Explanation {
	ex := Explanation{Instance: in.name, Backend: in.backend, Group: in.group, Store: in.store}
	add := func(it ExplainItem) { ex.Items = append(ex.Items, withSeconds(it)) }
	// The takeover path common to every backend: the promote chain after the decisive event.
	promote, promoteF := in.probe+takeoverSlack, fmt.Sprintf("conflict probe %s + takeover slack %s", ms(in.probe), ms(takeoverSlack))
	// A term is prepared (the fence hook run) once: a master that takes its VIPs back in the same
	// term, after a leader change, does not run the hook again (election.Coordinator).
	resume, resumeF := promote, promoteF
	var fenceItem *ExplainItem
	if in.fenceHook > 0 {
		fence, r := fenceBound(in.fenceHook, in.fenceRetry), in.fenceRetry
		promote += fence
		promoteF += fmt.Sprintf(" + fence hook %s", ms(fence))
		fenceItem = &ExplainItem{Key: "fence-hook", What: "fence hook before the first bind (every new term)", Bound: fence,
			Formula: fmt.Sprintf("(1 + hooks.fence_retries %d) x hooks.timeout %s + hooks.fence_retries %d x hooks.fence_retry_interval %s: each run is killed at its timeout, a failed one runs again after the interval, the last one allowed succeeding; if it fails too, the node yields its candidacy and another candidate starts over with its own hook",
				r.retries, ms(in.fenceHook), r.retries, ms(r.interval))}
	}
	probeItem := ExplainItem{Key: "conflict-probe", What: "conflict probe before the first bind", Bound: in.probe}
	if in.probe == 0 {
		probeItem.Formula = "--conflict off: no probe (a stale holder of the VIPs is not detected)"
	} else {
		probeItem.Formula = fmt.Sprintf("%d rounds x interval %s, listening until an interval after the last (an answer ends it sooner); on every takeover; --conflict off saves it", in.probes, ms(in.probeEvery))
	}
	var crash time.Duration
	switch in.backend {
	case backendEtcd:
		T, m, k := in.ttl, in.margin, in.keepalive
		ex.Settings = []string{fmt.Sprintf("lease TTL %s, fencing margin %s, keepalive every %s", ms(T), ms(m), ms(k))}
		if wv := T - m - k; wv < thinValidity {
			ex.Warnings = append(ex.Warnings, fmt.Sprintf("a master holds as little as TTL - margin - keepalive = %s of validity: a stall that long drops the VIPs for a moment (same term, no failover)", ms(wv)))
		}
		crash = T + etcdLessorScan + promote
		crashF := fmt.Sprintf("TTL %s (the store expires the lease; its last renewal came before the crash) + etcd lessor scan %s + %s", ms(T), ms(etcdLessorScan), promoteF)
		if h := etcd.Headroom(T); h > 0 {
			crash = T + etcd.EarlyEndReading + promote
			crashF = fmt.Sprintf("TTL %s (the master's validity; its last renewal came before the crash) + a reading every %s (the backup first in line ends the term once the store shows the lease unrenewed that long: leases get %s of headroom) + %s; were no backup reading, the store would expire the lease %s + lessor scan %s later",
				ms(T), ms(etcd.EarlyEndReading), ms(h), promoteF, ms(h), ms(etcdLessorScan))
		}
		add(ExplainItem{Key: "crash", What: "node crash -> takeover", Bound: crash, Formula: crashF})
		explainKillStop(&ex, in, crash, promote, promoteF, "revokes the dead daemon's lease", "revokes its lease")
		hold := T - m
		add(ExplainItem{Key: "hold-after-loss", What: "longest an old master holds the VIPs after losing the store", Bound: hold,
			Formula: fmt.Sprintf("deadline = send time of the last acknowledged keepalive + TTL - margin: TTL %s - margin %s; %s; the store expires the lease no sooner than margin %s after it",
				ms(T), ms(m), lifetimeNote(in, hold), ms(m))})
		tm := in.etcd
		lc := tm.LeaderChange()
		keep := T - m - k
		rides := tm.RidesOut(T, m, k)
		f := fmt.Sprintf("2 x election timeout %s + %s: renewals go unanswered that long; the master holds the VIPs TTL - margin - keepalive = %s after its last acknowledged renewal",
			ms(tm.ElectionTimeout), ms(lc-2*tm.ElectionTimeout), ms(keep))
		var drop time.Duration
		if rides {
			f += ": rides it out"
		} else {
			drop = lc - keep + resume
			f += fmt.Sprintf(": does NOT ride it out: the VIPs may be gone for up to %s - %s + the promote path (%s) = %s (same term, no failover, not fenced again); --lease-ttl %s would",
				ms(lc), ms(keep), resumeF, ms(drop), tm.RideOutTTL())
			ex.Warnings = append(ex.Warnings, fmt.Sprintf("--lease-ttl %s cannot ride out an etcd leader change (%s): the master lets go of the VIPs for up to %s and takes them back with the same term; --lease-ttl %s rides it out",
				ms(T), ms(lc), ms(drop), tm.RideOutTTL()))
		}
		add(ExplainItem{Key: "leader-change", What: "etcd leader change", Bound: lc, Formula: f, RidesOut: &rides, Drop: drop})
		if tm.MinTTL > 0 && T < tm.MinTTL {
			ex.Warnings = append(ex.Warnings, fmt.Sprintf("--lease-ttl %s is below the store's minimum TTL %s: the daemon will refuse it", ms(T), ms(tm.MinTTL)))
		}
	case backendZK:
		tm := in.zk
		T := negotiatedSession(in.session, tm)
		m := zkMarginFor(in.zkMargin, T)
		tm.Session, tm.Margin = T, m
		s := fmt.Sprintf("session timeout %s", ms(T))
		if T != in.session {
			s += fmt.Sprintf(" (asked %s; the server grants [%s, %s])", ms(in.session), ms(negotiatedSession(0, tm)), ms(negotiatedSession(time.Hour, tm)))
		}
		ex.Settings = []string{fmt.Sprintf("%s, fencing margin %s, liveness round trip every %s", s, ms(m), ms(tm.Renewal()))}
		// On a follower the deadline trails the latest answered round trip by one renewal; a
		// standalone server touches the session on each (zk.Timing.WorstValidity).
		wvF := "session/2 - margin"
		if tm.Standalone() {
			wvF = "session - renewal - margin (standalone)"
		}
		if wv := tm.WorstValidity(); wv < thinValidity {
			ex.Warnings = append(ex.Warnings, fmt.Sprintf("a master in contact holds as little as %s = %s of validity: a stall that long (GC, a loaded host, a slow answer) drops the VIPs for a moment (same term, no failover)", wvF, ms(wv)))
			if in.probe >= wv {
				ex.Warnings = append(ex.Warnings, fmt.Sprintf("the conflict probe (%s) outlasts that validity: a new master may bind the VIPs and let go of them at once, binding again a liveness round trip later", ms(in.probe)))
			}
		}
		crash = T + tm.Tick + promote
		add(ExplainItem{Key: "crash", What: "node crash -> takeover", Bound: crash,
			Formula: fmt.Sprintf("session timeout %s (from the server's last contact, before the crash) + 1 tick %s (session expiry runs in tick buckets) + %s", ms(T), ms(tm.Tick), promoteF)})
		explainKillStop(&ex, in, crash, promote, promoteF, "closes the dead daemon's session", "closes its session")
		hold := T - m
		add(ExplainItem{Key: "hold-after-loss", What: "longest an old master holds the VIPs after losing the store", Bound: hold,
			Formula: fmt.Sprintf("deadline = anchor (an answered liveness round trip the leader has seen) + session - margin: %s - %s; %s; in contact a master holds at least %s = %s",
				ms(T), ms(m), lifetimeNote(in, hold), wvF, ms(tm.WorstValidity()))})
		if tm.SyncLimit == 0 {
			f := "a standalone server has no leader election; while it is down the master lets go at its deadline, and its session survives a restart shorter than the session timeout"
			add(ExplainItem{Key: "leader-change", What: "ZooKeeper leader change", NoBound: true, Formula: f})
			break
		}
		need, keep := tm.StoreOutage()+tm.RoundPause(), tm.WorstValidity()
		rides := tm.RidesOut()
		f := fmt.Sprintf("syncLimit %d x tick %s + leader election's final wait 200ms + 2 ticks (estimate) + reconnection pause %s; the master holds at least session/2 - margin = %s",
			tm.SyncLimit, ms(tm.Tick), ms(tm.RoundPause()), ms(keep))
		var drop time.Duration
		if rides {
			f += ": rides it out"
		} else {
			drop = need - keep + resume
			f += fmt.Sprintf(": does NOT ride it out: the VIPs may be gone for up to %s - %s + the promote path (%s) = %s (same term, no failover, not fenced again)", ms(need), ms(keep), resumeF, ms(drop))
			w := fmt.Sprintf("--zk-session-timeout %s cannot ride out a ZooKeeper leader election (%s): the master lets go of the VIPs for up to %s and takes them back with the same term", ms(T), ms(need), ms(drop))
			if r := tm.RideOut(in.zkMargin); r > 0 {
				f += fmt.Sprintf("; --zk-session-timeout %s would", r)
				w += fmt.Sprintf("; --zk-session-timeout %s rides it out", r)
			}
			ex.Warnings = append(ex.Warnings, w)
		}
		add(ExplainItem{Key: "leader-change", What: "ZooKeeper leader change", Bound: need, Formula: f, RidesOut: &rides, Drop: drop})
	case backendVRRP:
		A := in.advert
		skew, skewF := 255*A/256, "(256 - backup priority) x advert / 256 < advert"
		if in.version == 2 {
			skew, skewF = 255*time.Second/256, "(256 - backup priority) / 256 s < 1s (VRRPv2)"
		}
		ex.Settings = []string{fmt.Sprintf("VRRPv%d, advert every %s, priority %d", in.version, ms(A), in.priority)}
		crash = 3*A + skew + promote
		add(ExplainItem{Key: "crash", What: "node crash -> takeover", Bound: crash,
			Formula: fmt.Sprintf("Master_Down_Interval = 3 x advert %s + Skew_Time %s (%s) + %s", ms(A), ms(skew), skewF, promoteF)})
		kill := ExplainItem{Key: "kill", What: "SIGKILL of the master's daemon -> takeover", Bound: crash,
			Formula: "as a crash: the fence guard removes the VIPs at once, the backups notice the silence after Master_Down_Interval"}
		if !in.guard {
			kill.Formula = "as a crash for the takeover; without the fence guard the killed daemon's VIPs stay until their kernel lifetime ends" + staleNote(in)
		}
		add(kill)
		add(ExplainItem{Key: "stop", What: "clean stop (SIGTERM) -> takeover", Bound: skew + promote,
			Formula: fmt.Sprintf("the priority-0 advert: a backup takes over after its Skew_Time %s + %s", ms(skew), promoteF)})
		v := 3*A - fencing.DefaultMargin(3*A)
		add(ExplainItem{Key: "hold-after-loss", What: "longest an old master holds the VIPs after losing its peers", NoBound: true,
			Formula: fmt.Sprintf("no bound: VRRP has no quorum, a master cut off from its peers keeps the VIPs (split brain); a stopped or hung master lets go 3 x advert - margin = %s after its last advert; %s", ms(v), lifetimeNote(in, v))})
		add(ExplainItem{Key: "leader-change", What: "store leader change", NoBound: true, Formula: "no store"})
	}
	if fenceItem != nil {
		add(*fenceItem)
	}
	add(probeItem)
	return ex
}

// fenceBound is the longest the fence hook may hold a takeover back (fenceStep.Prepare): 1 + retries
// runs, each killed at timeout, with retries waits of the interval between them.
func fenceBound(timeout time.Duration, r retryPolicy) time.Duration {
	return time.Duration(1+r.retries)*timeout + time.Duration(r.retries)*r.interval
}

// explainKillStop adds the SIGKILL and clean-stop lines of a quorum backend.
func explainKillStop(ex *Explanation, in explainInput, crash, promote time.Duration, promoteF, guardDoes, stopDoes string) {
	kill := ExplainItem{Key: "kill", What: "SIGKILL of the master's daemon -> takeover", Bound: guardReaction + promote,
		Formula: fmt.Sprintf("the fence guard sees its pipe close, removes the VIPs (guard reaction %s) and %s: + %s; if the guard cannot reach the store, as a crash (%s)", ms(guardReaction), guardDoes, promoteF, ms(crash))}
	switch {
	case !in.guard:
		kill.Bound, kill.Formula = crash, "as a crash (--fence-guard=false: nothing ends the candidacy); the killed daemon's VIPs stay until their kernel lifetime ends"+staleNote(in)
		if strings.Contains(staleNote(in), "TWO HOLDERS") {
			ex.Warnings = append(ex.Warnings, "--fence-guard=false with no kernel lifetime: a SIGKILLed master's VIPs stay on its interface while the next master binds them")
		}
	case !in.guardEnds:
		kill.Bound, kill.Formula = crash, "as a crash: the VIPs are on several devices, a guard per device, and no guard ends the candidacy"
	}
	ex.Items = append(ex.Items, withSeconds(kill))
	ex.Items = append(ex.Items, withSeconds(ExplainItem{Key: "stop", What: "clean stop (SIGTERM) -> takeover", Bound: promote,
		Formula: fmt.Sprintf("demote (the VIPs go), then the daemon %s: %s; if the store does not answer, as a crash (%s)", stopDoes, promoteF, ms(crash))}))
}

func withSeconds(it ExplainItem) ExplainItem {
	it.BoundSeconds, it.DropSeconds = it.Bound.Seconds(), it.Drop.Seconds()
	return it
}

// staleNote says what becomes of a killed daemon's VIPs without its fence guard: with no kernel
// lifetime, they stay, and only the next master's conflict probe notices them.
func staleNote(in explainInput) string {
	var left time.Duration
	switch in.backend {
	case backendEtcd:
		left = in.ttl - in.margin
	case backendZK:
		T := negotiatedSession(in.session, in.zk)
		left = T - zkMarginFor(in.zkMargin, T)
	default:
		left = 3*in.advert - fencing.DefaultMargin(3*in.advert)
	}
	if in.lifetime && kernelLifetime(left) > 0 {
		return fmt.Sprintf(" (%ds, before the deadline)", kernelLifetime(left))
	}
	return " (none at these settings: they stay, TWO HOLDERS, until the next master's conflict probe finds them and runs the fence hook)"
}

// lifetimeNote says what kernel lifetime the VIPs carry with left to the deadline at a renewal.
func lifetimeNote(in explainInput, left time.Duration) string {
	if !in.lifetime {
		return "no kernel lifetime (vip_lifetime off)"
	}
	if l := kernelLifetime(left); l > 0 {
		return fmt.Sprintf("kernel lifetime floor((%s - 1.25s) x 7/8) = %ds, gone before the deadline", ms(left), l)
	}
	return fmt.Sprintf("no kernel lifetime (%s to the deadline < 2.39s: floor((left - 1.25s) x 7/8) < 1s): the timer and the fence guard are the backstops", ms(left))
}

// explainInputs maps a plan's instances onto explainInputs (store timing not yet read).
func explainInputs(p *plan) []explainInput {
	var out []explainInput
	for _, ip := range p.instances {
		in := explainInput{name: ip.name, backend: ip.backend, group: ip.group, guard: p.fenceGuard, guardEnds: true} // the daemon's one guard releases every device first
		if len(ip.vipSets) > 0 {
			c := ip.vipSets[0].cfg
			in.lifetime, in.policy = c.Lifetime, c.Conflict.Policy
			if c.Conflict.Policy != vip.ConflictOff && c.Conflict.Policy != "" {
				in.probe = time.Duration(c.Conflict.Probes) * c.Conflict.Interval
				in.probes, in.probeEvery = c.Conflict.Probes, c.Conflict.Interval
			}
		}
		if h, ok := ip.hooks["hooks.fence"]; ok {
			in.fenceHook, in.fenceRetry = h.Timeout, ip.fenceRetry()
		}
		switch ip.backend {
		case backendEtcd:
			c := ip.etcd
			in.ttl, in.margin, in.keepalive = c.TTL, c.Margin, c.KeepaliveInterval
			if in.margin == 0 {
				in.margin = fencing.DefaultMargin(c.TTL)
			}
			if in.keepalive == 0 {
				in.keepalive = c.TTL / 4
			}
		case backendZK:
			in.session, in.zkMargin = ip.zk.SessionTimeout, ip.zk.Margin
		case backendVRRP:
			in.advert, in.priority, in.version = ip.vrrp.AdvertInt, ip.vrrp.Priority, ip.vrrp.Version
		}
		out = append(out, in)
	}
	return out
}

// learnStoreTiming fills in the store's timing of every quorum instance: read from the store when
// it answers within ctx, else assumed (and said so).
func learnStoreTiming(ctx context.Context, p *plan, ins []explainInput, reach bool, electionTimeout time.Duration) {
	for i := range ins {
		in := &ins[i]
		ip := p.instances[i]
		switch in.backend {
		case backendEtcd:
			var err error = errors.New("--no-store")
			if reach {
				in.etcd, err = readEtcdTiming(ctx, ip.etcd)
			}
			if err == nil {
				in.store = fmt.Sprintf("etcd at %s: minimum lease TTL %s, so an election timeout of at most %s (the client API exposes neither the election timeout nor the heartbeat; the minimum TTL is ceil(1.5 x election timeout))",
					strings.Join(ip.etcd.Endpoints, ","), ms(in.etcd.MinTTL), ms(in.etcd.ElectionTimeout))
			} else {
				in.etcd = assumedEtcdTiming
				in.store = fmt.Sprintf("etcd not read (%v): assuming etcd's defaults, election timeout 1s, minimum TTL 2s", err)
			}
			if electionTimeout > 0 {
				in.etcd.ElectionTimeout = electionTimeout
				in.store += fmt.Sprintf("; election timeout %s from --store-election-timeout", ms(electionTimeout))
			}
		case backendZK:
			in.zk, in.store = readZKTiming(ctx, ip.zk.Servers, reach)
		}
	}
}

// readZKTiming learns the ensemble's timing: from the conf four-letter word, or, where the servers
// refuse it, from the session bounds they grant (a 1ms and a 2^31-1 ms session, opened and closed
// at once: the tick is inferred as minSessionTimeout/2, its default) and srvr's mode (standalone or
// an ensemble, whose syncLimit is then assumed). Without the store it assumes the sample zoo.cfg.
func readZKTiming(ctx context.Context, servers []string, reach bool) (zk.Timing, string) {
	if !reach {
		return assumedZKTiming, "ZooKeeper not read (--no-store): assuming tickTime 2s, initLimit 10, syncLimit 5"
	}
	t, err := zk.ReadTiming(ctx, servers)
	if err == nil {
		s := fmt.Sprintf("ZooKeeper conf: tickTime %s, sessions [%s, %s], initLimit %d, syncLimit %d",
			ms(t.Tick), ms(negotiatedSession(0, t)), ms(negotiatedSession(time.Hour, t)), t.InitLimit, t.SyncLimit)
		if t.SyncLimit == 0 {
			s += " (standalone)"
		}
		return t, s
	}
	g, nerr := zk.NegotiateSessions(ctx, servers, time.Millisecond, math.MaxInt32*time.Millisecond)
	if nerr != nil {
		return assumedZKTiming, fmt.Sprintf("ZooKeeper not read (%v; %v): assuming tickTime 2s, initLimit 10, syncLimit 5", err, nerr)
	}
	t = zk.Timing{MinSession: g[0], MaxSession: g[1], Tick: g[0] / 2, InitLimit: 10, SyncLimit: 5}
	s := fmt.Sprintf("ZooKeeper grants sessions of [%s, %s], so tickTime %s (minSessionTimeout/2, its default; conf is not allowed: %v)",
		ms(g[0]), ms(g[1]), ms(t.Tick), err)
	if mode, merr := zk.ServerMode(ctx, servers); merr == nil && mode == "standalone" {
		t.InitLimit, t.SyncLimit = 0, 0
		s += "; standalone (srvr)"
	} else {
		s += "; syncLimit assumed 5 ticks"
	}
	return t, s
}

// readEtcdTiming learns the store's timing from the shortest TTL it grants (etcd.LearnTiming).
func readEtcdTiming(ctx context.Context, c etcd.Config) (etcd.Timing, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints, TLS: c.TLS, Username: c.Username, Password: c.Password,
		DialTimeout: c.DialTimeout, Context: ctx, Logger: zap.NewNop()})
	if err != nil {
		return etcd.Timing{}, err
	}
	defer cli.Close()
	return etcd.LearnTiming(ctx, cli)
}

// writeExplanations prints the timelines for a person.
func writeExplanations(w io.Writer, exs []Explanation) error {
	var b strings.Builder
	for i, ex := range exs {
		if i > 0 {
			b.WriteString("\n")
		}
		name := ex.Instance
		if name == "" {
			name = ex.Group
		}
		fmt.Fprintf(&b, "instance %s: backend %s", name, ex.Backend)
		if ex.Group != "" && ex.Backend != backendVRRP {
			fmt.Fprintf(&b, ", group %s", ex.Group)
		}
		b.WriteString("\n")
		if ex.Store != "" {
			fmt.Fprintf(&b, "  store: %s\n", ex.Store)
		}
		for _, s := range ex.Settings {
			fmt.Fprintf(&b, "  settings: %s\n", s)
		}
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  WORST CASE\tBOUND\tFORMULA")
		for _, it := range ex.Items {
			bound := ms(it.Bound)
			if it.NoBound {
				bound = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", it.What, bound, it.Formula)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, w := range ex.Warnings {
			fmt.Fprintf(&b, "  warning: %s\n", w)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func newExplainCommand(stdout io.Writer) *cobra.Command {
	fv := defaultFlagValues()
	var (
		configPath, output string
		noStore            bool
		timeout, electTO   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "explain",
		Short: "Print the worst-case failover timeline that the settings and the store's timing give",
		Long: `explain takes the daemon's flags or --config and prints, per instance, the worst cases the
self-fencing design bounds, each with the formula that gives it: crash -> takeover, SIGKILL of the
daemon -> takeover (the fence guard ends the dead daemon's candidacy), clean stop -> takeover, the
longest an old master may hold the VIPs after losing the store, what a store leader change costs
and whether the TTL rides it out, and the conflict probe's cost. It reads the store's own timing
when it can reach it (etcd: the shortest lease TTL it grants, which bounds its election timeout;
ZooKeeper: tickTime, session bounds and syncLimit from the conf four-letter word), and otherwise
says what it assumed. Bounds that include a "takeover slack" (250ms) count on a LAN and a host
that is not starved; the rest follow from the settings.`,
		Example: `  hacoord explain --backend etcd --endpoints http://10.0.0.1:2379 --interface eth0 --vip 10.0.0.100/24 --lease-ttl 2s
  hacoord explain --config /etc/hacoord/hacoord.yaml -o json | jq '.[0].items'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return configErrorf("--output %q: want table or json", output)
			}
			if timeout <= 0 {
				return configErrorf("--timeout %v: must be positive", timeout)
			}
			s, err := load(cmd.Flags(), &fv, configPath)
			if err != nil {
				return err
			}
			p, err := buildPlan(s)
			if err != nil {
				return err
			}
			ins := explainInputs(p)
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			learnStoreTiming(ctx, p, ins, !noStore, electTO)
			cancel()
			exs := make([]Explanation, len(ins))
			for i, in := range ins {
				exs[i] = explainTimeline(in)
			}
			if output == "json" {
				b, err := json.MarshalIndent(exs, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(stdout, "%s\n", b)
				return err
			}
			return writeExplanations(stdout, exs)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&configPath, "config", "", "YAML settings file, as the daemon's")
	registerFlags(fs, &fv)
	fs.StringVarP(&output, "output", "o", "table", "table or json")
	fs.BoolVar(&noStore, "no-store", false, "do not contact the store; assume its default timing")
	fs.DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait for the store's timing")
	fs.DurationVar(&electTO, "store-election-timeout", 0, "etcd: the members' --election-timeout, when known (the client API does not expose it)")
	return cmd
}
