package vrrp

import (
	"maps"
	"net/netip"
	"slices"
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

// IPv6 routers send from their link-local address (RFC 5798 §5.1.2.1).
var (
	ll1     = netip.MustParseAddr("fe80::1")
	ll2     = netip.MustParseAddr("fe80::2")
	ll3     = netip.MustParseAddr("fe80::3")
	testVI6 = []netip.Prefix{netip.MustParsePrefix("fd00::100/64"), netip.MustParsePrefix("fd00::101/64")}
)

// testConfig6 is a version 3 router of IPv6 VIPs.
func testConfig6() Config {
	c := testConfig(3)
	c.VIPs = testVI6
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

// newMaster is a harness on addrA at priority 200 (VRRPv3) that has become master through its
// Master_Down_Interval, which it returns.
func newMaster(t *testing.T) (*harness, time.Duration) {
	t.Helper()
	cfg := testConfig(3)
	cfg.Priority = 200
	h := newHarness(t, cfg, addrA)
	h.step(0, Startup{})
	mdi := h.m.MasterDownInterval()
	h.step(mdi, Tick{})
	h.wantState(Master)
	return h, mdi
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
	group := h.cfg.multicastGroup()
	b, err := p.Marshal(src, group)
	if err != nil {
		h.t.Fatal(err)
	}
	return Received{Src: src, Dst: group, TTL: 255, Data: b}
}

// acted returns the outputs of the last step other than warnings and reports: what the machine
// did.
func (h *harness) acted() []Output {
	var out []Output
	for _, o := range h.out {
		switch o.(type) {
		case MismatchWarning, MasterBeside:
		default:
			out = append(out, o)
		}
	}
	return out
}

// warnings returns the MismatchWarnings of the last step.
func (h *harness) warnings() []Mismatch {
	var w []Mismatch
	for _, o := range h.out {
		if mw, ok := o.(MismatchWarning); ok {
			w = append(w, mw.Mismatch)
		}
	}
	return w
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
		name     string
		r        Received
		want     DropReason
		mismatch MismatchReason // an advert for our VRID from a router configured otherwise
	}{
		{"ttl 254", Received{Src: addrB, Dst: MulticastGroup, TTL: 254, Data: valid.Data}, DropTTL, ""},
		{"truncated", Received{Src: addrB, Dst: MulticastGroup, TTL: 255, Data: valid.Data[:10]}, DropLength, ""},
		{"version 3", reencode(func(p *Packet) { p.Version, p.AuthType, p.AuthData = 3, 0, [8]byte{} }), DropVersion, MismatchVersion},
		{"version 5", func() Received { r := valid; r.Data = append([]byte{0x51}, valid.Data[1:]...); return r }(), DropVersion, ""},
		{"type 2", reencode(func(p *Packet) { p.Type = 2 }), DropType, ""},
		{"checksum", func() Received {
			r := valid
			r.Data = append([]byte(nil), valid.Data...)
			r.Data[7] ^= 1
			return r
		}(), DropChecksum, ""},
		{"vrid", reencode(func(p *Packet) { p.VRID = 52 }), DropVRID, ""},
		{"version 3 of another vrid", reencode(func(p *Packet) { p.Version, p.VRID, p.AuthType, p.AuthData = 3, 52, 0, [8]byte{} }), DropVRID, ""},
		{"advert int", reencode(func(p *Packet) { p.AdvertInt = 2 }), DropAdvertInt, MismatchAdvertInt},
		{"no auth", reencode(func(p *Packet) { p.AuthType, p.AuthData = 0, [8]byte{} }), DropAuthType, MismatchAuth},
		{"wrong password", reencode(func(p *Packet) { p.AuthData = AuthPassData("secreT") }), DropAuth, MismatchAuth},
		{"one address", reencode(func(p *Packet) { p.Addresses = p.Addresses[:1] }), DropAddrCount, MismatchVIPs},
		{"other address", reencode(func(p *Packet) { p.Addresses[1] = netip.MustParseAddr("192.0.2.102") }), DropAddrList, MismatchVIPs},
		{"IPv6 addresses", func() Received {
			p := Packet{Version: 2, Type: 1, VRID: 51, Priority: 200, AdvertInt: 1, AuthType: AuthSimple, AuthData: AuthPassData("secret"),
				Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.100")}}
			b, _ := p.Marshal(addrB, MulticastGroup)
			return Received{Src: addrB, Dst: MulticastGroup, TTL: 255, Data: append(b[:12:12], make([]byte, 20)...)}
		}(), DropLength, ""},
	}
	want := map[DropReason]uint64{}
	wantMM := map[MismatchReason]uint64{}
	for i, tt := range tests {
		at := time.Duration(i+1) * 100 * time.Millisecond
		if h.step(at, tt.r); len(h.acted()) != 0 {
			t.Errorf("%s: acted on a bad packet: %+v", tt.name, h.out)
		}
		want[tt.want]++
		if got := h.m.Stats().Dropped; got[tt.want] != want[tt.want] {
			t.Errorf("%s: dropped %v, want %s counted", tt.name, got, tt.want)
		}
		if tt.mismatch != "" {
			wantMM[tt.mismatch]++
		}
		if got := h.m.Stats().Mismatched; !maps.Equal(got, wantMM) {
			t.Errorf("%s: mismatched %v, want %v", tt.name, got, wantMM)
		}
		h.wantTimer(mdi) // never acted on
	}
	if s := h.m.Stats(); s.Accepted != 0 || s.DroppedTotal() != uint64(len(tests)) || s.Received != uint64(len(tests)) {
		t.Fatalf("stats %+v", s)
	}
	// Address order does not matter, and the owner may list other addresses (RFC 3768 §7.1).
	h.step(2*time.Second, reencode(func(p *Packet) { p.Addresses[0], p.Addresses[1] = p.Addresses[1], p.Addresses[0] }))
	h.step(2*time.Second, h.advert(addrB, 255, func(p *Packet) { p.Addresses[1] = netip.MustParseAddr("192.0.2.102") }))
	// Our own adverts are ignored.
	h.step(2*time.Second, h.advert(addrA, 200))
	if s := h.m.Stats(); s.Accepted != 2 || s.Own != 1 || s.Received != s.Accepted+s.Own+s.DroppedTotal() {
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
		{"ipv6 vip with v2", func(c *Config) {
			c.Version, c.AdvertInt, c.VIPs = 2, time.Second, []netip.Prefix{netip.MustParsePrefix("2001:db8::1/64")}
		}, "IPv6 needs vrrp-version 3"},
		{"ipv4 and ipv6 vips", func(c *Config) { c.VIPs = append(c.VIPs, netip.MustParsePrefix("fd00::100/64")) }, "IPv4 and IPv6 VIPs in one virtual router"},
		{"ipv6 and ipv4 vips", func(c *Config) { c.VIPs = append([]netip.Prefix{netip.MustParsePrefix("fd00::100/64")}, c.VIPs...) }, "IPv4 and IPv6 VIPs in one virtual router"},
		{"ipv6 unicast", func(c *Config) {
			c.VIPs, c.UnicastPeers = []netip.Prefix{netip.MustParsePrefix("fd00::100/64")}, []netip.Addr{netip.MustParseAddr("fd00::2")}
		}, "unicast peers are supported with IPv4 VIPs only"},
		{"ipv4-mapped vip", func(c *Config) { c.VIPs = []netip.Prefix{netip.MustParsePrefix("::ffff:192.0.2.100/120")} }, "not IPv4-mapped"},
		{"multicast vip", func(c *Config) { c.VIPs = []netip.Prefix{netip.MustParsePrefix("ff02::12/128")} }, "unicast"},
		{"invalid vip", func(c *Config) { c.VIPs = []netip.Prefix{{}} }, "vip invalid Prefix"},
		{"duplicate vip", func(c *Config) { c.VIPs = append(c.VIPs, c.VIPs[0]) }, "twice"},
		{"duplicate ipv6 vip", func(c *Config) {
			c.VIPs = []netip.Prefix{netip.MustParsePrefix("fd00::100/64"), netip.MustParsePrefix("fd00::100/128")}
		}, "twice"},
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
	v6 := testConfig6()
	if err := v6.Validate(); err != nil {
		t.Errorf("IPv6: %v", err)
	}
	if !v6.ipv6() || v6.multicastGroup() != MulticastGroup6 || ok.ipv6() || ok.multicastGroup() != MulticastGroup {
		t.Errorf("families: IPv6 config ipv6=%v group %s; IPv4 config ipv6=%v group %s", v6.ipv6(), v6.multicastGroup(), ok.ipv6(), ok.multicastGroup())
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
	h, mdi := newMaster(t)
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

// A hacoord router (version 3, the default) next to a keepalived one left at its default (version
// 2) and one with another VIP list: every advert is counted, the first from each source is warned
// about at once (before this router's Master_Down_Interval can make it master beside them), and
// then at most once per MismatchWarnInterval for each reason and source.
func TestMismatchWarningsRateLimited(t *testing.T) {
	h := newHarness(t, testConfig(3), addrA)
	h.step(0, Startup{})
	v2 := func(at time.Duration) Received {
		p := Packet{Version: 2, Type: 1, VRID: 51, Priority: 100, AdvertInt: 1, Addresses: h.cfg.addresses()}
		b, err := p.Marshal(addrB, MulticastGroup)
		if err != nil {
			t.Fatal(err)
		}
		return Received{Src: addrB, Dst: MulticastGroup, TTL: TTL, Data: b}
	}
	otherVIPs := func() Received {
		return h.advert(addrC, 100, func(p *Packet) { p.Addresses = []netip.Addr{netip.MustParseAddr("192.0.2.200")} })
	}
	var warnedB, warnedC []time.Duration
	end := 150 * time.Second
	for at := time.Duration(0); at <= end; at += time.Second {
		h.step(at, v2(at))
		for _, w := range h.warnings() {
			if w.Reason != MismatchVersion || w.Source != addrB || !w.Dropped ||
				!strings.Contains(w.Detail, "VRRP version 2, we speak version 3") {
				t.Fatalf("warning %+v, want version 2 from %s", w, addrB)
			}
			if w.Count != uint64(at/time.Second)+1 {
				t.Fatalf("at %s: warning counts %d adverts, want %d", at, w.Count, at/time.Second+1)
			}
			warnedB = append(warnedB, at)
		}
		if len(h.acted()) != 0 {
			t.Fatalf("acted on a version 2 advert: %+v", h.out)
		}
		h.step(at, Tick{})
		if at%(3*time.Second) == 0 {
			h.step(at, otherVIPs())
			for _, w := range h.warnings() {
				if w.Reason != MismatchVIPs || w.Source != addrC || w.Detail != "1 addresses [192.0.2.200], we expect 2: [192.0.2.100 192.0.2.101]" {
					t.Fatalf("warning %+v, want the VIP list from %s", w, addrC)
				}
				warnedC = append(warnedC, at)
			}
		}
	}
	// Nothing joined: the router became master after its Master_Down_Interval, beside them.
	h.wantState(Master)
	if want := []time.Duration{0, 60 * time.Second, 120 * time.Second}; !slices.Equal(warnedB, want) {
		t.Errorf("warnings about %s at %v, want %v", addrB, warnedB, want)
	}
	if want := []time.Duration{0, 60 * time.Second, 120 * time.Second}; !slices.Equal(warnedC, want) {
		t.Errorf("warnings about %s at %v, want %v", addrC, warnedC, want)
	}
	st := h.m.Stats()
	if st.Mismatched[MismatchVersion] != 151 || st.Mismatched[MismatchVIPs] != 51 || st.MismatchedTotal() != 202 || st.Accepted != 0 {
		t.Errorf("stats %+v: want 151 version and 51 vips mismatches", st)
	}
	mms := h.m.Mismatches()
	if len(mms) != 2 {
		t.Fatalf("mismatches %+v, want one per reason and source", mms)
	}
	// Sorted by reason: "version" before "vips".
	if m := mms[0]; m.Reason != MismatchVersion || m.Source != addrB || m.Count != 151 || !m.First.Equal(t0) || !m.Last.Equal(t0.Add(end)) {
		t.Errorf("version mismatch %+v", m)
	}
	if m := mms[1]; m.Reason != MismatchVIPs || m.Source != addrC || m.Count != 51 {
		t.Errorf("vips mismatch %+v", m)
	}
}

// A v2 password mismatch names no password; an interval mismatch names both intervals. Warnings
// are per reason: the same source gets one for each.
func TestMismatchDetails(t *testing.T) {
	cfg := testConfig(2)
	cfg.AuthPass = "secret"
	h := newHarness(t, cfg, addrA)
	h.step(0, Startup{})
	h.step(time.Second, h.advert(addrB, 100, func(p *Packet) { p.AuthData = AuthPassData("hunter2") }))
	h.step(2*time.Second, h.advert(addrB, 100, func(p *Packet) { p.AdvertInt = 3 }))
	h.step(3*time.Second, h.advert(addrB, 100, func(p *Packet) { p.AuthType, p.AuthData = AuthNone, [8]byte{} }))
	mms := h.m.Mismatches()
	if len(mms) != 2 {
		t.Fatalf("mismatches %+v", mms)
	}
	for _, m := range mms {
		if strings.Contains(m.Detail, "secret") || strings.Contains(m.Detail, "hunter2") {
			t.Errorf("a password in %q", m.Detail)
		}
	}
	if m := mms[1]; m.Reason != MismatchAuth || m.Count != 2 || m.Detail != "auth type none, we expect PASS" {
		t.Errorf("auth mismatch %+v", m)
	}
	if m := mms[0]; m.Reason != MismatchAdvertInt || m.Detail != "advert interval 3s, ours is 1s (RFC 3768 §7.1: dropped)" || !m.Dropped {
		t.Errorf("advert-int mismatch %+v", m)
	}
}

// Version 3: a master with another interval is followed (RFC 5798 §6.4.2: Master_Adver_Interval is
// learned), and warned about once, as an accepted mismatch.
func TestMismatchAdvertIntV3Accepted(t *testing.T) {
	h := newHarness(t, testConfig(3), addrA)
	h.step(0, Startup{})
	for i := 1; i <= 5; i++ {
		h.step(time.Duration(i)*time.Second, h.advert(addrB, 150, func(p *Packet) { p.AdvertInt = 50 }))
		if w := h.warnings(); (i == 1) != (len(w) == 1) {
			t.Fatalf("advert %d: warnings %+v", i, w)
		}
	}
	h.wantState(Backup)
	if h.m.MasterAddr() != addrB || h.m.MasterAdverInterval() != 500*time.Millisecond {
		t.Fatalf("master %s with interval %s, want %s with 500ms", h.m.MasterAddr(), h.m.MasterAdverInterval(), addrB)
	}
	mms := h.m.Mismatches()
	if len(mms) != 1 || mms[0].Reason != MismatchAdvertInt || mms[0].Dropped || mms[0].Count != 5 ||
		mms[0].Detail != "advert interval 500ms, ours is 1s (accepted: RFC 5798 §6.4.2 backups learn the master's, so takeover times depend on which router is master)" {
		t.Fatalf("mismatches %+v", mms)
	}
	if st := h.m.Stats(); st.Accepted != 5 || st.DroppedTotal() != 0 || st.Mismatched[MismatchAdvertInt] != 5 {
		t.Fatalf("stats %+v", st)
	}
}

// The table of mismatches keeps the most recent maxMismatches sources: forged sources cannot grow it.
func TestMismatchTableBounded(t *testing.T) {
	var tab mismatches
	for i := range 3 * maxMismatches {
		src := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		tab.add(t0.Add(time.Duration(i)*time.Millisecond), MismatchVIPs, src, "x", true)
	}
	l := tab.list()
	if len(l) != maxMismatches {
		t.Fatalf("%d mismatches kept, want %d", len(l), maxMismatches)
	}
	for _, m := range l {
		if m.Last.Before(t0.Add(time.Duration(2*maxMismatches) * time.Millisecond)) {
			t.Fatalf("kept an old one: %+v", m)
		}
	}
}

// The IPv6 machine (RFC 5798 over IPv6): it needs a link-local primary address, advertises its
// IPv6 VIPs, checks the Hop Limit and the IPv6 pseudo-header checksum, breaks ties on link-local
// addresses and hands over after Skew_Time on a priority-0 advert.
func TestMachineIPv6(t *testing.T) {
	cfg := testConfig6()
	for _, self := range []netip.Addr{netip.MustParseAddr("fd00::1"), addrA} {
		if _, err := NewMachine(cfg, self); err == nil {
			t.Errorf("NewMachine accepted primary address %s for IPv6 VIPs", self)
		}
	}
	if _, err := NewMachine(testConfig(3), ll1); err == nil {
		t.Error("NewMachine accepted a link-local primary address for IPv4 VIPs")
	}

	h := newHarness(t, cfg, ll2)
	h.step(0, Startup{})
	mdi := h.m.MasterDownInterval()
	h.step(mdi, Tick{})
	h.wantState(Master)
	h.wantSent(100)
	if p := h.out[0].(Send).Packet; !slices.Equal(p.Addresses, cfg.addresses()) || p.Version != 3 {
		t.Fatalf("advert %+v, want version 3 with the IPv6 VIPs", p)
	}
	at := mdi + 10*time.Millisecond
	valid := h.advert(ll3, 100)
	ipv4Style := h.advert(ll3, 100)
	ipv4Style.Data = append(append([]byte(nil), ipv4Style.Data[:headerLen]...), 0xfd, 0, 0, 0, 0xfd, 0, 0, 1)
	for _, tt := range []struct {
		name string
		r    Received
		want DropReason
	}{
		{"hop limit 64", Received{Src: ll3, Dst: MulticastGroup6, TTL: 64, Data: valid.Data}, DropTTL},
		{"checksum for another destination", Received{Src: ll3, Dst: netip.MustParseAddr("ff02::1"), TTL: TTL, Data: valid.Data}, DropChecksum},
		{"checksum from another source", Received{Src: netip.MustParseAddr("fe80::4"), Dst: MulticastGroup6, TTL: TTL, Data: valid.Data}, DropChecksum},
		{"IPv4-sized addresses", ipv4Style, DropLength},
		{"other address", h.advert(ll3, 100, func(p *Packet) { p.Addresses[1] = netip.MustParseAddr("fd00::102") }), DropAddrList},
	} {
		before := h.m.Stats().Dropped[tt.want]
		if h.step(at, tt.r); len(h.acted()) != 0 || h.m.Stats().Dropped[tt.want] != before+1 {
			t.Errorf("%s: outputs %+v, dropped %v, want one %s", tt.name, h.out, h.m.Stats().Dropped, tt.want)
		}
	}
	h.wantState(Master)
	// Equal priority from a lower link-local address: we stay master; from a higher one, backup.
	h.step(at, h.advert(ll1, 100))
	h.wantState(Master)
	h.wantSent(100)
	h.step(at, valid)
	h.wantState(Backup)
	if h.m.MasterAddr() != ll3 {
		t.Fatalf("master %s, want %s", h.m.MasterAddr(), ll3)
	}
	// The master stops: take over after Skew_Time.
	at += time.Second
	h.step(at, h.advert(ll3, 0))
	h.wantTimer(at + h.m.SkewTime())
	h.step(at+h.m.SkewTime(), Tick{})
	h.wantState(Master)
	// Our own advert, as a receiver with multicast loop on would see it.
	h.step(at+time.Second, h.advert(ll2, 100))
	if st := h.m.Stats(); st.Own != 1 || st.Accepted != 3 || st.DroppedTotal() != 5 {
		t.Fatalf("stats %+v", st)
	}
}
