package vrrp

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

var (
	addrA  = netip.MustParseAddr("192.0.2.1")
	addrB  = netip.MustParseAddr("192.0.2.2")
	addrC  = netip.MustParseAddr("192.0.2.3")
	t0     = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	testVI = []netip.Prefix{netip.MustParsePrefix("192.0.2.100/24"), netip.MustParsePrefix("192.0.2.101/24")}
)

func testConfig(version int) Config {
	c := DefaultConfig()
	c.Interface, c.VRID, c.Version, c.VIPs = "eth0", 51, version, testVI
	return c
}

// harness steps one Machine and remembers the outputs of the last step.
type harness struct {
	t   *testing.T
	m   *Machine
	cfg Config
	out []Output
}

func newHarness(t *testing.T, cfg Config, self netip.Addr) *harness {
	t.Helper()
	m, err := NewMachine(cfg, self)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, m: m, cfg: cfg}
}

func (h *harness) step(at time.Duration, ev Event) []Output {
	h.out = h.m.Step(t0.Add(at), ev)
	return h.out
}

// advert builds a valid advert of h's virtual router from src with prio; mod may alter the packet.
func (h *harness) advert(src netip.Addr, prio int, mod ...func(*Packet)) Received {
	h.t.Helper()
	p := Packet{Version: uint8(h.cfg.Version), Type: 1, VRID: uint8(h.cfg.VRID), Priority: uint8(prio),
		AdvertInt: h.cfg.advertField(), Addresses: h.cfg.addresses()}
	if h.cfg.AuthPass != "" {
		p.AuthType, p.AuthData = AuthSimple, AuthPassData(h.cfg.AuthPass)
	}
	for _, f := range mod {
		f(&p)
	}
	b, err := p.Marshal(src, MulticastGroup)
	if err != nil {
		h.t.Fatal(err)
	}
	return Received{Src: src, Dst: MulticastGroup, TTL: 255, Data: b}
}

func (h *harness) wantState(s RouterState) {
	h.t.Helper()
	if got := h.m.State(); got != s {
		h.t.Fatalf("state %s, want %s (last outputs %+v)", got, s, h.out)
	}
}

// sent returns the priorities of the adverts in the last step's outputs.
func (h *harness) sent() []int {
	var p []int
	for _, o := range h.out {
		if s, ok := o.(Send); ok {
			p = append(p, int(s.Packet.Priority))
		}
	}
	return p
}

func (h *harness) wantSent(prios ...int) {
	h.t.Helper()
	got := h.sent()
	if len(got) != len(prios) {
		h.t.Fatalf("sent priorities %v, want %v", got, prios)
	}
	for i := range got {
		if got[i] != prios[i] {
			h.t.Fatalf("sent priorities %v, want %v", got, prios)
		}
	}
}

func (h *harness) wantTimer(at time.Duration) {
	h.t.Helper()
	if got := h.m.NextTimer(); !got.Equal(t0.Add(at)) {
		h.t.Fatalf("next timer at %s, want %s", got.Sub(t0), at)
	}
}

func TestMasterDownInterval(t *testing.T) {
	tests := []struct {
		version int
		prio    int
		advert  time.Duration
		learned time.Duration // v3: interval of the master's adverts
		skew    time.Duration
		down    time.Duration
	}{
		// RFC 5798 §6.1: Skew_Time = ((256-Priority) * Master_Adver_Interval) / 256.
		{3, 100, time.Second, 0, 609375 * time.Microsecond, 3609375 * time.Microsecond},
		{3, 254, time.Second, 0, 7812500, 3007812500},
		{3, 100, time.Second, 500 * time.Millisecond, 304687500, 1804687500},
		// RFC 3768 §6.1: Skew_Time = (256-Priority)/256 seconds, whatever the interval.
		{2, 100, time.Second, 0, 609375 * time.Microsecond, 3609375 * time.Microsecond},
		{2, 1, 3 * time.Second, 0, 996093750, 9996093750},
	}
	for _, tt := range tests {
		cfg := testConfig(tt.version)
		cfg.Priority, cfg.AdvertInt = tt.prio, tt.advert
		h := newHarness(t, cfg, addrA)
		h.step(0, Startup{})
		if tt.learned != 0 {
			h.step(time.Second, h.advert(addrB, 255, func(p *Packet) { p.AdvertInt = uint16(tt.learned / (10 * time.Millisecond)) }))
			if h.m.MasterAdverInterval() != tt.learned {
				t.Errorf("v%d: Master_Adver_Interval %s, want the master's %s", tt.version, h.m.MasterAdverInterval(), tt.learned)
			}
		}
		if got := h.m.SkewTime(); got != tt.skew {
			t.Errorf("v%d prio %d: skew %s, want %s", tt.version, tt.prio, got, tt.skew)
		}
		if got := h.m.MasterDownInterval(); got != tt.down {
			t.Errorf("v%d prio %d: master down %s, want %s", tt.version, tt.prio, got, tt.down)
		}
	}
}

