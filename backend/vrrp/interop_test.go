package vrrp

import (
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hacoord/hacoord/election"
)

var (
	labVIPs  = []netip.Prefix{netip.MustParsePrefix("192.0.2.100/24"), netip.MustParsePrefix("192.0.2.101/24")}
	labVIPs6 = []netip.Prefix{netip.MustParsePrefix("fd00::100/64"), netip.MustParsePrefix("fd00::101/64")}
)

// profile is one VRRP flavour for the lab: the version, keepalived's advert_int and ours, the v2
// password and the VIPs (their family is the virtual router's).
type profile struct {
	name     string
	version  int
	kaAdvert string
	advert   time.Duration
	auth     string
	vips     []netip.Prefix
}

var (
	profileV2   = profile{"v2", 2, "1", time.Second, "secret", labVIPs}
	profileV3   = profile{"v3", 3, "0.1", 100 * time.Millisecond, "", labVIPs}
	profileIPv6 = profile{"v3 IPv6", 3, "0.1", 100 * time.Millisecond, "", labVIPs6}
	profiles    = []profile{profileV2, profileV3, profileIPv6}
)

func (p profile) ipv6() bool { return p.vips[0].Addr().Is6() }

// addr is node i's primary address in this profile's family: the source of its adverts.
func (p profile) addr(i int) netip.Addr {
	if p.ipv6() {
		return labAddr6(i)
	}
	return labAddr(i)
}

func (p profile) hacoordConfig(vrid, prio int) Config {
	c := DefaultConfig()
	c.Version, c.VRID, c.Priority, c.AdvertInt, c.AuthPass, c.VIPs = p.version, vrid, prio, p.advert, p.auth, p.vips
	return c
}

func (p profile) keepalivedConfig(vrid, prio int) keepalivedConf {
	return keepalivedConf{Version: p.version, VRID: vrid, Priority: prio, AdvertInt: p.kaAdvert, AuthPass: p.auth,
		VIPs: p.vips, NativeIPv6: p.ipv6()}
}

// The windows below come from the protocol's timers (RFC 5798 §6.1, RFC 3768 §6.1), as keepalived
// and hacoord compute them, for a router of priority prio whose master advertises every p.advert.

// slack is the scheduling allowance on top of a protocol timer: process wake-ups, the netlink
// round trip of a VIP, a loaded machine. It is far below the 3 x Advertisement_Interval that
// separates a handover on a priority-0 advert (Skew_Time) from one without (Master_Down_Interval),
// so a router that never sent its priority-0 advert fails the handover windows.
const slack = 60 * time.Millisecond

// skew is Skew_Time: (256-prio)/256 s in version 2, (256-prio) x Master_Adver_Interval / 256 in 3.
func (p profile) skew(prio int) time.Duration {
	if p.version == 2 {
		return time.Duration(256-prio) * time.Second / 256
	}
	return time.Duration(256-prio) * p.advert / 256
}

// masterDown is Master_Down_Interval: 3 x Master_Adver_Interval + Skew_Time.
func (p profile) masterDown(prio int) time.Duration { return 3*p.advert + p.skew(prio) }

// handover bounds how soon after a master's priority-0 advert (a graceful stop, counted from the
// stop) the backup of priority prio is master: its Skew_Time.
func (p profile) handover(prio int) time.Duration { return p.skew(prio) + slack }

// takeover bounds how soon after a master went silent (killed, counted from the kill) the backup of
// priority prio is master: Master_Down_Interval after the last advert it heard.
func (p profile) takeover(prio int) time.Duration { return p.masterDown(prio) + slack }

// earliest is the soonest a backup of priority prio may take over from a master killed at the
// time counted from: the last advert it heard was at most one interval (and some lateness of the
// master's timer) before.
func (p profile) earliest(prio int) time.Duration { return p.masterDown(prio) - p.advert - slack }

// follow bounds how soon a backup follows a new master: its first advert, sent on taking over,
// comes after the VIPs are set; on a loaded machine allow two more. Not a safety window.
func (p profile) follow() time.Duration { return 3*p.advert + slack }

// startup bounds how long a group takes to settle at start (keepalived's start-up, every router a
// backup for a Master_Down_Interval first). Not a safety window.
func (p profile) startup(prio int) time.Duration { return 2*p.masterDown(prio) + time.Second }

