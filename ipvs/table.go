package ipvs

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"

	cipvs "github.com/cloudflare/ipvs"
	"github.com/cloudflare/ipvs/netmask"
)

// The IPVS vocabulary, re-exported from github.com/cloudflare/ipvs so callers need not import it.
type (
	AddressFamily = cipvs.AddressFamily
	Protocol      = cipvs.Protocol
	ForwardType   = cipvs.ForwardType
	Flags         = cipvs.Flags
)

// Address families, protocols, forwarding methods and service flags.
const (
	INET  = cipvs.INET
	INET6 = cipvs.INET6

	TCP  = cipvs.TCP
	UDP  = cipvs.UDP
	SCTP = cipvs.SCTP

	Masquerade  = cipvs.Masquerade
	Local       = cipvs.Local
	Tunnel      = cipvs.Tunnel
	DirectRoute = cipvs.DirectRoute

	FlagPersistent = cipvs.ServicePersistent
	FlagOnePacket  = cipvs.ServiceOnePacket
)

// userFlags are the service flags a configuration sets; the kernel adds others (hashed) on read.
const userFlags = cipvs.ServicePersistent | cipvs.ServiceOnePacket |
	cipvs.ServiceSchedulerOpt1 | cipvs.ServiceSchedulerOpt2 | cipvs.ServiceSchedulerOpt3

// ServiceKey identifies a virtual service: family, protocol, address and port, or family and
// firewall mark (then Protocol, Address and Port are zero, as the kernel reports them).
type ServiceKey struct {
	Family   AddressFamily
	Protocol Protocol
	Address  netip.Addr
	Port     uint16
	FWMark   uint32
}

// String returns "TCP 10.0.0.100:80", "UDP [2001:db8::1]:53", "FWM 1" or "FWM 1 IPv6".
func (k ServiceKey) String() string {
	if k.FWMark != 0 {
		if k.Family == INET6 {
			return fmt.Sprintf("FWM %d IPv6", k.FWMark)
		}
		return fmt.Sprintf("FWM %d", k.FWMark)
	}
	return protoName(k.Protocol) + " " + netip.AddrPortFrom(k.Address, k.Port).String()
}

func protoName(p Protocol) string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	case SCTP:
		return "SCTP"
	}
	return fmt.Sprintf("proto(%d)", uint16(p))
}

// compareKeys orders services as ipvsadm lists them: by fwmark (address services first), family,
// protocol, address and port.
func compareKeys(a, b ServiceKey) int {
	return cmp.Or(
		cmp.Compare(a.FWMark, b.FWMark),
		cmp.Compare(a.Family, b.Family),
		cmp.Compare(a.Protocol, b.Protocol),
		a.Address.Compare(b.Address),
		cmp.Compare(a.Port, b.Port),
	)
}

// Service is a virtual service and its destinations.
type Service struct {
	ServiceKey
	Scheduler string
	// Flags holds FlagPersistent and FlagOnePacket; Diff ignores kernel-internal flags.
	Flags Flags
	// Timeout is the persistence timeout in seconds.
	Timeout      uint32
	Destinations []Destination
}

// Destination is a real server of a Service.
type Destination struct {
	Address   netip.Addr
	Port      uint16
	FwdMethod ForwardType
	Weight    uint32
	// ActiveConns and InactiveConns are read from the kernel for Format; Diff ignores them.
	ActiveConns   uint32
	InactiveConns uint32
}

// AddrPort returns the destination's address and port.
func (d Destination) AddrPort() netip.AddrPort { return netip.AddrPortFrom(d.Address, d.Port) }

// Table is an IPVS table: the kernel's, as ReadTable returns it, or the desired one.
type Table struct {
	// Version and Size are the kernel's IPVS version and connection table size (for Format).
	Version  [3]int
	ConnSize uint32
	Services []Service
}

// Client is the part of github.com/cloudflare/ipvs's Client a Reconciler uses; the real client
// satisfies it, and tests stand in a fake. Like the real client it reports an empty list as
// os.ErrNotExist.
type Client interface {
	Info() (cipvs.Info, error)
	Services() ([]cipvs.ServiceExtended, error)
	Destinations(cipvs.Service) ([]cipvs.DestinationExtended, error)
	CreateService(cipvs.Service) error
	UpdateService(cipvs.Service) error
	RemoveService(cipvs.Service) error
	CreateDestination(cipvs.Service, cipvs.Destination) error
	UpdateDestination(cipvs.Service, cipvs.Destination) error
	RemoveDestination(cipvs.Service, cipvs.Destination) error
}

// ReadTable reads the whole IPVS table through c, services and destinations sorted as ipvsadm
// sorts them.
func ReadTable(c Client) (Table, error) {
	var t Table
	info, err := c.Info()
	if err != nil {
		return t, fmt.Errorf("ipvs: get info: %w", err)
	}
	t.Version, t.ConnSize = info.Version, info.ConnectionTableSize
	svcs, err := c.Services()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return t, fmt.Errorf("ipvs: list services: %w", err)
	}
	for _, se := range svcs {
		s := fromIPVSService(se.Service)
		dests, err := c.Destinations(se.Service)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return t, fmt.Errorf("ipvs: list destinations of %s: %w", s.ServiceKey, err)
		}
		for _, d := range dests {
			s.Destinations = append(s.Destinations, fromIPVSDest(d))
		}
		sortDests(s.Destinations)
		t.Services = append(t.Services, s)
	}
	sortServices(t.Services)
	return t, nil
}

func sortServices(s []Service) {
	slices.SortFunc(s, func(a, b Service) int { return compareKeys(a.ServiceKey, b.ServiceKey) })
}

func sortDests(d []Destination) {
	slices.SortFunc(d, func(a, b Destination) int { return a.AddrPort().Compare(b.AddrPort()) })
}

func fromIPVSService(s cipvs.Service) Service {
	k := ServiceKey{Family: s.Family, FWMark: s.FWMark}
	if s.FWMark == 0 {
		k.Protocol, k.Address, k.Port = s.Protocol, s.Address.Unmap(), s.Port
	}
	return Service{ServiceKey: k, Scheduler: s.Scheduler, Flags: s.Flags & userFlags, Timeout: s.Timeout}
}

// hostMask is the netmask every service needs: the kernel rejects a missing one with EINVAL. It is
// the persistence granularity, one client address.
func hostMask(f AddressFamily) netmask.Mask {
	if f == INET6 {
		return netmask.MaskFrom(128, 128)
	}
	return netmask.MaskFrom4([4]byte{255, 255, 255, 255})
}

func toIPVSService(s Service) cipvs.Service {
	return cipvs.Service{
		Address:   s.Address,
		Netmask:   hostMask(s.Family),
		Scheduler: s.Scheduler,
		Timeout:   s.Timeout,
		Flags:     s.Flags & userFlags,
		Port:      s.Port,
		FWMark:    s.FWMark,
		Family:    s.Family,
		Protocol:  s.Protocol,
	}
}

func fromIPVSDest(d cipvs.DestinationExtended) Destination {
	return Destination{
		Address:       d.Address.Unmap(),
		Port:          d.Port,
		FwdMethod:     d.FwdMethod,
		Weight:        d.Weight,
		ActiveConns:   d.ActiveConnections,
		InactiveConns: d.InactiveConnections,
	}
}

func toIPVSDest(d Destination) cipvs.Destination {
	return cipvs.Destination{
		Address:   d.Address,
		FwdMethod: d.FwdMethod,
		Weight:    d.Weight,
		Port:      d.Port,
		Family:    addrFamily(d.Address),
	}
}