func TestStartupAndMasterDownTimer(t *testing.T) {
	for _, v := range []int{2, 3} {
		h := newHarness(t, testConfig(v), addrA)
		h.wantState(Initialize)
		h.step(0, Startup{})
		h.wantState(Backup)
		mdi := h.m.MasterDownInterval()
		h.wantTimer(mdi)
		h.step(mdi-time.Millisecond, Tick{})
		h.wantState(Backup)
		h.wantSent()
		h.step(mdi, Tick{})
		h.wantState(Master)
		h.wantSent(100)
		if h.m.MasterAddr() != addrA {
			t.Fatalf("master %s, want self", h.m.MasterAddr())
		}
		// RFC 5798 §6.4.3: an advert every Advertisement_Interval.
		h.wantTimer(mdi + time.Second)
		h.step(mdi+time.Second, Tick{})
		h.wantSent(100)
		h.wantTimer(mdi + 2*time.Second)
		if s := h.m.Stats(); s.Transitions != 2 || s.Sent != 2 {
			t.Fatalf("stats %+v", s)
		}
	}
}

func TestOwnerBecomesMasterAtOnce(t *testing.T) {
	cfg := testConfig(3)
	cfg.Priority = 255
	h := newHarness(t, cfg, addrA)
	h.step(0, Startup{})
	h.wantState(Master)
	h.wantSent(255)
	// An owner keeps 255 through SetPriority's clamp.
	h.step(time.Millisecond, SetPriority{Priority: 300})
	if h.m.Priority() != 255 {
		t.Fatalf("priority %d", h.m.Priority())
	}
}

func TestBackupFollowsHigherMaster(t *testing.T) {
	h := newHarness(t, testConfig(3), addrA)
	h.step(0, Startup{})
	for i := 1; i <= 10; i++ {
		at := time.Duration(i) * time.Second
		out := h.step(at, h.advert(addrB, 150))
		h.wantState(Backup)
		h.wantTimer(at + h.m.MasterDownInterval())
		if i == 1 {
			tr, ok := out[0].(Transition)
			if !ok || tr.Master != addrB || tr.From != Backup || tr.To != Backup {
				t.Fatalf("first advert: outputs %+v, want master change to %s", out, addrB)
			}
		} else if len(out) != 0 {
			t.Fatalf("repeated advert: outputs %+v", out)
		}
	}
	if h.m.MasterAddr() != addrB {
		t.Fatalf("master %s", h.m.MasterAddr())
	}
}

func TestPreempt(t *testing.T) {
	cfg := testConfig(3)
	cfg.Priority = 200
	h := newHarness(t, cfg, addrA)
	h.step(0, Startup{})
	mdi := h.m.MasterDownInterval()
	// RFC 5798 §6.4.2: with Preempt_Mode a lower-priority advert is discarded: the timer keeps running.
	h.step(time.Second, h.advert(addrB, 100))
	h.step(2*time.Second, h.advert(addrB, 100))
	h.wantTimer(mdi)
	h.step(mdi, Tick{})
	h.wantState(Master)
	// keepalived: a master answers a lower-priority advert at once.
	h.step(mdi+10*time.Millisecond, h.advert(addrB, 100))
	h.wantState(Master)
	h.wantSent(200)
	h.wantTimer(mdi + 10*time.Millisecond + time.Second)
}

