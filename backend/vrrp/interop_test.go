package vrrp

import (
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/hacoord/hacoord/election"
)

var labVIPs = []netip.Prefix{netip.MustParsePrefix("192.0.2.100/24"), netip.MustParsePrefix("192.0.2.101/24")}

// profile is one VRRP version's settings for the lab: keepalived's advert_int and ours, and how
// long a backup with priority 100 waits for a silent master (Master_Down_Interval).
type profile struct {
	name      string
	version   int
	kaAdvert  string
	advert    time.Duration
	auth      string
	masterDwn time.Duration
}

var profiles = []profile{
	{"v2", 2, "1", time.Second, "secret", 3609 * time.Millisecond},
	{"v3", 3, "0.1", 100 * time.Millisecond, "", 361 * time.Millisecond},
}

func (p profile) hacoordConfig(vrid, prio int) Config {
	c := DefaultConfig()
	c.Version, c.VRID, c.Priority, c.AdvertInt, c.AuthPass, c.VIPs = p.version, vrid, prio, p.advert, p.auth, labVIPs
	return c
}

func (p profile) keepalivedConfig(vrid, prio int) keepalivedConf {
	return keepalivedConf{Version: p.version, VRID: vrid, Priority: prio, AdvertInt: p.kaAdvert, AuthPass: p.auth, VIPs: labVIPs}
}

// margin is the scheduling slack allowed on top of a protocol timer.
const margin = 1500 * time.Millisecond

func TestNamespaceMulticast(t *testing.T) {
	l := newLab(t, 2)
	p := profiles[1]
	a := l.hacoord(t, 0, p.hacoordConfig(7, 200))
	b := l.hacoord(t, 1, p.hacoordConfig(7, 100))
	d := a.waitFor(t, p.masterDwn+margin, "A master", isRole(election.Master))
	b.waitFor(t, margin, "B follows A", followsMaster(labAddr(0)))
	t.Logf("A master after %s", d)
	b.stayRole(t, election.Backup, 5*p.advert)
	if st := b.e.Stats(); st.Accepted == 0 || st.DroppedTotal() != 0 {
		t.Fatalf("B stats %+v: want adverts accepted (TTL 255 from the wire), none dropped", st)
	}
	// Graceful stop: B takes over after its Skew_Time.
	a.stop(t)
	d = b.waitFor(t, margin, "B master after A's priority 0", isRole(election.Master))
	t.Logf("failover after priority-0 advert: %s (skew %s)", d, 156*p.advert/256)
}

// TestKeepalivedMasterHacoordBackup: keepalived (priority 200) is master, hacoord (100) follows it;
// killing keepalived (SIGKILL, no priority-0 advert) makes hacoord master after Master_Down_Interval.
func TestKeepalivedMasterHacoordBackup(t *testing.T) {
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			l := newLab(t, 2)
			ka := l.keepalived(t, 0, p.keepalivedConfig(51, 200))
			h := l.hacoord(t, 1, p.hacoordConfig(51, 100))
			ka.waitMaster(true, 2*p.masterDwn+margin)
			h.waitFor(t, margin, "hacoord follows keepalived", followsMaster(labAddr(0)))
			h.stayRole(t, election.Backup, 3*p.advert)
			st := h.e.Stats()
			if st.Accepted == 0 || st.DroppedTotal() != 0 {
				t.Fatalf("stats %+v: want keepalived's adverts accepted, none dropped", st)
			}
			killed := time.Now()
			ka.stop(syscall.SIGKILL)
			h.waitFor(t, p.masterDwn+margin, "hacoord master after keepalived died", isRole(election.Master))
			t.Logf("%s: hacoord master %s after SIGKILL of keepalived (Master_Down_Interval %s)", p.name, time.Since(killed), p.masterDwn)
		})
	}
}