func TestNamespaceMulticast(t *testing.T) {
	for _, p := range []profile{profileV3, profileIPv6} {
		t.Run(p.name, func(t *testing.T) {
			l := newLab(t, 2)
			a := l.hacoord(t, 0, p.hacoordConfig(7, 200))
			b := l.hacoord(t, 1, p.hacoordConfig(7, 100))
			d := a.waitFor(t, p.startup(200), "A master", isRole(election.Master))
			b.waitFor(t, p.follow(), "B follows A", followsMaster(p.addr(0)))
			t.Logf("A master after %s", d)
			b.stayRole(t, election.Backup, 5*p.advert)
			if st := b.e.Stats(); st.Accepted == 0 || st.DroppedTotal() != 0 {
				t.Fatalf("B stats %+v: want adverts accepted (TTL 255 from the wire), none dropped", st)
			}
			// Graceful stop: B takes over after its Skew_Time, not its Master_Down_Interval.
			stopped := time.Now()
			a.stop(t)
			d = b.waitSince(t, stopped, p.handover(100), "B master after A's priority 0", isRole(election.Master))
			t.Logf("failover after priority-0 advert: %s (skew %s, Master_Down_Interval %s)", d, p.skew(100), p.masterDown(100))
		})
	}
}

// TestKeepalivedMasterHacoordBackup: keepalived (priority 200) is master, hacoord (100) follows it;
// killing keepalived (SIGKILL, no priority-0 advert) makes hacoord master after Master_Down_Interval.
func TestKeepalivedMasterHacoordBackup(t *testing.T) {
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			l := newLab(t, 2)
			ka := l.keepalived(t, 0, p.keepalivedConfig(51, 200))
			h := l.hacoord(t, 1, p.hacoordConfig(51, 100))
			ka.waitMaster(true, p.startup(200))
			h.waitFor(t, p.follow(), "hacoord follows keepalived", followsMaster(p.addr(0)))
			h.stayRole(t, election.Backup, 3*p.advert)
			st := h.e.Stats()
			if st.Accepted == 0 || st.DroppedTotal() != 0 || st.MismatchedTotal() != 0 {
				t.Fatalf("stats %+v: want keepalived's adverts accepted, none dropped", st)
			}
			killed := time.Now()
			ka.stop(syscall.SIGKILL)
			d := h.waitSince(t, killed, p.takeover(100), "hacoord master after keepalived died", isRole(election.Master))
			if d < p.earliest(100) {
				t.Fatalf("hacoord master %s after the kill, before Master_Down_Interval (%s) could run out", d, p.masterDown(100))
			}
			t.Logf("%s: hacoord master %s after SIGKILL of keepalived (Master_Down_Interval %s)", p.name, d, p.masterDown(100))
		})
	}
}

// hacoordOverKeepalived starts, on a new two-node lab, hacoord at priority prio on the first node
// and waits until it is master, then keepalived (100) on the second, which must stay backup for two
// of its Master_Down_Intervals and an advert (it accepts our adverts).
func (p profile) hacoordOverKeepalived(t *testing.T, prio int) (*node, *keepalived) {
	t.Helper()
	l := newLab(t, 2)
	h := l.hacoord(t, 0, p.hacoordConfig(51, prio))
	h.waitFor(t, p.startup(prio), "hacoord master", isRole(election.Master))
	ka := l.keepalived(t, 1, p.keepalivedConfig(51, 100))
	ka.stayBackup(2*p.masterDown(100) + p.advert)
	return h, ka
}

