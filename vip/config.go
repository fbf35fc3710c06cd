package vip

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// neighLocktime is Linux's default neigh locktime (net.ipv4.neigh.*.locktime, 1s): a neighbour entry
// updated less than locktime ago ignores a further update, so announcement rounds closer together
// than this are wasted on Linux receivers.
const neighLocktime = time.Second

// maxIfNameLen is IFNAMSIZ-1: the longest interface name, and IPv4 address label, the kernel accepts.
const maxIfNameLen = 15

// AnnounceConfig is the schedule of gratuitous ARP (IPv4) and unsolicited neighbour advertisement
// (IPv6) rounds. A round is, for every IPv4 VIP, one GARP in request form and one in reply form, and
// for every IPv6 VIP one unsolicited NA.
type AnnounceConfig struct {
	// Count is the number of rounds sent back to back at once by Acquire and when the interface comes
	// back up. Default 3; 0 sends none.
	Count int
	// Repeat is the number of further rounds after the burst, RepeatInterval apart, for switches and
	// hosts that missed or rate-limited the burst. Default 3.
	Repeat int
	// RepeatInterval separates the repeated rounds. It must be more than 1s: Linux ignores a second
	// update of a neighbour entry within its locktime (1s by default). Default 1.1s.
	RepeatInterval time.Duration
	// Refresh is the period of the re-announcement (and binding check) while the VIPs are held; 0 turns
	// it off. It must be 0 or more than 1s. Default 10s.
	Refresh time.Duration
}

// Config configures a Manager. Start from DefaultConfig: the zero Config has Lifetime off.
type Config struct {
	// Interface is the name of the link the VIPs are bound to (required).
	Interface string
	// VIPs are the addresses to bind, IPv4 and IPv6, with their prefix length (10.0.0.100/24,
	// 2001:db8::100/64). At least one; no address twice.
	VIPs []netip.Prefix
	// Label is an optional IPv4 address label ("eth0:vip"). The kernel limits it to 15 bytes, and it
	// must start with the interface name. IPv6 addresses have no label.
	Label string
	// Lifetime binds the VIPs with a kernel lifetime (valid_lft = preferred_lft) short enough that
	// the kernel has removed them by the self-fencing deadline given to Acquire and Extend if this
	// process (and its fence guard) is killed or stopped. A deadline less than about 2.39 s away
	// leaves no such lifetime: the VIPs are then bound without one (see "Lifetime backstop" in the
	// package documentation). A zero deadline binds them permanently. Default true.
	Lifetime bool
	// Announce is the announcement schedule.
	Announce AnnounceConfig
	// Conflict is the probe Acquire sends before binding, and what it does when another host
	// answers for a VIP.
	Conflict ConflictConfig
}

// ConflictPolicy is what Acquire does when its probe finds another host answering for a VIP.
type ConflictPolicy string

// The conflict policies.
const (
	// ConflictOff sends no probe. The zero ConflictPolicy means the same.
	ConflictOff ConflictPolicy = "off"
	// ConflictFence logs the conflict, calls the function given to OnConflict (hacoord runs its
	// fence hook with the other host's address) and, when it succeeds, binds. Without such a
	// function it binds anyway. The default: see the package documentation, "Conflict probe".
	ConflictFence ConflictPolicy = "fence"
	// ConflictBind logs the conflict as an error and binds anyway.
	ConflictBind ConflictPolicy = "bind"
	// ConflictWait binds the VIPs nobody else answers for, and holds back each one another host
	// answers for: Run probes it again every Retry and binds and announces it once nobody answers.
	// Manager.Conflicts lists the VIPs held back.
	ConflictWait ConflictPolicy = "wait"
)

// ConflictConfig configures the probe before binding: for each IPv4 VIP an ARP probe (RFC 5227
// section 2.1.1: sender IP 0.0.0.0, target the VIP), for each IPv6 VIP a duplicate address
// detection solicitation (RFC 4862 section 5.4.2: from ::, to the VIP's solicited-node group).
type ConflictConfig struct {
	// Policy says what an answer leads to. Default ConflictFence; "" is ConflictOff.
	Policy ConflictPolicy
	// Probes is how many rounds of probes are sent, Interval apart. Default 3.
	Probes int
	// Interval separates the rounds, and is how long Acquire listens after the last: a probe
	// that nobody answers adds Probes x Interval to the promote path. Default 20ms (60ms in all).
	Interval time.Duration
	// Retry is how often ConflictWait probes a held-back VIP again. Default 1s.
	Retry time.Duration
}

