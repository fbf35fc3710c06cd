package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"go.uber.org/zap"
)

// Owned is what a Reconciler created in the kernel, and so what its Withdraw removes: the services
// it added (with their destinations) and the destinations it added to services it did not create.
// The daemon tells its fence guard, which withdraws it should the daemon die (WithdrawOwned).
type Owned struct {
	Services     []ServiceKey
	Destinations []OwnedDestination
}

// OwnedDestination is a destination a Reconciler added to a service it did not create.
type OwnedDestination struct {
	Service ServiceKey
	Dest    netip.AddrPort
}

// IsZero reports whether o names nothing.
func (o Owned) IsZero() bool { return len(o.Services) == 0 && len(o.Destinations) == 0 }

// Words returns o as words without white space, services first, each sorted: "TCP/10.0.0.100:80",
// "UDP/[2001:db8::1]:53", "FWM/1/IPv4", and for a destination the service, '>' and the real
// server: "TCP/10.0.0.100:80>10.0.0.11:80". ParseOwned reads them back.
func (o Owned) Words() []string {
	var w []string
	for _, k := range o.Services {
		w = append(w, keyWord(k))
	}
	for _, d := range o.Destinations {
		w = append(w, keyWord(d.Service)+">"+d.Dest.String())
	}
	return w
}

func keyWord(k ServiceKey) string {
	if k.FWMark != 0 {
		fam := "IPv4"
		if k.Family == INET6 {
			fam = "IPv6"
		}
		return fmt.Sprintf("FWM/%d/%s", k.FWMark, fam)
	}
	return protoName(k.Protocol) + "/" + netip.AddrPortFrom(k.Address, k.Port).String()
}

// ParseOwned reads what Words wrote.
func ParseOwned(words []string) (Owned, error) {
	var o Owned
	for _, w := range words {
		svc, dest, isDest := strings.Cut(w, ">")
		k, err := parseKeyWord(svc)
		if err != nil {
			return Owned{}, fmt.Errorf("ipvs: owned %q: %w", w, err)
		}
		if !isDest {
			o.Services = append(o.Services, k)
			continue
		}
		ap, err := netip.ParseAddrPort(dest)
		if err != nil {
			return Owned{}, fmt.Errorf("ipvs: owned %q: %w", w, err)
		}
		o.Destinations = append(o.Destinations, OwnedDestination{Service: k, Dest: ap})
	}
	return o, nil
}

func parseKeyWord(s string) (ServiceKey, error) {
	kind, rest, ok := strings.Cut(s, "/")
	if !ok {
		return ServiceKey{}, errors.New("no '/'")
	}
	if kind == "FWM" {
		mark, fam, _ := strings.Cut(rest, "/")
		m, err := strconv.ParseUint(mark, 10, 32)
		if err != nil || m == 0 {
			return ServiceKey{}, fmt.Errorf("firewall mark %q", mark)
		}
		k := ServiceKey{Family: INET, FWMark: uint32(m)}
		switch fam {
		case "IPv4":
		case "IPv6":
			k.Family = INET6
		default:
			return ServiceKey{}, fmt.Errorf("family %q", fam)
		}
		return k, nil
	}
	p, err := parseProtocol(kind)
	if err != nil {
		return ServiceKey{}, err
	}
	ap, err := netip.ParseAddrPort(rest)
	if err != nil {
		return ServiceKey{}, err
	}
	return ServiceKey{Family: addrFamily(ap.Addr()), Protocol: p, Address: ap.Addr().Unmap(), Port: ap.Port()}, nil
}