func TestNoPreempt(t *testing.T) {
	cfg := testConfig(3)
	cfg.Priority, cfg.Preempt = 200, false
	h := newHarness(t, cfg, addrA)
	h.step(0, Startup{})
	for i := 1; i <= 10; i++ {
		at := time.Duration(i) * time.Second
		h.step(at, h.advert(addrB, 100))
		h.step(at, Tick{})
		h.wantState(Backup)
		h.wantTimer(at + h.m.MasterDownInterval())
	}
	// It takes over only when the lower-priority master stops.
	h.step(11*time.Second, h.advert(addrB, 0))
	h.wantTimer(11*time.Second + h.m.SkewTime())
	h.step(11*time.Second+h.m.SkewTime(), Tick{})
	h.wantState(Master)
}

func TestPreemptDelay(t *testing.T) {
	cfg := testConfig(3)
	cfg.Priority, cfg.PreemptDelay = 200, 5*time.Second
	h := newHarness(t, cfg, addrA)
	h.step(0, Startup{})
	// keepalived: the delay starts at startup; until it ends, lower-priority adverts are accepted.
	for i := 1; i < 5; i++ {
		at := time.Duration(i) * time.Second
		h.step(at, h.advert(addrB, 100))
		h.wantTimer(at + h.m.MasterDownInterval())
	}
	// From 5s on, they are discarded: master one Master_Down_Interval after the last accepted one.
	last := 4*time.Second + h.m.MasterDownInterval()
	h.step(5*time.Second, h.advert(addrB, 100))
	h.step(6*time.Second, h.advert(addrB, 100))
	h.wantTimer(last)
	h.step(last, Tick{})
	h.wantState(Master)

	// A higher-priority master stops the delay; a later lower-priority one starts it anew.
	h = newHarness(t, cfg, addrA)
	h.step(0, Startup{})
	h.step(1*time.Second, h.advert(addrB, 250))
	at := 20 * time.Second
	for i := 0; i < 5; i++ {
		h.step(at, h.advert(addrB, 100))
		h.wantTimer(at + h.m.MasterDownInterval())
		at += time.Second
	}
	// at = 25s: the delay started at 20s has ended, so this one is discarded.
	h.step(at, h.advert(addrB, 100))
	h.wantTimer(at - time.Second + h.m.MasterDownInterval())
}

func TestTieBreakOnPrimaryAddress(t *testing.T) {
	cfg := testConfig(3)
	h := newHarness(t, cfg, addrB)
	h.step(0, Startup{})
	h.step(h.m.MasterDownInterval(), Tick{})
	h.wantState(Master)
	at := h.m.MasterDownInterval() + 10*time.Millisecond
	// Equal priority from a lower address: we stay master and assert ourselves.
	h.step(at, h.advert(addrA, 100))
	h.wantState(Master)
	h.wantSent(100)
	// Equal priority from a higher address: RFC 5798 §6.4.3, we become backup.
	h.step(at, h.advert(addrC, 100))
	h.wantState(Backup)
	h.wantSent()
	if h.m.MasterAddr() != addrC {
		t.Fatalf("master %s, want %s", h.m.MasterAddr(), addrC)
	}
	h.wantTimer(at + h.m.MasterDownInterval())
}

func TestMasterStepsDownForHigherPriority(t *testing.T) {
	cfg := testConfig(3)
	h := newHarness(t, cfg, addrC)
	h.step(0, Startup{})
	h.step(h.m.MasterDownInterval(), Tick{})
	at := h.m.MasterDownInterval() + time.Millisecond
	out := h.step(at, h.advert(addrA, 101, func(p *Packet) { p.AdvertInt = 200 }))
	h.wantState(Backup)
	tr := out[len(out)-1].(Transition)
	if tr.From != Master || tr.To != Backup || tr.Master != addrA {
		t.Fatalf("transition %+v", tr)
	}
	if h.m.MasterAdverInterval() != 2*time.Second {
		t.Fatalf("Master_Adver_Interval %s not learned from the new master", h.m.MasterAdverInterval())
	}
}