// TestHacoordMasterKeepalivedBackup: hacoord (150) is master and keepalived (100) stays backup, so
// it accepts our adverts. A priority change hands mastership over and back (both preempt), and
// stopping hacoord (priority-0 advert) makes keepalived master after its Skew_Time.
func TestHacoordMasterKeepalivedBackup(t *testing.T) {
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			l := newLab(t, 2)
			h := l.hacoord(t, 0, p.hacoordConfig(51, 150))
			h.waitFor(t, p.masterDwn+margin, "hacoord master", isRole(election.Master))
			ka := l.keepalived(t, 1, p.keepalivedConfig(51, 100))
			ka.stayBackup(2*p.masterDwn + p.advert)

			// vrrp_script-like weight: our priority drops under keepalived's, which preempts us.
			h.e.SetPriority(50)
			d := ka.waitMaster(true, p.masterDwn+margin)
			h.waitFor(t, margin, "hacoord follows keepalived", followsMaster(labAddr(1)))
			t.Logf("%s: keepalived preempted %s after our priority dropped", p.name, d)
			h.e.SetPriority(150)
			h.waitFor(t, p.masterDwn+margin, "hacoord preempts back", isRole(election.Master))
			ka.waitMaster(false, margin)

			stopped := time.Now()
			h.stop(t)
			ka.waitMaster(true, margin)
			t.Logf("%s: keepalived master %s after hacoord's priority-0 advert", p.name, time.Since(stopped))
			if st := h.e.Stats(); st.DroppedTotal() != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestKeepalivedNoPreempt: a higher-priority router with nopreempt does not take over from a
// running master, on either side.
func TestKeepalivedNoPreempt(t *testing.T) {
	p := profiles[1]
	t.Run("keepalived nopreempt", func(t *testing.T) {
		l := newLab(t, 2)
		h := l.hacoord(t, 0, p.hacoordConfig(51, 100))
		h.waitFor(t, p.masterDwn+margin, "hacoord master", isRole(election.Master))
		kc := p.keepalivedConfig(51, 200)
		kc.NoPreempt = true
		ka := l.keepalived(t, 1, kc)
		ka.stayBackup(3 * p.masterDwn)
		h.stayRole(t, election.Master, p.advert)
		// It takes over when we stop.
		h.stop(t)
		ka.waitMaster(true, margin)
	})
	t.Run("hacoord nopreempt", func(t *testing.T) {
		l := newLab(t, 2)
		ka := l.keepalived(t, 0, p.keepalivedConfig(51, 100))
		ka.waitMaster(true, 2*p.masterDwn+margin)
		hc := p.hacoordConfig(51, 200)
		hc.Preempt = false
		h := l.hacoord(t, 1, hc)
		h.waitFor(t, margin, "hacoord follows keepalived", followsMaster(labAddr(0)))
		h.stayRole(t, election.Backup, 3*p.masterDwn)
		ka.stop(syscall.SIGTERM) // keepalived sends priority 0 on shutdown
		h.waitFor(t, margin, "hacoord master after keepalived's priority 0", isRole(election.Master))
	})
}

// TestKeepalivedPreemptDelay: hacoord with a higher priority and preempt_delay 1s joins a group
// whose master is keepalived: it follows keepalived for the delay, then preempts it.
func TestKeepalivedPreemptDelay(t *testing.T) {
	p := profiles[1]
	l := newLab(t, 2)
	ka := l.keepalived(t, 0, p.keepalivedConfig(51, 100))
	ka.waitMaster(true, 2*p.masterDwn+margin)
	hc := p.hacoordConfig(51, 200)
	hc.PreemptDelay = time.Second
	start := time.Now()
	h := l.hacoord(t, 1, hc)
	h.waitFor(t, margin, "hacoord follows keepalived", followsMaster(labAddr(0)))
	h.waitFor(t, hc.PreemptDelay+p.masterDwn+margin, "hacoord preempts", isRole(election.Master))
	if d := time.Since(start); d < hc.PreemptDelay {
		t.Fatalf("preempted after %s, before the %s delay", d, hc.PreemptDelay)
	}
	ka.waitMaster(false, margin)
	t.Logf("preempted keepalived %s after start (delay %s)", time.Since(start), hc.PreemptDelay)
}

// TestKeepalivedMismatch: a wrong password (v2) or VRID never joins the group: both become master,
// and hacoord counts the dropped adverts by reason. keepalived has the lower priority, so it would
// step down at once if it accepted our adverts.
func TestKeepalivedMismatch(t *testing.T) {
	tests := []struct {
		name   string
		p      profile
		mod    func(*keepalivedConf)
		reason DropReason
	}{
		{"v2 auth", profiles[0], func(c *keepalivedConf) { c.AuthPass = "other" }, DropAuth},
		{"v2 no auth", profiles[0], func(c *keepalivedConf) { c.AuthPass = "" }, DropAuthType},
		{"v3 vrid", profiles[1], func(c *keepalivedConf) { c.VRID = 52 }, DropVRID},
		{"v3 addresses", profiles[1], func(c *keepalivedConf) { c.VIPs = labVIPs[:1] }, DropAddrCount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t, 2)
			kc := tt.p.keepalivedConfig(51, 100)
			tt.mod(&kc)
			ka := l.keepalived(t, 0, kc)
			ka.waitMaster(true, 2*tt.p.masterDwn+margin)
			h := l.hacoord(t, 1, tt.p.hacoordConfig(51, 200))
			h.waitFor(t, tt.p.masterDwn+margin, "hacoord master despite keepalived", isRole(election.Master))
			// keepalived drops our higher-priority adverts just the same: it stays master.
			ka.stay(true, 3*tt.p.advert)
			if st := h.e.Stats(); st.Dropped[tt.reason] == 0 || st.Accepted != 0 {
				t.Fatalf("stats %+v: want drops counted as %s, none accepted", st, tt.reason)
			}
		})
	}
}

// TestKeepalivedUnicast: unicast peers (version 3, whose checksum covers the unicast destination).
func TestKeepalivedUnicast(t *testing.T) {
	p := profiles[1]
	l := newLab(t, 2)
	kc := p.keepalivedConfig(51, 200)
	kc.UnicastPeers = []netip.Addr{labAddr(1)}
	ka := l.keepalived(t, 0, kc)
	hc := p.hacoordConfig(51, 100)
	hc.UnicastPeers = []netip.Addr{labAddr(0)}
	h := l.hacoord(t, 1, hc)
	ka.waitMaster(true, 2*p.masterDwn+margin)
	h.waitFor(t, margin, "hacoord follows keepalived", followsMaster(labAddr(0)))
	h.stayRole(t, election.Backup, 5*p.advert)
	ka.stop(syscall.SIGKILL)
	h.waitFor(t, p.masterDwn+margin, "hacoord master", isRole(election.Master))
	if st := h.e.Stats(); st.DroppedTotal() != 0 || st.Accepted == 0 {
		t.Fatalf("stats %+v", st)
	}
}