// TestHacoordMasterKeepalivedBackup: hacoord (150) is master and keepalived (100) stays backup, so
// it accepts our adverts. A priority change hands mastership over and back (both preempt), and
// stopping hacoord (priority-0 advert) makes keepalived master after its Skew_Time.
func TestHacoordMasterKeepalivedBackup(t *testing.T) {
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			h, ka := p.hacoordOverKeepalived(t, 150)

			// vrrp_script-like weight: our priority drops under keepalived's, which preempts us
			// Master_Down_Interval after the last advert it accepted (it discards lower ones).
			dropped := time.Now()
			h.e.SetPriority(50)
			d := ka.waitMasterSince(true, dropped, p.takeover(100))
			h.waitFor(t, p.follow(), "hacoord follows keepalived", followsMaster(p.addr(1)))
			t.Logf("%s: keepalived preempted %s after our priority dropped", p.name, d)
			// Back to 150: we discard keepalived's adverts and preempt when our Master_Down_Timer,
			// armed at priority 50, runs out; keepalived steps down on our first advert.
			raised := time.Now()
			h.e.SetPriority(150)
			d = h.waitSince(t, raised, p.takeover(50), "hacoord preempts back", isRole(election.Master))
			ka.waitMasterSince(false, raised.Add(d), slack)

			stopped := time.Now()
			h.stop(t)
			d = ka.waitMasterSince(true, stopped, p.handover(100))
			t.Logf("%s: keepalived master %s after hacoord's priority-0 advert (skew %s, Master_Down_Interval %s)",
				p.name, d, p.skew(100), p.masterDown(100))
			if st := h.e.Stats(); st.DroppedTotal() != 0 || st.MismatchedTotal() != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestKeepalivedNoPreempt: a higher-priority router with nopreempt does not take over from a
// running master, on either side; each takes over at once when the master stops.
func TestKeepalivedNoPreempt(t *testing.T) {
	p := profileV3
	t.Run("keepalived nopreempt", func(t *testing.T) {
		l := newLab(t, 2)
		h := l.hacoord(t, 0, p.hacoordConfig(51, 100))
		h.waitFor(t, p.startup(100), "hacoord master", isRole(election.Master))
		kc := p.keepalivedConfig(51, 200)
		kc.NoPreempt = true
		ka := l.keepalived(t, 1, kc)
		ka.stayBackup(3 * p.masterDown(200))
		h.stayRole(t, election.Master, p.advert)
		// It takes over when we stop, after its Skew_Time.
		stopped := time.Now()
		h.stop(t)
		d := ka.waitMasterSince(true, stopped, p.handover(200))
		t.Logf("keepalived master %s after hacoord stopped (skew %s)", d, p.skew(200))
	})
	t.Run("hacoord nopreempt", func(t *testing.T) {
		l := newLab(t, 2)
		ka := l.keepalived(t, 0, p.keepalivedConfig(51, 100))
		ka.waitMaster(true, p.startup(100))
		hc := p.hacoordConfig(51, 200)
		hc.Preempt = false
		h := l.hacoord(t, 1, hc)
		h.waitFor(t, p.follow(), "hacoord follows keepalived", followsMaster(labAddr(0)))
		h.stayRole(t, election.Backup, 3*p.masterDown(200))
		stopped := time.Now()
		ka.stop(syscall.SIGTERM) // keepalived sends priority 0 on shutdown
		d := h.waitSince(t, stopped, p.handover(200), "hacoord master after keepalived's priority 0", isRole(election.Master))
		t.Logf("hacoord master %s after keepalived's SIGTERM (skew %s)", d, p.skew(200))
	})
}

// TestKeepalivedPreemptDelay: hacoord with a higher priority and preempt_delay 1s joins a group
// whose master is keepalived: it follows keepalived for the delay, then preempts it.
func TestKeepalivedPreemptDelay(t *testing.T) {
	p := profileV3
	l := newLab(t, 2)
	ka := l.keepalived(t, 0, p.keepalivedConfig(51, 100))
	ka.waitMaster(true, p.startup(100))
	hc := p.hacoordConfig(51, 200)
	hc.PreemptDelay = time.Second
	start := time.Now()
	h := l.hacoord(t, 1, hc)
	h.waitFor(t, p.follow(), "hacoord follows keepalived", followsMaster(labAddr(0)))
	// Lower-priority adverts are accepted until the delay ends, then discarded: master one
	// Master_Down_Interval after the last accepted one.
	d := h.waitSince(t, start, hc.PreemptDelay+p.takeover(200), "hacoord preempts", isRole(election.Master))
	if d < hc.PreemptDelay {
		t.Fatalf("preempted after %s, before the %s delay", d, hc.PreemptDelay)
	}
	ka.waitMasterSince(false, start.Add(d), slack) // it steps down on our first advert
	t.Logf("preempted keepalived %s after start (delay %s)", d, hc.PreemptDelay)
}

// observed returns a logger that writes to t and records warnings for the test to read.
func observed(t *testing.T, name string) (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zap.WarnLevel)
	tl := zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	return zap.New(zapcore.NewTee(tl.Core(), core)).Named(name), logs
}

