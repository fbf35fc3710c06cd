package health

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/ipvs/check"
)

// Reference arbitration (the split-brain guard of the operators' guides): a node that cannot reach
// any of a few reference addresses — the gateway, a core switch — is cut off from the network its
// VIPs serve, and must not be master there. The track_reference check passes while at least one
// reference answers, each judged with its own rise/fall; while it fails the Gate withdraws the
// candidacy, so a cut-off node does not campaign and a cut-off master resigns and lets a node that
// still reaches the references take over, instead of fighting for the VIPs. Like a track script,
// it starts failing: a node becomes a candidate only once a reference has answered Rise times.

// ReferenceCheck is the name the references have, together, among the Gate's checks.
const ReferenceCheck = "track_reference"

// Reference methods.
const (
	// MethodARP asks for the reference's hardware address with an ARP request (RFC 826) on the
	// interface the route to it leaves by; the reference must be on-link. IPv4 only. A host that
	// drops ICMP still answers ARP.
	MethodARP = "arp"
	// MethodICMP sends an ICMP (RFC 792) or ICMPv6 (RFC 4443) echo request and waits for the reply.
	MethodICMP = "icmp"
)

// Defaults of a reference.
const (
	DefaultReferenceInterval = time.Second
	DefaultReferenceTimeout  = 500 * time.Millisecond
	DefaultReferenceRise     = 2
	DefaultReferenceFall     = 3
)

// Reference is one entry of track_reference: an address this node must reach (any one of the
// list suffices) to be fit for master.
type Reference struct {
	Address netip.Addr `yaml:"address"`
	// Method is arp or icmp; default arp for IPv4, icmp for IPv6.
	Method string `yaml:"method,omitempty"`
	// Interface pins the probe to an interface; default: the one the kernel's route to Address
	// uses, looked up at every probe. An IPv6 link-local Address needs it.
	Interface string `yaml:"interface,omitempty"`
	// Interval between probes; default 1s.
	Interval time.Duration `yaml:"interval,omitempty"`
	// Timeout is how long a probe waits for the answer; default 500ms, at most Interval.
	Timeout time.Duration `yaml:"timeout,omitempty"`
	// Rise and Fall are the consecutive answered and unanswered probes that bring the reference
	// up and down; defaults 2 and 3 (one lost ARP never makes a master resign).
	Rise int `yaml:"rise,omitempty"`
	Fall int `yaml:"fall,omitempty"`
}

// withDefaults returns r with its zero fields defaulted.
func (r Reference) withDefaults() Reference {
	if r.Method == "" {
		r.Method = MethodICMP
		if r.Address.Is4() {
			r.Method = MethodARP
		}
	}
	if r.Interval == 0 {
		r.Interval = DefaultReferenceInterval
	}
	if r.Timeout == 0 {
		r.Timeout = min(DefaultReferenceTimeout, r.Interval)
	}
	if r.Rise == 0 {
		r.Rise = DefaultReferenceRise
	}
	if r.Fall == 0 {
		r.Fall = DefaultReferenceFall
	}
	return r
}

// name is the reference's checker name, in logs: "10.0.0.1 (arp)".
func (r Reference) name() string { return r.Address.String() + " (" + r.Method + ")" }

// validateReferences reports the problems of track_reference, each naming its key.
func validateReferences(refs []Reference) []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	seen := map[netip.Addr]int{}
	for i, r := range refs {
		key := fmt.Sprintf("track_reference[%d]", i)
		a := r.Address
		switch j, dup := seen[a.WithZone("")]; {
		case !a.IsValid():
			bad(key+".address", "required")
		case a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a.Is4In6():
			bad(key+".address", "%v is not a unicast address of another host", a)
		case dup:
			bad(key+".address", "%v is also track_reference[%d]", a, j)
		default:
			seen[a.WithZone("")] = i
		}
		d := r.withDefaults()
		switch {
		case r.Method != "" && r.Method != MethodARP && r.Method != MethodICMP:
			bad(key+".method", "%q is not arp or icmp", r.Method)
		case d.Method == MethodARP && a.Is6():
			bad(key+".method", "arp is IPv4 only; %v needs icmp", a)
		}
		iface := r.Interface
		if z := a.Zone(); z != "" {
			if iface != "" && iface != z {
				bad(key+".interface", "%q, but the address names zone %q", iface, z)
			}
			iface = z
		}
		switch {
		case len(iface) > maxIfNameLen || strings.ContainsAny(iface, "/: \t\n"):
			bad(key+".interface", "%q is not an interface name", iface)
		case a.Is6() && a.IsLinkLocalUnicast() && iface == "":
			bad(key+".interface", "required for the link-local address %v (or write %v%%eth0)", a, a)
		}
		if r.Interval < 0 {
			bad(key+".interval", "%v is negative", r.Interval)
		}
		switch {
		case r.Timeout < 0:
			bad(key+".timeout", "%v is negative", r.Timeout)
		case d.Timeout > d.Interval:
			bad(key+".timeout", "%v is longer than the interval %v", d.Timeout, d.Interval)
		}
		if r.Rise < 0 {
			bad(key+".rise", "%d is negative", r.Rise)
		}
		if r.Fall < 0 {
			bad(key+".fall", "%d is negative", r.Fall)
		}
	}
	return errs
}

