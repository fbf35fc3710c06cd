package vrrp

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"
)

// RouterState is a state of the RFC 5798 §6.4 state machine, plus Fault (keepalived's FAULT: the
// router is not eligible and takes no part).
type RouterState int

const (
	Initialize RouterState = iota // RFC 5798 §6.4.1
	Backup                        // RFC 5798 §6.4.2
	Master                        // RFC 5798 §6.4.3
	Fault                         // not eligible (health check failed); never becomes master
)

func (s RouterState) String() string {
	switch s {
	case Initialize:
		return "initialize"
	case Backup:
		return "backup"
	case Master:
		return "master"
	case Fault:
		return "fault"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// An Event is an input to Machine.Step.
type Event interface{ event() }

// Startup is the RFC 5798 §6.4.1 Startup event: leave Initialize.
type Startup struct{}

// Shutdown is the RFC 5798 §6.4.2/§6.4.3 Shutdown event: a master sends a priority-0 advert so a
// backup takes over after Skew_Time; the machine returns to Initialize.
type Shutdown struct{}

// Tick tells the machine that time has passed: the Master_Down_Timer or Adver_Timer may have fired.
type Tick struct{}

// Received is a packet read from the wire, with what the IP header said about it.
type Received struct {
	Src, Dst netip.Addr
	TTL      int    // IPv4 TTL or IPv6 Hop Limit
	Data     []byte // the VRRP message, IP header removed
}

// SetPriority changes this router's priority (keepalived's vrrp_script weight idea). It is clamped
// to 1-254, or 255 when the router was configured as the address owner.
type SetPriority struct{ Priority int }

// SetEligible withdraws (false) or restores (true) this router's candidacy. An ineligible master
// sends a priority-0 advert and enters Fault, like keepalived's FAULT state.
type SetEligible struct{ OK bool }

// Yield makes a master step down: it sends a priority-0 advert and becomes a backup, so that another
// router takes over after its Skew_Time; it becomes master again only if no other router does.
type Yield struct{}

func (Startup) event()     {}
func (Shutdown) event()    {}
func (Tick) event()        {}
func (Received) event()    {}
func (SetPriority) event() {}
func (SetEligible) event() {}
func (Yield) event()       {}

// An Output is something Machine.Step asks its driver to do or to report.
type Output interface{ output() }

// Send asks the driver to send Packet (to the multicast group, or to each unicast peer). The driver
// marshals it with the destination it uses (the version 3 checksum depends on it).
type Send struct{ Packet Packet }

// Transition reports a change of state or of the known master (From == To then). Master is the
// current master's primary address (this router's own while Master), invalid when unknown.
type Transition struct {
	From, To RouterState
	Master   netip.Addr
	Reason   string
}

// MismatchWarning asks the driver to warn about a router whose adverts for this VRID do not match
// this router's configuration (see Mismatch). Step emits one for a reason and source at most once
// per MismatchWarnInterval, the first at once.
type MismatchWarning struct{ Mismatch Mismatch }

func (Send) output()            {}
func (Transition) output()      {}
func (MismatchWarning) output() {}

// DropReason is why a received packet was dropped by the receive checks (RFC 5798 §7.1,
// RFC 3768 §7.1).
type DropReason string

// The reasons a packet is dropped. Each is counted in Stats.Dropped.
const (
	DropTTL         DropReason = "ttl"          // IP TTL is not 255
	DropLength      DropReason = "length"       // too short, or length does not match the count
	DropVersion     DropReason = "version"      // not the configured version
	DropType        DropReason = "type"         // not an advertisement
	DropChecksum    DropReason = "checksum"     // bad checksum
	DropVRID        DropReason = "vrid"         // another virtual router
	DropAdvertInt   DropReason = "advert-int"   // version 2: interval differs from ours; v3: zero
	DropAuthType    DropReason = "auth-type"    // version 2: other authentication type
	DropAuth        DropReason = "auth"         // version 2: wrong password
	DropAddrCount   DropReason = "addr-count"   // address count differs from our VIPs
	DropAddrList    DropReason = "addr-list"    // address list differs (and sender is not owner)
	DropUnknownPeer DropReason = "unknown-peer" // unicast mode: sender is not a configured peer
)

// Stats counts packets. The zero value is ready; a Machine updates its own. They are the figures
// of the VRRP metrics (adverts sent and received, mismatched adverts by reason).
type Stats struct {
	// Received is the number of packets read from the wire: Accepted + Own + DroppedTotal().
	Received uint64
	// Accepted is the number of adverts that passed the receive checks.
	Accepted uint64
	// Own is the number of adverts from this router's own address, ignored.
	Own uint64
	// Sent is the number of adverts this machine asked to send (priority-0 ones included), once
	// each however many unicast peers they go to.
	Sent uint64
	// SendErrors (the Elector's, always 0 in a Machine's) is the number of adverts that could not
	// be sent to any destination.
	SendErrors uint64
	// Dropped counts the packets that failed a receive check, by reason.
	Dropped map[DropReason]uint64
	// Mismatched counts the adverts for this VRID whose sender is configured differently, by
	// reason (see Mismatch). Most are also in Dropped; a version 3 advert with another interval is
	// accepted.
	Mismatched map[MismatchReason]uint64
	// Transitions counts changes of RouterState.
	Transitions uint64
}

func (s Stats) clone() Stats {
	s.Dropped = maps.Clone(s.Dropped)
	if s.Dropped == nil {
		s.Dropped = map[DropReason]uint64{}
	}
	s.Mismatched = maps.Clone(s.Mismatched)
	if s.Mismatched == nil {
		s.Mismatched = map[MismatchReason]uint64{}
	}
	return s
}

// MismatchedTotal is the sum of Mismatched.
func (s Stats) MismatchedTotal() uint64 {
	var n uint64
	for _, v := range s.Mismatched {
		n += v
	}
	return n
}

// DroppedTotal is the sum of Dropped.
func (s Stats) DroppedTotal() uint64 {
	var n uint64
	for _, v := range s.Dropped {
		n += v
	}
	return n
}

// Machine is the VRRP state machine of RFC 5798 §6.4 for one virtual router, with RFC 3768
// (version 2) timers and keepalived's preempt_delay. It does no I/O and reads no clock: the driver
// passes the current time and an Event to Step and performs the Outputs, and calls Step with Tick at
// NextTimer. It is not safe for concurrent use.
type Machine struct {
	cfg    Config
	self   netip.Addr
	addrs  []netip.Addr // the VIPs' addresses, sorted
	auth   [AuthDataLen]byte
	peers  map[netip.Addr]bool
	state  RouterState
	prio   uint8 // current (effective) priority
	ok     bool  // eligible: healthy (SetEligible) and not in maintenance (SetMaintenance)
	master netip.Addr

	unhealthy, maint bool // the two inputs of ok

	masterAdverInt time.Duration // Master_Adver_Interval (RFC 5798 §6.1)
	masterDown     time.Time     // Master_Down_Timer deadline; zero when stopped
	adver          time.Time     // Adver_Timer deadline; zero when stopped
	preemptAt      time.Time     // keepalived preempt_time; zero when not running
	// yielded: this router gave up mastership (Yield) and does not preempt the master that took
	// over; it preempts again once it has been master since.
	yielded bool
	// masterSince is when this router last became master (MasterBeside's grace).
	masterSince time.Time

	stats      Stats
	mismatches mismatches
}

// NewMachine returns a Machine in Initialize for cfg, whose router sends from the primary address
// self (compared for the equal-priority tie-break, RFC 5798 §6.4.3): an IPv4 address for IPv4 VIPs,
// the interface's IPv6 link-local address for IPv6 ones (RFC 5798 §5.1.2.1).
func NewMachine(cfg Config, self netip.Addr) (*Machine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ipv6() {
		if !self.Is6() || self.Is4In6() || !self.IsLinkLocalUnicast() {
			return nil, fmt.Errorf("vrrp: primary address %s is not an IPv6 link-local address (RFC 5798 §5.1.2.1)", self)
		}
	} else if !self.Is4() {
		return nil, fmt.Errorf("vrrp: primary address %s is not IPv4", self)
	}
	m := &Machine{
		cfg:   cfg,
		self:  self,
		addrs: cfg.addresses(),
		prio:  uint8(cfg.Priority),
		ok:    true,
		stats: Stats{Dropped: map[DropReason]uint64{}, Mismatched: map[MismatchReason]uint64{}},
	}
	slices.SortFunc(m.addrs, netip.Addr.Compare)
	if cfg.AuthPass != "" {
		m.auth = AuthPassData(cfg.AuthPass)
	}
	if len(cfg.UnicastPeers) > 0 {
		m.peers = map[netip.Addr]bool{}
		for _, p := range cfg.UnicastPeers {
			m.peers[p] = true
		}
	}
	m.masterAdverInt = cfg.AdvertInt
	return m, nil
}

// State returns the current state.
func (m *Machine) State() RouterState { return m.state }

// Priority returns the current priority (0 while not eligible).
func (m *Machine) Priority() int {
	if !m.ok {
		return 0
	}
	return int(m.prio)
}

// MasterAddr returns the current master's address, invalid when unknown.
func (m *Machine) MasterAddr() netip.Addr { return m.master }

// MasterAdverInterval returns Master_Adver_Interval: the configured interval, or (version 3) the one
// learned from the current master's adverts.
func (m *Machine) MasterAdverInterval() time.Duration { return m.masterAdverInt }

// Stats returns a copy of the counters.
func (m *Machine) Stats() Stats { return m.stats.clone() }

// Mismatches returns the routers whose adverts for this VRID did not match this router's
// configuration, by reason and source, sorted; at most maxMismatches, the most recent.
func (m *Machine) Mismatches() []Mismatch { return m.mismatches.list() }

// NextTimer returns when Step should next be called with Tick; zero when no timer runs.
func (m *Machine) NextTimer() time.Time {
	switch m.state {
	case Backup:
		return m.masterDown
	case Master:
		return m.adver
	}
	return time.Time{}
}

// SkewTime returns Skew_Time for the current priority and Master_Adver_Interval: version 3
// ((256-Priority)*Master_Adver_Interval)/256 (RFC 5798 §6.1), version 2 (256-Priority)/256 seconds
// (RFC 3768 §6.1).
func (m *Machine) SkewTime() time.Duration {
	p := time.Duration(256 - int(m.prio))
	if m.cfg.Version == 2 {
		return p * time.Second / 256
	}
	return p * m.masterAdverInt / 256
}

// MasterDownInterval returns (3*Master_Adver_Interval)+Skew_Time (RFC 5798 §6.1, RFC 3768 §6.1).
func (m *Machine) MasterDownInterval() time.Duration {
	return 3*m.masterAdverInt + m.SkewTime()
}

// Step applies ev at instant now and returns what the driver must do, in order.
func (m *Machine) Step(now time.Time, ev Event) []Output {
	var out []Output
	switch ev := ev.(type) {
	case Startup:
		if m.state == Initialize {
			out = m.start(now, out)
		}
	case Shutdown:
		if m.state == Master {
			out = m.send(out, PriorityStop)
		}
		out = m.enter(out, Initialize, netip.Addr{}, "shutdown")
	case Tick:
		out = m.tick(now, out)
	case Received:
		out = m.receive(now, ev, out)
	case SetPriority:
		m.setPriority(ev.Priority)
	case SetEligible:
		m.unhealthy = !ev.OK
		out = m.setEligible(now, ev.OK && !m.maint, out)
	case SetMaintenance:
		out = m.setMaintenance(now, ev.On, out)
	case Yield:
		if m.state == Master {
			out = m.send(out, PriorityStop)
			m.masterAdverInt = m.cfg.AdvertInt
			m.masterDown = now.Add(m.MasterDownInterval())
			out = m.enter(out, Backup, netip.Addr{}, "yielded")
			m.yielded = true
		}
	}
	return out
}

// start leaves Initialize (RFC 5798 §6.4.1): the address owner becomes master at once, every other
// router a backup with Master_Down_Timer set to Master_Down_Interval.
func (m *Machine) start(now time.Time, out []Output) []Output {
	if !m.ok {
		return m.enter(out, Fault, m.master, "not eligible")
	}
	if m.prio == PriorityOwner {
		return m.becomeMaster(now, out, "address owner")
	}
	m.masterAdverInt = m.cfg.AdvertInt
	m.masterDown = now.Add(m.MasterDownInterval())
	// keepalived starts the preempt delay on entering BACKUP at startup.
	m.preemptAt = time.Time{}
	if m.cfg.PreemptDelay > 0 {
		m.preemptAt = now.Add(m.cfg.PreemptDelay)
	}
	return m.enter(out, Backup, netip.Addr{}, "startup")
}

func (m *Machine) tick(now time.Time, out []Output) []Output {
	switch m.state {
	case Backup:
		// RFC 5798 §6.4.2: if the Master_Down_Timer fires, become master.
		if !m.masterDown.IsZero() && !now.Before(m.masterDown) {
			out = m.becomeMaster(now, out, "master down timer")
		}
	case Master:
		// RFC 5798 §6.4.3: if the Adver_Timer fires, send an advert and reset the timer.
		if !m.adver.IsZero() && !now.Before(m.adver) {
			out = m.send(out, m.prio)
			m.adver = now.Add(m.cfg.AdvertInt)
		}
	}
	return out
}

// becomeMaster sends an advert and enters Master (RFC 5798 §6.4.1, §6.4.2). Broadcasting gratuitous
// ARP for the VIPs is left to the consumer of the Transition (package vip).
func (m *Machine) becomeMaster(now time.Time, out []Output, reason string) []Output {
	m.masterSince = now
	out = m.send(out, m.prio)
	m.adver = now.Add(m.cfg.AdvertInt)
	m.masterDown = time.Time{}
	return m.enter(out, Master, m.self, reason)
}

func (m *Machine) enter(out []Output, to RouterState, master netip.Addr, reason string) []Output {
	from := m.state
	if from == to && m.master == master {
		return out
	}
	if from != to {
		m.stats.Transitions++
	}
	m.state, m.master = to, master
	if to == Master {
		m.yielded = false
	}
	if to != Master {
		m.adver = time.Time{}
	}
	if to != Backup {
		m.masterDown = time.Time{}
	}
	return append(out, Transition{From: from, To: to, Master: master, Reason: reason})
}

func (m *Machine) send(out []Output, prio uint8) []Output {
	m.stats.Sent++
	p := Packet{
		Version:   uint8(m.cfg.Version),
		Type:      TypeAdvertisement,
		VRID:      uint8(m.cfg.VRID),
		Priority:  prio,
		AdvertInt: m.cfg.advertField(),
		Addresses: m.cfg.addresses(),
	}
	if m.cfg.Version == 2 && m.cfg.AuthPass != "" {
		p.AuthType, p.AuthData = AuthSimple, m.auth
	}
	return append(out, Send{Packet: p})
}

func (m *Machine) setPriority(p int) {
	hi := PriorityOwner - 1
	if m.cfg.Priority == PriorityOwner {
		hi = PriorityOwner
	}
	m.prio = uint8(min(max(p, 1), hi))
}

func (m *Machine) setEligible(now time.Time, ok bool, out []Output) []Output {
	if ok == m.ok {
		return out
	}
	m.ok = ok
	if !ok {
		if m.state == Master {
			// keepalived sends a priority-0 advert when a master enters FAULT.
			out = m.send(out, PriorityStop)
		}
		if m.state == Initialize {
			return out
		}
		master := m.master
		if master == m.self {
			master = netip.Addr{}
		}
		return m.enter(out, Fault, master, "not eligible")
	}
	if m.state == Fault {
		m.state = Initialize
		out = m.start(now, out)
		if t, ok := out[len(out)-1].(Transition); ok {
			t.From = Fault
			out[len(out)-1] = t
		}
	}
	return out
}

// verdict is what the receive checks made of a packet.
type verdict struct {
	p    Packet
	drop DropReason // why it is dropped; "" if accepted
	own  bool       // one of our own adverts
	// mismatch, with detail (what they sent, what we expect), says that an advert for our VRID
	// comes from a router configured differently; the packet may be dropped or (v3 interval)
	// accepted.
	mismatch MismatchReason
	detail   string
}

// check runs the receive checks of RFC 5798 §7.1 and RFC 3768 §7.1 (and keepalived's) on r. The
// VRID is checked before the version, so that an advert of another version for our VRID is
// reported as a mismatch, not as noise.
func (m *Machine) check(r Received) verdict {
	var p Packet
	drop := func(reason DropReason) verdict { return verdict{p: p, drop: reason} }
	mismatch := func(reason DropReason, mm MismatchReason, format string, args ...any) verdict {
		return verdict{p: p, drop: reason, mismatch: mm, detail: fmt.Sprintf(format, args...)}
	}
	if r.Src == m.self {
		return verdict{own: true}
	}
	// RFC 5798 §7.1: MUST verify that the IPv4 TTL / IPv6 Hop Limit is 255.
	if r.TTL != TTL {
		return drop(DropTTL)
	}
	if err := p.Unmarshal(r.Data); err != nil {
		if errors.Is(err, ErrVersion) {
			return drop(DropVersion)
		}
		return drop(DropLength)
	}
	// MUST verify that the received packet contains the complete VRRP packet: with addresses of
	// this router's family (Unmarshal tells them apart by the length).
	if len(p.Addresses) > 0 && p.Addresses[0].Is6() != m.cfg.ipv6() {
		return drop(DropLength)
	}
	if p.Type != TypeAdvertisement {
		return drop(DropType)
	}
	// MUST verify the VRRP checksum.
	dst := r.Dst
	if !dst.IsValid() {
		dst = m.cfg.multicastGroup()
	}
	if !VerifyChecksum(r.Data, r.Src, dst) {
		return drop(DropChecksum)
	}
	// MUST verify that the VRID is configured on the receiving interface.
	if int(p.VRID) != m.cfg.VRID {
		return drop(DropVRID)
	}
	if m.peers != nil && !m.peers[r.Src] {
		return drop(DropUnknownPeer)
	}
	// MUST verify the VRRP version.
	if int(p.Version) != m.cfg.Version {
		return mismatch(DropVersion, MismatchVersion,
			"VRRP version %d, we speak version %d: set the same on both (hacoord vrrp-version, keepalived's `version` in vrrp_instance, whose default is 2)",
			p.Version, m.cfg.Version)
	}
	if m.cfg.Version == 2 {
		// RFC 3768 §7.1: MUST perform authentication as specified by Auth Type.
		want := uint8(AuthNone)
		if m.cfg.AuthPass != "" {
			want = AuthSimple
		}
		if p.AuthType != want {
			return mismatch(DropAuthType, MismatchAuth, "auth type %s, we expect %s", authName(p.AuthType), authName(want))
		}
		if want == AuthSimple && p.AuthData != m.auth {
			// The passwords themselves stay out of logs.
			return mismatch(DropAuth, MismatchAuth, "auth type PASS with another auth-pass than ours")
		}
		// MUST verify that the Adver Interval in the packet is the same as the locally configured one.
		if p.AdvertInt != m.cfg.advertField() {
			return mismatch(DropAdvertInt, MismatchAdvertInt, "advert interval %ds, ours is %s (RFC 3768 §7.1: dropped)",
				p.AdvertInt, m.cfg.AdvertInt)
		}
	} else if p.AdvertInt == 0 {
		return mismatch(DropAdvertInt, MismatchAdvertInt, "advert interval 0, which is invalid (ours is %s)", m.cfg.AdvertInt)
	}
	// RFC 3768 §7.1: MUST verify that the Count IP Addrs and the list of IP Addresses match the
	// IP_Addresses configured for the VRID; unless the sender is the owner (priority 255), drop.
	// RFC 5798 §7.1 makes it a MAY; keepalived drops on a count mismatch in both versions.
	if len(p.Addresses) != len(m.addrs) {
		return mismatch(DropAddrCount, MismatchVIPs, "%d addresses %v, we expect %d: %v", len(p.Addresses), p.Addresses, len(m.addrs), m.cfg.addresses())
	}
	if p.Priority != PriorityOwner {
		got := slices.Clone(p.Addresses)
		slices.SortFunc(got, netip.Addr.Compare)
		if !slices.Equal(got, m.addrs) {
			return mismatch(DropAddrList, MismatchVIPs, "addresses %v, we expect %v", p.Addresses, m.cfg.addresses())
		}
	}
	if m.cfg.Version == 3 && p.AdvertInt != m.cfg.advertField() {
		// RFC 5798 §6.4.2: a backup learns the master's interval, so the group works; but how soon a
		// backup takes over then depends on which router is master.
		got := time.Duration(p.AdvertInt) * 10 * time.Millisecond
		return verdict{p: p, mismatch: MismatchAdvertInt,
			detail: fmt.Sprintf("advert interval %s, ours is %s (accepted: RFC 5798 §6.4.2 backups learn the master's, so takeover times depend on which router is master)", got, m.cfg.AdvertInt)}
	}
	return verdict{p: p}
}

func (m *Machine) receive(now time.Time, r Received, out []Output) []Output {
	m.stats.Received++
	v := m.check(r)
	if v.mismatch != "" {
		m.stats.Mismatched[v.mismatch]++
		if mm, warn := m.mismatches.add(now, v.mismatch, r.Src, v.detail, v.drop != ""); warn {
			out = append(out, MismatchWarning{Mismatch: mm})
		}
	}
	out = m.beside(now, v, r.Src, out)
	switch {
	case v.own:
		m.stats.Own++
		return out
	case v.drop != "":
		m.stats.Dropped[v.drop]++
		return out
	}
	m.stats.Accepted++
	p, src := v.p, r.Src
	switch m.state {
	case Backup:
		return m.receiveBackup(now, p, src, out)
	case Master:
		return m.receiveMaster(now, p, src, out)
	case Fault:
		// Not a candidate: only follow who is master, for the Records we report.
		if p.Priority == PriorityStop && src == m.master {
			return m.enter(out, Fault, netip.Addr{}, "master stopped")
		}
		if p.Priority != PriorityStop {
			return m.enter(out, Fault, src, "advert")
		}
	}
	return out
}

// learn sets Master_Adver_Interval from a version 3 advert (RFC 5798 §6.4.2, §6.4.3).
func (m *Machine) learn(p Packet) {
	if m.cfg.Version == 3 {
		m.masterAdverInt = time.Duration(p.AdvertInt) * 10 * time.Millisecond
	}
}

// receiveBackup is RFC 5798 §6.4.2 with keepalived's preempt_delay.
func (m *Machine) receiveBackup(now time.Time, p Packet, src netip.Addr, out []Output) []Output {
	if p.Priority == PriorityStop {
		// The master is shutting down: take over after Skew_Time.
		m.masterDown = now.Add(m.SkewTime())
		master := m.master
		if master == src {
			master = netip.Addr{}
		}
		return m.enter(out, Backup, master, "master stopped")
	}
	delaying := m.cfg.PreemptDelay > 0 && (m.preemptAt.IsZero() || now.Before(m.preemptAt))
	if !m.cfg.Preempt || p.Priority >= m.prio || delaying || m.yielded {
		m.learn(p)
		m.masterDown = now.Add(m.MasterDownInterval())
		if m.cfg.PreemptDelay > 0 {
			if p.Priority >= m.prio {
				m.preemptAt = time.Time{}
			} else if m.preemptAt.IsZero() {
				m.preemptAt = now.Add(m.cfg.PreemptDelay)
			}
		}
		return m.enter(out, Backup, src, "advert")
	}
	// Preempt: discard the lower-priority advert and let the Master_Down_Timer run out.
	return out
}

// receiveMaster is RFC 5798 §6.4.3, plus keepalived's immediate advert on hearing a lower priority.
func (m *Machine) receiveMaster(now time.Time, p Packet, src netip.Addr, out []Output) []Output {
	if p.Priority == PriorityStop {
		// Another master is stopping: send an advert at once so the backups hear us.
		out = m.send(out, m.prio)
		m.adver = now.Add(m.cfg.AdvertInt)
		return out
	}
	if p.Priority > m.prio || (p.Priority == m.prio && src.Compare(m.self) > 0) {
		m.learn(p)
		m.masterDown = now.Add(m.MasterDownInterval())
		m.adver = time.Time{}
		return m.enter(out, Backup, src, fmt.Sprintf("advert with priority %d from %s", p.Priority, src))
	}
	// A lower priority (or an equal one from a lower address): RFC 5798 discards it; keepalived
	// answers with an advert at once so the other router steps down without waiting.
	out = m.send(out, m.prio)
	m.adver = now.Add(m.cfg.AdvertInt)
	return out
}
