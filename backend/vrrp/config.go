package vrrp

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Config configures one VRRP instance (one virtual router on one interface). The names follow
// keepalived's vrrp_instance keywords where there is one.
type Config struct {
	// Interface is the name of the link adverts are sent and received on (keepalived `interface`).
	Interface string
	// VRID is the Virtual Router Identifier, 1-255 (RFC 5798 §5.2.3; keepalived
	// `virtual_router_id`). Every router of the group uses the same one.
	VRID int
	// Priority is this router's priority, 1-255 (RFC 5798 §5.2.4); higher wins. 255 is reserved for
	// the router that owns the virtual addresses: it becomes master at once on startup.
	Priority int
	// AdvertInt is the interval between a master's adverts (keepalived `advert_int`). Version 2: whole
	// seconds, 1s-255s (RFC 3768 §5.3.7). Version 3: a multiple of 10ms, 10ms-40.95s (RFC 5798 §5.2.7),
	// and long enough that the master's VIP deadline after each advert (3 x AdvertInt less the fencing
	// margin, see validity) covers two adverts: 100ms at least. Version 2 routers must all use the
	// same value; version 3 backups learn the master's.
	AdvertInt time.Duration
	// Preempt lets a backup with a higher priority take over from a lower-priority master (RFC 5798
	// §6.1 Preempt_Mode). false is keepalived's `nopreempt`: a master keeps its role until it fails.
	Preempt bool
	// PreemptDelay is keepalived's `preempt_delay`: after startup, and after first seeing a
	// lower-priority master, a backup waits this long before preempting it. 0-1000s, needs Preempt.
	PreemptDelay time.Duration
	// UnicastPeers, when set, replaces multicast: adverts go to each peer, and adverts are accepted
	// only from them (keepalived `unicast_peer`). IPv4 only for now.
	UnicastPeers []netip.Addr
	// Version is the VRRP version: 3 (RFC 5798, the default) or 2 (RFC 3768; keepalived's default).
	Version int
	// AuthPass is the version 2 simple text password, 1-8 bytes (keepalived `auth_type PASS`,
	// `auth_pass`). Empty means no authentication. Version 3 has no authentication.
	AuthPass string
	// VIPs are the virtual addresses, listed in every advert (RFC 5798 §5.2.9). keepalived drops
	// adverts whose address list differs from its `virtual_ipaddress` block, so list the same ones
	// in the same group. At most 255, all IPv4 or all IPv6: their family is the virtual router's
	// (none: IPv4). An IPv6 router (version 3 only) advertises to ff02::12 from the interface's
	// link-local address (RFC 5798 §5.1.2); RFC 5798 §5.2.9 wants its first VIP to be a link-local
	// address, which keepalived (outside strict mode) and hacoord only log.
	VIPs []netip.Prefix
	// Group names the virtual router in the Records the Elector reports; default "vrid-<VRID>".
	Group string
	// Node names this node in the Record it reports while master; default its primary address.
	// VRRP does not carry names, so another master is named by its address.
	Node string
}

// DefaultConfig returns the defaults: version 3, priority 100, a 1s advert interval, preempt on,
// no preempt delay. Interface and VRID have no default.
func DefaultConfig() Config {
	return Config{
		Priority:  100,
		AdvertInt: time.Second,
		Preempt:   true,
		Version:   3,
	}
}

// LocalConfig returns DefaultConfig with a fast profile for tests on one host: 100ms adverts
// (version 3), so a master is declared down in about 300ms.
func LocalConfig() Config {
	c := DefaultConfig()
	c.AdvertInt = 100 * time.Millisecond
	return c
}

// Limits of the configuration.
const (
	MaxPreemptDelay = 1000 * time.Second // keepalived's TIMER_MAX_SEC
	MinAdvertIntV3  = 10 * time.Millisecond
	MaxAdvertIntV3  = 4095 * 10 * time.Millisecond
	MinAdvertIntV2  = time.Second
	MaxAdvertIntV2  = 255 * time.Second
)

