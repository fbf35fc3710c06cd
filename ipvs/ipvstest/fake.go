// Package ipvstest provides Fake, an in-memory IPVS table that answers like the kernel does, for
// tests of code that programs IPVS through ipvs.Client.
package ipvstest

import (
	"fmt"
	"math"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"

	cipvs "github.com/cloudflare/ipvs"
)

// Call is one mutating call made on a Fake.
type Call struct {
	Method  string // CreateService, UpdateService, RemoveService, CreateDestination, ...
	Service string // "TCP 10.0.0.100:80" or "FWM 1"
	Dest    netip.AddrPort
	Err     error
}

func (c Call) String() string {
	s := c.Method + " " + c.Service
	if c.Dest.IsValid() {
		s += " -> " + c.Dest.String()
	}
	if c.Err != nil {
		s += ": " + c.Err.Error()
	}
	return s
}

type svcKey struct {
	family cipvs.AddressFamily
	proto  cipvs.Protocol
	addr   netip.Addr
	port   uint16
	fwmark uint32
}

func (k svcKey) String() string {
	if k.fwmark != 0 {
		return fmt.Sprintf("FWM %d", k.fwmark)
	}
	p := map[cipvs.Protocol]string{cipvs.TCP: "TCP", cipvs.UDP: "UDP", cipvs.SCTP: "SCTP"}[k.proto]
	return p + " " + netip.AddrPortFrom(k.addr, k.port).String()
}

type service struct {
	svc   cipvs.Service
	dests []cipvs.DestinationExtended
}

// Fake is an IPVS table in memory that fails the way the kernel does: EEXIST when adding what
// exists, ESRCH for a missing service and ENOENT for a missing destination, EINVAL for a service
// without a netmask, ENOENT for an unknown scheduler, EINVAL for a destination of another family
// outside TUN. Like the netlink client it reports an empty list as os.ErrNotExist and
// reports services with the kernel's "hashed" flag set. It is safe for concurrent use.
type Fake struct {
	mu       sync.Mutex
	services []*service
	calls    []Call
	changed  chan struct{}
	// Schedulers are the schedulers the fake kernel knows; nil means all of Linux's.
	Schedulers []string
}

// NewFake returns an empty table.
func NewFake() *Fake { return &Fake{changed: make(chan struct{})} }

var linuxSchedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}

func keyOf(s cipvs.Service) svcKey {
	if s.FWMark != 0 {
		return svcKey{family: s.Family, fwmark: s.FWMark}
	}
	return svcKey{family: s.Family, proto: s.Protocol, addr: s.Address.Unmap(), port: s.Port}
}

func (f *Fake) find(s cipvs.Service) (int, *service) {
	k := keyOf(s)
	for i, e := range f.services {
		if keyOf(e.svc) == k {
			return i, e
		}
	}
	return -1, nil
}

func (f *Fake) record(method string, s cipvs.Service, d *cipvs.Destination, err error) error {
	c := Call{Method: method, Service: keyOf(s).String(), Err: err}
	if d != nil {
		c.Dest = netip.AddrPortFrom(d.Address.Unmap(), d.Port)
	}
	f.calls = append(f.calls, c)
	if err == nil {
		close(f.changed)
		f.changed = make(chan struct{})
	}
	if err != nil {
		return fmt.Errorf("fake ipvs: %s %s: %w", method, c.Service, err)
	}
	return nil
}

// Calls returns the mutating calls made so far, failed ones included.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// ResetCalls forgets the recorded calls.
func (f *Fake) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

// Changed returns a channel closed at the next successful change of the table.
func (f *Fake) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// SetConns sets a destination's connection counters, as traffic would.
func (f *Fake) SetConns(s cipvs.Service, dest netip.AddrPort, active, inactive uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, e := f.find(s)
	if e == nil {
		return syscall.ESRCH
	}
	for i := range e.dests {
		if netip.AddrPortFrom(e.dests[i].Address, e.dests[i].Port) == dest {
			e.dests[i].ActiveConnections, e.dests[i].InactiveConnections = active, inactive
			return nil
		}
	}
	return syscall.ENOENT
}

// Info returns IPVS version 1.2.1 and a 4096-entry connection table, as a stock kernel.
func (f *Fake) Info() (cipvs.Info, error) {
	return cipvs.Info{Version: [3]int{1, 2, 1}, ConnectionTableSize: 4096}, nil
}

// Services lists the services, or os.ErrNotExist when there are none.
func (f *Fake) Services() ([]cipvs.ServiceExtended, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.services) == 0 {
		return nil, os.ErrNotExist
	}
	out := make([]cipvs.ServiceExtended, 0, len(f.services))
	for _, e := range f.services {
		out = append(out, cipvs.ServiceExtended{Service: e.svc})
	}
	return out, nil
}

