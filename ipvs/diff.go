package ipvs

import (
	"fmt"
	"net/netip"
	"slices"
)

// OpKind is what an Op does.
type OpKind uint8

// The operations, in the order Diff emits them: services first, then destinations added before
// any are removed (a sorry-server switch never leaves a service empty), removed services last.
const (
	AddService OpKind = iota + 1
	UpdateService
	AddDestination
	UpdateDestination
	RemoveDestination
	RemoveService
)

func (k OpKind) String() string {
	switch k {
	case AddService:
		return "add-service"
	case UpdateService:
		return "update-service"
	case AddDestination:
		return "add-destination"
	case UpdateDestination:
		return "update-destination"
	case RemoveDestination:
		return "remove-destination"
	case RemoveService:
		return "remove-service"
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// Op is one change to the kernel table. Service carries no Destinations; Destination is set for
// the destination kinds.
type Op struct {
	Kind        OpKind
	Service     Service
	Destination Destination
}

// String returns e.g. "update-destination TCP 10.0.0.100:80 -> 10.0.0.11:80 Route weight 3".
func (o Op) String() string {
	switch o.Kind {
	case AddService, UpdateService:
		s := fmt.Sprintf("%s %s %s", o.Kind, o.Service.ServiceKey, o.Service.Scheduler)
		if o.Service.Flags&FlagPersistent != 0 {
			s += fmt.Sprintf(" persistent %d", o.Service.Timeout)
		}
		return s
	case AddDestination, UpdateDestination:
		return fmt.Sprintf("%s %s -> %s %s weight %d", o.Kind, o.Service.ServiceKey, o.Destination.AddrPort(),
			fwdName(o.Destination.FwdMethod), o.Destination.Weight)
	case RemoveDestination:
		return fmt.Sprintf("%s %s -> %s", o.Kind, o.Service.ServiceKey, o.Destination.AddrPort())
	}
	return fmt.Sprintf("%s %s", o.Kind, o.Service.ServiceKey)
}

// Diff returns the fewest operations that turn current into desired: a changed scheduler,
// persistence or weight is an update in place (connections survive), a service or destination
// is added or removed only when it appears or disappears. Every service of current that desired
// lacks is removed: the caller passes in current only the services it manages. Diff is pure; the
// result is ordered by OpKind, then by service and destination address.
func Diff(current, desired Table) []Op {
	cur := make(map[ServiceKey]Service, len(current.Services))
	for _, s := range current.Services {
		cur[s.ServiceKey] = s
	}
	want := make(map[ServiceKey]bool, len(desired.Services))
	var ops []Op
	for _, d := range sorted(desired.Services) {
		want[d.ServiceKey] = true
		bare := d
		bare.Destinations = nil
		c, ok := cur[d.ServiceKey]
		if !ok {
			ops = append(ops, Op{Kind: AddService, Service: bare})
			for _, dst := range d.Destinations {
				ops = append(ops, Op{Kind: AddDestination, Service: bare, Destination: dst})
			}
			continue
		}
		if c.Scheduler != d.Scheduler || c.Flags&userFlags != d.Flags&userFlags || c.Timeout != d.Timeout {
			ops = append(ops, Op{Kind: UpdateService, Service: bare})
		}
		have := make(map[netip.AddrPort]Destination, len(c.Destinations))
		for _, dst := range c.Destinations {
			have[key(dst)] = dst
		}
		keep := make(map[netip.AddrPort]bool, len(d.Destinations))
		for _, dst := range d.Destinations {
			keep[key(dst)] = true
			h, ok := have[key(dst)]
			switch {
			case !ok:
				ops = append(ops, Op{Kind: AddDestination, Service: bare, Destination: dst})
			case h.Weight != dst.Weight || h.FwdMethod != dst.FwdMethod:
				ops = append(ops, Op{Kind: UpdateDestination, Service: bare, Destination: dst})
			}
		}
		for _, dst := range c.Destinations {
			if !keep[key(dst)] {
				ops = append(ops, Op{Kind: RemoveDestination, Service: bare, Destination: dst})
			}
		}
	}
	for _, c := range sorted(current.Services) {
		if !want[c.ServiceKey] {
			c.Destinations = nil
			ops = append(ops, Op{Kind: RemoveService, Service: c})
		}
	}
	slices.SortStableFunc(ops, func(a, b Op) int { return int(a.Kind) - int(b.Kind) })
	return ops
}

func key(d Destination) netip.AddrPort { return netip.AddrPortFrom(d.Address.Unmap(), d.Port) }

func sorted(s []Service) []Service {
	out := make([]Service, len(s))
	for i, svc := range s {
		svc.Destinations = slices.Clone(svc.Destinations)
		sortDests(svc.Destinations)
		out[i] = svc
	}
	sortServices(out)
	return out
}