func TestPriorityZero(t *testing.T) {
	cfg := testConfig(3)
	h := newHarness(t, cfg, addrA)
	h.step(0, Startup{})
	h.step(h.m.MasterDownInterval(), Tick{})
	h.wantState(Master)
	// Shutdown: a priority-0 advert, back to Initialize.
	h.step(10*time.Second, Shutdown{})
	h.wantSent(0)
	h.wantState(Initialize)
	if !h.m.NextTimer().IsZero() {
		t.Fatal("timer running after shutdown")
	}

	// A backup hearing priority 0 takes over after Skew_Time, not Master_Down_Interval.
	h = newHarness(t, cfg, addrB)
	h.step(0, Startup{})
	h.step(time.Second, h.advert(addrA, 150))
	h.step(2*time.Second, h.advert(addrA, 0))
	h.wantTimer(2*time.Second + h.m.SkewTime())
	h.step(2*time.Second+h.m.SkewTime(), Tick{})
	h.wantState(Master)
	// A master hearing priority 0 sends an advert at once.
	h.step(3*time.Second, h.advert(addrC, 0))
	h.wantSent(100)
	h.wantState(Master)
}

func TestEligibility(t *testing.T) {
	h := newHarness(t, testConfig(3), addrA)
	h.step(0, Startup{})
	h.step(h.m.MasterDownInterval(), Tick{})
	h.wantState(Master)
	h.step(5*time.Second, SetEligible{OK: false})
	h.wantSent(0)
	h.wantState(Fault)
	if !h.m.NextTimer().IsZero() {
		t.Fatal("a faulty router runs a timer")
	}
	// While in Fault it follows the master but never takes over.
	h.step(6*time.Second, h.advert(addrB, 50))
	h.wantState(Fault)
	if h.m.MasterAddr() != addrB {
		t.Fatalf("master %s", h.m.MasterAddr())
	}
	h.step(7*time.Second, SetEligible{OK: true})
	h.wantState(Backup)
	h.wantTimer(7*time.Second + h.m.MasterDownInterval())
	// Ineligible before startup: straight to Fault.
	h = newHarness(t, testConfig(3), addrA)
	h.step(0, SetEligible{OK: false})
	h.step(0, Startup{})
	h.wantState(Fault)
}

func TestSetPriorityAndYield(t *testing.T) {
	h := newHarness(t, testConfig(3), addrA)
	h.step(0, Startup{})
	mdi := h.m.MasterDownInterval()
	h.step(mdi, Tick{})
	h.step(mdi, SetPriority{Priority: 0})
	if h.m.Priority() != 1 {
		t.Fatalf("priority %d, want clamped to 1", h.m.Priority())
	}
	h.step(mdi, SetPriority{Priority: 255})
	if h.m.Priority() != 254 {
		t.Fatalf("priority %d, want clamped to 254", h.m.Priority())
	}
	h.step(mdi, SetPriority{Priority: 42})
	h.step(mdi+time.Second, Tick{})
	h.wantSent(42)
	h.step(mdi+1500*time.Millisecond, Yield{})
	h.wantSent(0)
	h.wantState(Backup)
	h.wantTimer(mdi + 1500*time.Millisecond + h.m.MasterDownInterval())
}