// TestKeepalivedMismatch: a keepalived whose settings differ from ours for the same VRID (its
// default version, another interval, password or VIP list) never joins the group: both become
// master. hacoord names it at warn level as soon as it hears it, before it becomes master beside
// it, and again when it does; Mismatches and Stats show it. keepalived has the lower priority, so
// it would step down at once if it accepted our adverts. Another VRID is another router: no
// mismatch.
func TestKeepalivedMismatch(t *testing.T) {
	tests := []struct {
		name     string
		p        profile
		hmod     func(*Config)
		kmod     func(*keepalivedConf)
		drop     DropReason
		reason   MismatchReason
		detail   string
		noWarned bool
	}{
		// hacoord's defaults (version 3, 1s) next to keepalived's (version 2, no password).
		{"defaults", profileV2, func(c *Config) { *c = DefaultConfig(); c.VRID, c.Priority, c.VIPs = 51, 200, labVIPs },
			func(c *keepalivedConf) { c.Version, c.AuthPass = 0, "" }, DropVersion, MismatchVersion, "VRRP version 2, we speak version 3", false},
		{"v2 auth", profileV2, nil, func(c *keepalivedConf) { c.AuthPass = "other" }, DropAuth, MismatchAuth, "another auth-pass", false},
		{"v2 no auth", profileV2, nil, func(c *keepalivedConf) { c.AuthPass = "" }, DropAuthType, MismatchAuth, "auth type none, we expect PASS", false},
		{"v2 advert interval", profileV2, nil, func(c *keepalivedConf) { c.AdvertInt = "2" }, DropAdvertInt, MismatchAdvertInt, "advert interval 2s, ours is 1s", false},
		{"v3 addresses", profileV3, nil, func(c *keepalivedConf) { c.VIPs = labVIPs[:1] }, DropAddrCount, MismatchVIPs, "1 addresses [192.0.2.100], we expect 2", false},
		{"v3 IPv6 addresses", profileIPv6, nil, func(c *keepalivedConf) { c.VIPs = labVIPs6[1:] }, DropAddrCount, MismatchVIPs, "1 addresses [fd00::101], we expect 2", false},
		{"v3 vrid", profileV3, nil, func(c *keepalivedConf) { c.VRID = 52 }, DropVRID, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t, 2)
			kc := tt.p.keepalivedConfig(51, 100)
			tt.kmod(&kc)
			ka := l.keepalived(t, 0, kc)
			ka.waitMaster(true, tt.p.startup(100)+time.Second)
			hc := tt.p.hacoordConfig(51, 200)
			if tt.hmod != nil {
				tt.hmod(&hc)
			}
			log, logs := observed(t, "n2")
			started := time.Now()
			h := l.hacoordLogged(t, 1, hc, log)
			d := h.waitFor(t, tt.p.startup(200), "hacoord master despite keepalived", isRole(election.Master))
			// keepalived drops our higher-priority adverts just the same: it stays master.
			ka.stay(true, 3*tt.p.advert)
			st := h.e.Stats()
			if st.Dropped[tt.drop] == 0 || st.Accepted != 0 {
				t.Fatalf("stats %+v: want drops counted as %s, none accepted", st, tt.drop)
			}
			warned := logs.FilterMessageSnippet("adverts for this VRID do not match").All()
			beside := logs.FilterMessageSnippet("becoming master while routers that send mismatched adverts").All()
			if tt.noWarned {
				if len(warned)+len(beside) != 0 || len(h.e.Mismatches()) != 0 || st.MismatchedTotal() != 0 {
					t.Fatalf("another VRID warned about: %+v %+v, mismatches %+v", warned, beside, h.e.Mismatches())
				}
				return
			}
			if st.Mismatched[tt.reason] == 0 {
				t.Fatalf("stats %+v: want mismatches counted as %s", st, tt.reason)
			}
			mms := h.e.Mismatches()
			if len(mms) != 1 || mms[0].Reason != tt.reason || mms[0].Source != tt.p.addr(0) || !strings.Contains(mms[0].Detail, tt.detail) {
				t.Fatalf("Mismatches %+v, want one %s from %s saying %q", mms, tt.reason, tt.p.addr(0), tt.detail)
			}
			// One warning so far (rate-limited), naming the source, before we became master.
			if len(warned) != 1 {
				t.Fatalf("%d mismatch warnings, want 1: %+v", len(warned), warned)
			}
			f := warned[0].ContextMap()
			if f["reason"] != string(tt.reason) || f["src"] != tt.p.addr(0).String() || !strings.Contains(f["detail"].(string), tt.detail) {
				t.Fatalf("warning fields %v", f)
			}
			if at := warned[0].Time.Sub(started); at > d {
				t.Errorf("warned %s after start, after becoming master (%s)", at, d)
			}
			if len(beside) != 1 || !strings.Contains(fmt.Sprint(beside[0].ContextMap()["mismatched"]), tt.p.addr(0).String()) {
				t.Fatalf("warnings on becoming master: %+v, want one naming %s", beside, tt.p.addr(0))
			}
		})
	}
}

// TestKeepalivedUnicast: unicast peers (version 3, whose checksum covers the unicast destination).
func TestKeepalivedUnicast(t *testing.T) {
	p := profileV3
	l := newLab(t, 2)
	kc := p.keepalivedConfig(51, 200)
	kc.UnicastPeers = []netip.Addr{labAddr(1)}
	ka := l.keepalived(t, 0, kc)
	hc := p.hacoordConfig(51, 100)
	hc.UnicastPeers = []netip.Addr{labAddr(0)}
	h := l.hacoord(t, 1, hc)
	ka.waitMaster(true, p.startup(200))
	h.waitFor(t, p.follow(), "hacoord follows keepalived", followsMaster(labAddr(0)))
	h.stayRole(t, election.Backup, 5*p.advert)
	killed := time.Now()
	ka.stop(syscall.SIGKILL)
	h.waitSince(t, killed, p.takeover(100), "hacoord master", isRole(election.Master))
	if st := h.e.Stats(); st.DroppedTotal() != 0 || st.Accepted == 0 {
		t.Fatalf("stats %+v", st)
	}
}