// Validate reports every problem with c (joined), each naming the setting as the CLI flag does.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("vrrp: "+format, args...)) }
	if c.Interface == "" {
		bad("interface is required")
	}
	if c.VRID < 1 || c.VRID > 255 {
		bad("vrid %d out of range 1-255", c.VRID)
	}
	if c.Priority < 1 || c.Priority > 255 {
		bad("priority %d out of range 1-255 (255 = address owner)", c.Priority)
	}
	switch c.Version {
	case 2:
		if c.AdvertInt < MinAdvertIntV2 || c.AdvertInt > MaxAdvertIntV2 || c.AdvertInt%time.Second != 0 {
			bad("advert-int %s: version 2 needs whole seconds from 1s to 255s", c.AdvertInt)
		}
		if len(c.AuthPass) > AuthDataLen {
			bad("auth-pass is %d bytes, at most %d", len(c.AuthPass), AuthDataLen)
		}
	case 3:
		if c.AdvertInt < MinAdvertIntV3 || c.AdvertInt > MaxAdvertIntV3 || c.AdvertInt%(10*time.Millisecond) != 0 {
			bad("advert-int %s: version 3 needs a multiple of 10ms from 10ms to 40.95s", c.AdvertInt)
		} else if v := c.validity(); v < 2*c.AdvertInt {
			bad("advert-int %s: a master may hold the VIPs for 3 x advert-int - %s margin = %s after each advert, which must cover two adverts (%s) or one late timer fences it; use at least %s",
				c.AdvertInt, 3*c.AdvertInt-v, v, 2*c.AdvertInt, minAdvertIntV3())
		}
		if c.AuthPass != "" {
			bad("auth-pass needs vrrp-version 2 (RFC 5798 has no authentication)")
		}
	default:
		bad("vrrp-version %d: must be 2 or 3", c.Version)
	}
	if c.PreemptDelay < 0 || c.PreemptDelay > MaxPreemptDelay {
		bad("preempt-delay %s out of range 0-%s", c.PreemptDelay, MaxPreemptDelay)
	}
	if c.PreemptDelay > 0 && !c.Preempt {
		bad("preempt-delay %s needs preempt (it is set with nopreempt)", c.PreemptDelay)
	}
	v6 := c.ipv6()
	if v6 && c.Version != 3 {
		bad("vip %s: IPv6 needs vrrp-version 3 (RFC 3768 is IPv4 only)", c.VIPs[0])
	}
	seen := map[netip.Addr]bool{}
	for _, p := range c.UnicastPeers {
		if v6 {
			bad("unicast-peer %s: unicast peers are supported with IPv4 VIPs only", p)
			break
		}
		if !p.Is4() || p.IsMulticast() || p.IsUnspecified() {
			bad("unicast-peer %s: must be a unicast IPv4 address", p)
		}
		if seen[p] {
			bad("unicast-peer %s listed twice", p)
		}
		seen[p] = true
	}
	if len(c.VIPs) > 255 {
		bad("%d VIPs, at most 255 fit an advert", len(c.VIPs))
	}
	seen = map[netip.Addr]bool{}
	for _, p := range c.VIPs {
		a := p.Addr()
		switch {
		case !p.IsValid() || a.Is4In6():
			bad("vip %s: must be an IPv4 or IPv6 prefix (not IPv4-mapped)", p)
			continue
		case a.Is6() != v6:
			bad("vip %s: IPv4 and IPv6 VIPs in one virtual router (RFC 5798 §5.2.9: one family; use two instances)", p)
			continue
		case a.IsMulticast() || a.IsUnspecified() || a.IsLoopback():
			bad("vip %s: must be a unicast address", p)
			continue
		}
		if seen[a] {
			bad("vip %s listed twice", a)
		}
		seen[a] = true
	}
	return errors.Join(errs...)
}

// ipv6 reports whether the virtual router is an IPv6 one: its first VIP is IPv6.
func (c Config) ipv6() bool { return len(c.VIPs) > 0 && c.VIPs[0].Addr().Is6() }

// multicastGroup is where adverts go without unicast peers: 224.0.0.18 or ff02::12 (RFC 5798
// §5.1.1.2, §5.1.2.2).
func (c Config) multicastGroup() netip.Addr {
	if c.ipv6() {
		return MulticastGroup6
	}
	return MulticastGroup
}

// minAdvertIntV3 is the shortest version 3 advert interval whose validity covers two adverts (see
// Validate): 100ms with fencing.DefaultMargin.
func minAdvertIntV3() time.Duration {
	for a := MinAdvertIntV3; a < MaxAdvertIntV3; a += 10 * time.Millisecond {
		if (Config{AdvertInt: a}).validity() >= 2*a {
			return a
		}
	}
	return MaxAdvertIntV3
}

// advertField is the interval field of an advert: seconds (v2) or centiseconds (v3).
func (c Config) advertField() uint16 {
	if c.Version == 2 {
		return uint16(c.AdvertInt / time.Second)
	}
	return uint16(c.AdvertInt / (10 * time.Millisecond))
}

// addresses returns the VIPs' addresses in configuration order.
func (c Config) addresses() []netip.Addr {
	a := make([]netip.Addr, len(c.VIPs))
	for i, p := range c.VIPs {
		a[i] = p.Addr()
	}
	return a
}

func (c Config) group() string {
	if c.Group != "" {
		return c.Group
	}
	return fmt.Sprintf("vrid-%d", c.VRID)
}