// WithdrawOwned removes what o names through c: the fence guard's withdrawal of a dead daemon's
// services. Services and destinations already gone are no error; it tries everything, and
// returns the failures joined and whether it removed anything.
func WithdrawOwned(c Client, o Owned) (bool, error) {
	var errs []error
	removed := false
	gone := func(err error) bool {
		return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH)
	}
	for _, k := range o.Services {
		switch err := c.RemoveService(toIPVSService(Service{ServiceKey: k})); {
		case err == nil:
			removed = true
		case !gone(err):
			errs = append(errs, fmt.Errorf("ipvs: remove service %s: %w", k, err))
		}
	}
	for _, d := range o.Destinations {
		if slices.Contains(o.Services, d.Service) {
			continue
		}
		err := c.RemoveDestination(toIPVSService(Service{ServiceKey: d.Service}), toIPVSDest(Destination{Address: d.Dest.Addr(), Port: d.Dest.Port()}))
		switch {
		case err == nil:
			removed = true
		case !gone(err):
			errs = append(errs, fmt.Errorf("ipvs: remove real server %s from %s: %w", d.Dest, d.Service, err))
		}
	}
	return removed, errors.Join(errs...)
}

// Owned returns what the Reconciler created and Withdraw would remove now, sorted.
func (r *Reconciler) Owned() Owned {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ownedLocked()
}

func (r *Reconciler) ownedLocked() Owned {
	var o Owned
	for k := range r.ownedSvcs {
		o.Services = append(o.Services, k)
	}
	for dk := range r.ownedDests {
		if !r.ownedSvcs[dk.svc] {
			o.Destinations = append(o.Destinations, OwnedDestination{Service: dk.svc, Dest: dk.dest})
		}
	}
	slices.SortFunc(o.Services, compareKeys)
	slices.SortFunc(o.Destinations, func(a, b OwnedDestination) int {
		if c := compareKeys(a.Service, b.Service); c != 0 {
			return c
		}
		return a.Dest.Compare(b.Dest)
	})
	return o
}

// WithOwnedChange calls f whenever what the Reconciler owns (Owned) may have changed: after an
// apply or a withdrawal that created or removed something. f is called with the Reconciler's lock
// held and must not block or call back into the Reconciler (signal a goroutine that calls Owned).
func WithOwnedChange(f func()) Option { return func(r *Reconciler) { r.onOwned = f } }

// ownedChanged tells WithOwnedChange's f, if what is owned changed since it last heard.
func (r *Reconciler) ownedChanged() {
	if r.onOwned != nil && r.ownedGen != r.ownedTold {
		r.ownedTold = r.ownedGen
		r.onOwned()
	}
}

// Cleanup deals with what a previous run (killed, or whose fence guard could not withdraw) left in
// the kernel: the services of the configured virtual servers found there are withdrawn when
// program_on_backup is false (the node is not master yet; Promote programs them again), and taken
// over when it is true, so that Run reconciles them (not duplicated) and withdraws them when it
// returns, as services it created. Services of other virtual servers are never touched. Call it
// once, before Run and Promote. Disabled or unavailable, it does nothing.
func (r *Reconciler) Cleanup(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.client == nil {
		return nil
	}
	cur, err := ReadTable(r.client)
	if err != nil {
		return err
	}
	desired, _ := desiredTable(r.cfg, r.health, r.quorum)
	want := map[ServiceKey]bool{}
	for _, s := range desired.Services {
		want[s.ServiceKey] = true
	}
	var errs []error
	for _, s := range cur.Services {
		if !want[s.ServiceKey] {
			continue
		}
		if r.cfg.ProgramOnBackup {
			r.ownedSvcs[s.ServiceKey] = true
			r.ownedGen++
			r.log.Warn("took over a service left by a previous run", zap.String("service", s.ServiceKey.String()))
			continue
		}
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		err := r.client.RemoveService(toIPVSService(Service{ServiceKey: s.ServiceKey}))
		if err != nil && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("ipvs: remove leftover service %s: %w", s.ServiceKey, err))
			continue
		}
		r.log.Warn("removed a service left by a previous run", zap.String("service", s.ServiceKey.String()))
	}
	r.ownedChanged()
	return errors.Join(errs...)
}