func TestReceiveChecksDropAndCount(t *testing.T) {
	cfg := testConfig(2)
	cfg.AuthPass = "secret"
	h := newHarness(t, cfg, addrA)
	h.step(0, Startup{})
	mdi := h.m.MasterDownInterval()
	valid := h.advert(addrB, 200)
	reencode := func(mod func(*Packet)) Received { return h.advert(addrB, 200, mod) }
	tests := []struct {
		name string
		r    Received
		want DropReason
	}{
		{"ttl 254", Received{Src: addrB, Dst: MulticastGroup, TTL: 254, Data: valid.Data}, DropTTL},
		{"truncated", Received{Src: addrB, Dst: MulticastGroup, TTL: 255, Data: valid.Data[:10]}, DropLength},
		{"version 3", reencode(func(p *Packet) { p.Version, p.AuthType, p.AuthData = 3, 0, [8]byte{} }), DropVersion},
		{"version 5", func() Received { r := valid; r.Data = append([]byte{0x51}, valid.Data[1:]...); return r }(), DropVersion},
		{"type 2", reencode(func(p *Packet) { p.Type = 2 }), DropType},
		{"checksum", func() Received {
			r := valid
			r.Data = append([]byte(nil), valid.Data...)
			r.Data[7] ^= 1
			return r
		}(), DropChecksum},
		{"vrid", reencode(func(p *Packet) { p.VRID = 52 }), DropVRID},
		{"advert int", reencode(func(p *Packet) { p.AdvertInt = 2 }), DropAdvertInt},
		{"no auth", reencode(func(p *Packet) { p.AuthType, p.AuthData = 0, [8]byte{} }), DropAuthType},
		{"wrong password", reencode(func(p *Packet) { p.AuthData = AuthPassData("secreT") }), DropAuth},
		{"one address", reencode(func(p *Packet) { p.Addresses = p.Addresses[:1] }), DropAddrCount},
		{"other address", reencode(func(p *Packet) { p.Addresses[1] = netip.MustParseAddr("192.0.2.102") }), DropAddrList},
	}
	want := map[DropReason]uint64{}
	for i, tt := range tests {
		at := time.Duration(i+1) * 100 * time.Millisecond
		if out := h.step(at, tt.r); len(out) != 0 {
			t.Errorf("%s: acted on a bad packet: %+v", tt.name, out)
		}
		want[tt.want]++
		if got := h.m.Stats().Dropped; got[tt.want] != want[tt.want] {
			t.Errorf("%s: dropped %v, want %s counted", tt.name, got, tt.want)
		}
		h.wantTimer(mdi) // never acted on
	}
	if s := h.m.Stats(); s.Accepted != 0 || s.DroppedTotal() != uint64(len(tests)) {
		t.Fatalf("stats %+v", s)
	}
	// Address order does not matter, and the owner may list other addresses (RFC 3768 §7.1).
	h.step(2*time.Second, reencode(func(p *Packet) { p.Addresses[0], p.Addresses[1] = p.Addresses[1], p.Addresses[0] }))
	h.step(2*time.Second, h.advert(addrB, 255, func(p *Packet) { p.Addresses[1] = netip.MustParseAddr("192.0.2.102") }))
	// Our own adverts are ignored.
	h.step(2*time.Second, h.advert(addrA, 200))
	if s := h.m.Stats(); s.Accepted != 2 || s.Own != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestReceiveChecksUnicastAndV3(t *testing.T) {
	cfg := testConfig(3)
	cfg.UnicastPeers = []netip.Addr{addrB}
	h := newHarness(t, cfg, addrA)
	h.step(0, Startup{})
	mk := func(src netip.Addr, mod func(*Packet)) Received {
		p := Packet{Version: 3, Type: 1, VRID: 51, Priority: 100, AdvertInt: 100, Addresses: cfg.addresses()}
		if mod != nil {
			mod(&p)
		}
		b, err := p.Marshal(src, addrA)
		if err != nil {
			t.Fatal(err)
		}
		return Received{Src: src, Dst: addrA, TTL: 255, Data: b}
	}
	h.step(time.Millisecond, mk(addrC, nil))
	h.step(time.Millisecond, mk(addrB, func(p *Packet) { p.AdvertInt = 0 }))
	// A unicast v3 checksum computed for the multicast group does not verify.
	bad := mk(addrB, nil)
	bad.Dst = MulticastGroup
	h.step(time.Millisecond, bad)
	h.step(time.Millisecond, mk(addrB, nil))
	s := h.m.Stats()
	if s.Dropped[DropUnknownPeer] != 1 || s.Dropped[DropAdvertInt] != 1 || s.Dropped[DropChecksum] != 1 || s.Accepted != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := testConfig(3)
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no interface", func(c *Config) { c.Interface = "" }, "interface"},
		{"vrid 0", func(c *Config) { c.VRID = 0 }, "vrid 0"},
		{"vrid 256", func(c *Config) { c.VRID = 256 }, "vrid 256"},
		{"priority 0", func(c *Config) { c.Priority = 0 }, "priority 0"},
		{"priority 256", func(c *Config) { c.Priority = 256 }, "priority 256"},
		{"version 4", func(c *Config) { c.Version = 4 }, "vrrp-version 4"},
		{"v3 5ms", func(c *Config) { c.AdvertInt = 5 * time.Millisecond }, "advert-int"},
		{"v3 15ms", func(c *Config) { c.AdvertInt = 15 * time.Millisecond }, "advert-int"},
		{"v3 41s", func(c *Config) { c.AdvertInt = 41 * time.Second }, "advert-int"},
		// 3 x 90ms - 100ms margin = 170ms < two adverts: one late timer would fence a healthy master.
		{"v3 90ms", func(c *Config) { c.AdvertInt = 90 * time.Millisecond }, "advert-int 90ms: a master may hold the VIPs for 3 x advert-int - 100ms margin = 170ms"},
		{"v3 10ms", func(c *Config) { c.AdvertInt = 10 * time.Millisecond }, "use at least 100ms"},
		{"v2 1.5s", func(c *Config) { c.Version, c.AdvertInt = 2, 1500*time.Millisecond }, "whole seconds"},
		{"v2 256s", func(c *Config) { c.Version, c.AdvertInt = 2, 256*time.Second }, "advert-int"},
		{"auth with v3", func(c *Config) { c.AuthPass = "x" }, "auth-pass needs vrrp-version 2"},
		{"auth too long", func(c *Config) { c.Version, c.AuthPass = 2, "123456789" }, "auth-pass is 9 bytes"},
		{"preempt delay with nopreempt", func(c *Config) { c.Preempt, c.PreemptDelay = false, time.Second }, "needs preempt"},
		{"preempt delay too long", func(c *Config) { c.PreemptDelay = 1001 * time.Second }, "preempt-delay"},
		{"ipv6 peer", func(c *Config) { c.UnicastPeers = []netip.Addr{netip.MustParseAddr("2001:db8::1")} }, "unicast-peer"},
		{"ipv6 vip", func(c *Config) { c.VIPs = []netip.Prefix{netip.MustParsePrefix("2001:db8::1/64")} }, "vip"},
		{"duplicate vip", func(c *Config) { c.VIPs = append(c.VIPs, c.VIPs[0]) }, "twice"},
	}
	for _, tt := range tests {
		c := testConfig(3)
		tt.mod(&c)
		err := c.Validate()
		if err == nil || !contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate = %v, want mention of %q", tt.name, err, tt.want)
		}
	}
	v2 := testConfig(2)
	v2.AuthPass, v2.AdvertInt = "12345678", 255*time.Second
	if err := v2.Validate(); err != nil {
		t.Errorf("v2 max: %v", err)
	}
}