// DefaultConfig returns a Config with the defaults filled in and no interface or VIPs.
func DefaultConfig() Config {
	return Config{
		Lifetime: true,
		Announce: AnnounceConfig{
			Count:          3,
			Repeat:         3,
			RepeatInterval: 1100 * time.Millisecond,
			Refresh:        10 * time.Second,
		},
		Conflict: ConflictConfig{Policy: ConflictFence, Probes: 3, Interval: 20 * time.Millisecond, Retry: time.Second},
	}
}

// Validate reports every problem with c, joined, or nil.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("vip: config: "+format, args...))
	}
	switch {
	case c.Interface == "":
		bad("interface is required")
	case len(c.Interface) > maxIfNameLen:
		bad("interface name %q is longer than %d bytes", c.Interface, maxIfNameLen)
	case strings.ContainsAny(c.Interface, "/: \t\n"):
		bad("interface name %q contains '/', ':' or white space", c.Interface)
	}
	if len(c.VIPs) == 0 {
		bad("no VIPs")
	}
	seen := make(map[netip.Addr]bool, len(c.VIPs))
	for _, p := range c.VIPs {
		a := p.Addr()
		switch {
		case !p.IsValid():
			bad("VIP %v is not a valid prefix", p)
			continue
		case a.Is4In6():
			bad("VIP %v is an IPv4-mapped IPv6 address; write it as IPv4", p)
		case a.IsUnspecified(), a.IsMulticast(), a.IsLoopback():
			bad("VIP %v is not a unicast address", p)
		case a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
			bad("VIP %v is the broadcast address", p)
		}
		if seen[a] {
			bad("VIP %v is listed twice", a)
		}
		seen[a] = true
	}
	errs = append(errs, c.validateAddressClasses()...) // vip/validate.go
	if c.Label != "" {
		switch {
		case len(c.Label) > maxIfNameLen:
			bad("label %q is longer than %d bytes", c.Label, maxIfNameLen)
		case c.Interface != "" && !strings.HasPrefix(c.Label, c.Interface):
			bad("label %q does not start with the interface name %q", c.Label, c.Interface)
		}
	}
	a := c.Announce
	if a.Count < 0 {
		bad("announce count %d is negative", a.Count)
	}
	if a.Repeat < 0 {
		bad("announce repeat %d is negative", a.Repeat)
	}
	if a.RepeatInterval <= neighLocktime {
		bad("announce repeat interval %v must be more than %v (Linux neighbour locktime)", a.RepeatInterval, neighLocktime)
	}
	if a.Refresh < 0 || (a.Refresh > 0 && a.Refresh <= neighLocktime) {
		bad("announce refresh %v must be 0 (off) or more than %v", a.Refresh, neighLocktime)
	}
	switch cf := c.Conflict; cf.Policy {
	case "", ConflictOff:
	case ConflictFence, ConflictBind, ConflictWait:
		if cf.Probes < 1 {
			bad("conflict probes %d: want at least 1", cf.Probes)
		}
		if cf.Interval <= 0 || cf.Interval > time.Second {
			bad("conflict interval %v: want more than 0 and at most 1s (it delays every promote)", cf.Interval)
		}
		if cf.Policy == ConflictWait && cf.Retry < cf.Interval*time.Duration(max(cf.Probes, 1)) {
			bad("conflict retry %v: want at least the probe's length, probes x interval", cf.Retry)
		}
	default:
		bad("conflict %q is not wait, fence, bind or off", cf.Policy)
	}
	return errors.Join(errs...)
}

// probes reports whether Acquire probes before binding.
func (c Config) probes() bool {
	return c.Conflict.Policy != "" && c.Conflict.Policy != ConflictOff
}

// announces reports whether c sends any announcement at all.
func (c Config) announces() bool {
	return c.Announce.Count > 0 || c.Announce.Repeat > 0 || c.Announce.Refresh > 0
}