func (f *Fake) validService(s cipvs.Service) error {
	if s.Family != cipvs.INET && s.Family != cipvs.INET6 {
		return syscall.EAFNOSUPPORT
	}
	if !s.Netmask.IsValid() {
		return syscall.EINVAL
	}
	if s.FWMark == 0 {
		if !s.Address.IsValid() || (s.Family == cipvs.INET) != s.Address.Unmap().Is4() {
			return syscall.EINVAL
		}
		if s.Port == 0 && s.Flags&cipvs.ServicePersistent == 0 {
			return syscall.EINVAL
		}
	}
	scheds := f.Schedulers
	if scheds == nil {
		scheds = linuxSchedulers
	}
	if !slices.Contains(scheds, s.Scheduler) {
		return syscall.ENOENT
	}
	return nil
}

// stored is s as the kernel keeps and reports it.
func stored(s cipvs.Service) cipvs.Service {
	s.Flags |= cipvs.ServiceHashed
	if s.FWMark != 0 {
		s.Address, s.Port, s.Protocol = netip.Addr{}, 0, 0
	}
	return s
}

// CreateService adds a service.
func (f *Fake) CreateService(s cipvs.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.validService(s); err != nil {
		return f.record("CreateService", s, nil, err)
	}
	if _, e := f.find(s); e != nil {
		return f.record("CreateService", s, nil, syscall.EEXIST)
	}
	f.services = append(f.services, &service{svc: stored(s)})
	return f.record("CreateService", s, nil, nil)
}

// UpdateService changes a service's scheduler, flags and timeout.
func (f *Fake) UpdateService(s cipvs.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, e := f.find(s)
	if e == nil {
		return f.record("UpdateService", s, nil, syscall.ESRCH)
	}
	if err := f.validService(s); err != nil {
		return f.record("UpdateService", s, nil, err)
	}
	e.svc = stored(s)
	return f.record("UpdateService", s, nil, nil)
}

// RemoveService removes a service and its destinations.
func (f *Fake) RemoveService(s cipvs.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, e := f.find(s)
	if e == nil {
		return f.record("RemoveService", s, nil, syscall.ESRCH)
	}
	f.services = slices.Delete(f.services, i, i+1)
	return f.record("RemoveService", s, nil, nil)
}

// Destinations lists a service's destinations, or os.ErrNotExist when it has none.
func (f *Fake) Destinations(s cipvs.Service) ([]cipvs.DestinationExtended, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, e := f.find(s)
	if e == nil {
		return nil, syscall.ESRCH
	}
	if len(e.dests) == 0 {
		return nil, os.ErrNotExist
	}
	return slices.Clone(e.dests), nil
}

func destIndex(e *service, d cipvs.Destination) int {
	ap := netip.AddrPortFrom(d.Address.Unmap(), d.Port)
	return slices.IndexFunc(e.dests, func(x cipvs.DestinationExtended) bool {
		return netip.AddrPortFrom(x.Address.Unmap(), x.Port) == ap
	})
}

func validDest(s cipvs.Service, d cipvs.Destination) error {
	if !d.Address.IsValid() || d.Weight > math.MaxInt32 {
		return syscall.EINVAL
	}
	if d.Family != s.Family && d.FwdMethod != cipvs.Tunnel {
		return syscall.EINVAL // as Linux 6.1 answers; only tunnelling mixes families
	}
	return nil
}

// CreateDestination adds a destination to a service.
func (f *Fake) CreateDestination(s cipvs.Service, d cipvs.Destination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, e := f.find(s)
	if e == nil {
		return f.record("CreateDestination", s, &d, syscall.ESRCH)
	}
	if err := validDest(e.svc, d); err != nil {
		return f.record("CreateDestination", s, &d, err)
	}
	if destIndex(e, d) >= 0 {
		return f.record("CreateDestination", s, &d, syscall.EEXIST)
	}
	e.dests = append(e.dests, cipvs.DestinationExtended{Destination: d})
	return f.record("CreateDestination", s, &d, nil)
}

// UpdateDestination changes a destination's weight and forwarding method in place; its
// connection counters stay.
func (f *Fake) UpdateDestination(s cipvs.Service, d cipvs.Destination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, e := f.find(s)
	if e == nil {
		return f.record("UpdateDestination", s, &d, syscall.ESRCH)
	}
	i := destIndex(e, d)
	if i < 0 {
		return f.record("UpdateDestination", s, &d, syscall.ENOENT)
	}
	if err := validDest(e.svc, d); err != nil {
		return f.record("UpdateDestination", s, &d, err)
	}
	e.dests[i].Destination = d
	return f.record("UpdateDestination", s, &d, nil)
}

// RemoveDestination removes a destination from a service.
func (f *Fake) RemoveDestination(s cipvs.Service, d cipvs.Destination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, e := f.find(s)
	if e == nil {
		return f.record("RemoveDestination", s, &d, syscall.ESRCH)
	}
	i := destIndex(e, d)
	if i < 0 {
		return f.record("RemoveDestination", s, &d, syscall.ENOENT)
	}
	e.dests = slices.Delete(e.dests, i, i+1)
	return f.record("RemoveDestination", s, &d, nil)
}