// Every advert interval Validate accepts leaves the master a VIP deadline of at least two adverts
// after each advert sent, and 100ms (LocalConfig's) is the shortest.
func TestConfigValidateValidityCoversTwoAdverts(t *testing.T) {
	for _, v := range []int{2, 3} {
		shortest := time.Duration(0)
		for a := 10 * time.Millisecond; a <= MaxAdvertIntV2; a += 10 * time.Millisecond {
			c := testConfig(v)
			c.AdvertInt = a
			if c.Validate() != nil {
				continue
			}
			if shortest == 0 {
				shortest = a
			}
			if c.validity() < 2*a {
				t.Fatalf("v%d advert-int %s accepted with validity %s, under two adverts", v, a, c.validity())
			}
		}
		want := map[int]time.Duration{2: time.Second, 3: 100 * time.Millisecond}[v]
		if shortest != want {
			t.Errorf("v%d: shortest accepted advert-int %s, want %s", v, shortest, want)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// A router that yielded does not preempt the lower-priority router that took over; once it has been
// master again (the other stopped), it preempts as before.
func TestYieldedRouterDoesNotPreempt(t *testing.T) {
	cfg := testConfig(3)
	cfg.Priority = 200
	h := newHarness(t, cfg, addrA)
	h.step(0, Startup{})
	mdi := h.m.MasterDownInterval()
	h.step(mdi, Tick{})
	h.wantState(Master)
	h.step(mdi, Yield{})
	h.wantState(Backup)
	h.wantSent(0)
	for i := 1; i <= 5; i++ {
		at := mdi + time.Duration(i)*time.Second
		h.step(at, h.advert(addrB, 100))
		h.step(at, Tick{})
		h.wantState(Backup)
	}
	// B stops: A takes over, and from then on preempts again.
	at := mdi + 6*time.Second
	h.step(at, h.advert(addrB, 0))
	h.step(at+h.m.SkewTime(), Tick{})
	h.wantState(Master)
	h.step(at+time.Second, h.advert(addrB, 100))
	h.wantState(Master)
}