// addReferences builds a checker per reference, its socket opened in the calling thread's network
// namespace, and the one Gate check that stands for them all.
// With up, the check and every reference start passing (a reload keeps a passing verdict).
func (m *Monitor) addReferences(refs []Reference, up bool, log *zap.Logger) error {
	for i, r := range refs {
		r = r.withDefaults()
		c, closeFn, err := newReferenceChecker(r, m.nl, up, log.With(zap.Stringer("track-reference", r.Address)))
		if err != nil {
			return fmt.Errorf("track_reference[%d]: %w", i, err)
		}
		m.checkers, m.closers = append(m.checkers, c), append(m.closers, closeFn)
		m.refs.add(c.Name(), up)
	}
	if len(refs) > 0 {
		// Failing until a reference has answered Rise times. Weight 0: a VRRP router goes to FAULT.
		m.checks = append(m.checks, election.Check{Name: ReferenceCheck, Up: up})
	}
	return nil
}

// newReferenceChecker builds the checker of r (defaulted), with its socket opened in the calling
// thread's network namespace; nl resolves the route and the interface at every probe.
func newReferenceChecker(r Reference, nl *netlink.Handle, up bool, log *zap.Logger) (*check.Checker, func(), error) {
	var (
		p   check.Prober
		cls func()
		err error
	)
	switch r.Method {
	case MethodARP:
		var a *arpProber
		a, err = newARPProber(r, nl)
		p, cls = a, a.close
	default:
		var c *icmpProber
		c, err = newICMPProber(r, nl)
		p, cls = c, c.close
	}
	if err != nil {
		return nil, nil, err
	}
	t := check.Timing{Interval: r.Interval, ConnectTimeout: r.Timeout, Retry: check.Retries(0), Rise: r.Rise, Fall: r.Fall, Alpha: !up}
	return check.NewWithProber(r.name(), "track-reference", t, p, log), cls, nil
}

// referenceSet is the verdicts of the references; the check passes while any reference is up.
type referenceSet struct {
	mu sync.Mutex
	up map[string]bool // checker name -> up
}

func newReferenceSet() *referenceSet { return &referenceSet{up: map[string]bool{}} }

func (s *referenceSet) add(name string, up bool) { s.up[name] = up }

func (s *referenceSet) has(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.up[name]
	return ok
}

// set records one reference's verdict and returns the check's (any reference up).
func (s *referenceSet) set(name string, up bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.up[name] = up
	for _, u := range s.up {
		if u {
			return true
		}
	}
	return false
}

// route is how a probe for a reference leaves: the interface and the source address the kernel
// would use (the route lookup of `ip route get`), and the gateway, if the reference is not on-link.
type route struct {
	index int
	src   netip.Addr
	gw    netip.Addr
}

// lookupRoute asks the kernel how a packet to r.Address leaves, through r's interface if it has one.
func lookupRoute(nl *netlink.Handle, r Reference) (route, error) {
	iface := r.Interface
	if iface == "" {
		iface = r.Address.Zone()
	}
	opts := &netlink.RouteGetOptions{Oif: iface}
	rs, err := nl.RouteGetWithOptions(r.Address.WithZone("").AsSlice(), opts)
	if err != nil {
		if iface != "" {
			return route{}, fmt.Errorf("route to %v via %s: %w", r.Address, iface, err)
		}
		return route{}, fmt.Errorf("route to %v: %w", r.Address, err)
	}
	if len(rs) == 0 {
		return route{}, fmt.Errorf("route to %v: none", r.Address)
	}
	var out route
	out.index = rs[0].LinkIndex
	if a, ok := netip.AddrFromSlice(rs[0].Src); ok {
		out.src = a.Unmap()
	}
	if a, ok := netip.AddrFromSlice(rs[0].Gw); ok {
		out.gw = a.Unmap()
	}
	return out, nil
}

// errNoAnswer is a probe that got no answer in time.
var errNoAnswer = errors.New("no answer")

// deadlineOf returns when a probe started now with timeout ends, or ctx's end if earlier.
func deadlineOf(ctx context.Context, timeout time.Duration) time.Time {
	d := time.Now().Add(timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}
