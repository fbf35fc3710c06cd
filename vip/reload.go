package vip

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"go.uber.org/zap"
)

// SetConfig replaces the Manager's configuration at run time (a reload), without letting go of the
// VIPs that stay: cfg must name the same Interface and Label (the device and label are what a
// Manager is; another one needs a Manager of its own), and must validate. It needs no socket New
// did not open: no address family the current VIPs lack, no announcement or probe when the
// current configuration has neither (ErrNeedsSockets).
//
// While the VIPs are held, SetConfig unbinds the VIPs cfg no longer lists, binds the new ones
// (with the current self-fencing deadline, checked as Acquire checks it) and sends the
// announcement burst for the new ones only; the VIPs in both are not touched. The new VIPs are
// probed first, as Acquire probes (see "Conflict probe" in the package documentation): with
// ConflictWait one another host answers for is held back, with ConflictFence a failing OnConflict
// function refuses the reload. It is all or nothing: if a new VIP
// cannot be bound, the ones it bound are removed again, the removed ones are bound again, and the
// old configuration stays (the error says why). While the VIPs are not held, it only records the
// new configuration, for the next Acquire. The rest of cfg takes effect as it is next used: the
// announcement schedule at the next burst (a repeat or refresh due is rescheduled from now), the
// lifetime at the next Extend, the conflict policy at the next Acquire.
//
// SetConfig returns the VIPs added and removed. Concurrency: like Acquire, it may be called from
// any goroutine, concurrently with Run and the other methods; the Manager's mutex serialises it
// with them, so no frame is sent or bind made with half of the old and half of the new
// configuration. The caller tells a fence guard of the union of the old and new VIPs before, and of
// the new list after (a bound VIP is never unknown to the guard).
func (m *Manager) SetConfig(ctx context.Context, cfg Config) (added, removed []netip.Prefix, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, nil, fmt.Errorf("vip: reconfigure %s: %w", m.cfg.Interface, ErrClosed)
	}
	if err := m.cfg.Reconfigurable(cfg); err != nil {
		return nil, nil, err
	}
	added, removed = DiffPrefixes(m.cfg.VIPs, cfg.VIPs)
	old := m.cfg
	oldAnns, oldProbes := m.anns, m.probes
	m.cfg = cfg
	if err := m.setMACLocked(m.mac); err != nil {
		m.cfg, m.anns, m.probes = old, oldAnns, oldProbes
		return nil, nil, fmt.Errorf("vip: reconfigure %s: %w", cfg.Interface, err)
	}
	if !m.held {
		return added, removed, nil
	}
	hold, err := m.checkConflictsOfLocked(ctx, m.until, added)
	if err != nil {
		m.cfg, m.anns, m.probes = old, oldAnns, oldProbes
		return nil, nil, err
	}
	bind := slices.DeleteFunc(slices.Clone(added), func(v netip.Prefix) bool { _, held := hold[v]; return held })
	if err := m.swapLocked(ctx, bind, removed); err != nil {
		m.cfg, m.anns, m.probes = old, oldAnns, oldProbes
		return nil, nil, err
	}
	for _, v := range removed {
		delete(m.pending, v)
	}
	if len(hold) > 0 {
		if m.pending == nil {
			m.pending = map[netip.Prefix]Conflict{}
		}
		maps.Copy(m.pending, hold)
		if m.nextProbe.IsZero() {
			m.nextProbe = time.Now().Add(m.cfg.Conflict.Retry)
		}
		m.poke()
	}
	if len(added) > 0 || len(removed) > 0 {
		m.log.Info("VIPs reconfigured", zap.Stringers("added", added), zap.Stringers("removed", removed))
	}
	m.announceAddedLocked(bind)
	m.rescheduleLocked(old.Announce)
	return added, removed, nil
}

// swapLocked binds added and unbinds removed while held; on a failure to bind it restores what was
// there, and returns the failure.
func (m *Manager) swapLocked(ctx context.Context, added, removed []netip.Prefix) error {
	var bound []netip.Prefix
	var err error
	for _, v := range added {
		if err = ctx.Err(); err != nil {
			err = fmt.Errorf("vip: add %s on %s: %w", v, m.cfg.Interface, err)
			break
		}
		if err = m.bindLocked(v, m.until); err != nil {
			break
		}
		bound = append(bound, v)
	}
	if err != nil {
		for _, v := range bound {
			if _, uerr := m.unbindLocked(v); uerr != nil {
				err = errors.Join(err, fmt.Errorf("vip: roll back %s on %s: %w", v, m.cfg.Interface, uerr))
			}
		}
		return err
	}
	var errs []error
	for _, v := range removed {
		if _, uerr := m.unbindLocked(v); uerr != nil {
			errs = append(errs, fmt.Errorf("vip: delete %s on %s: %w", v, m.cfg.Interface, uerr))
		}
	}
	// A removed VIP that could not be deleted is no longer this Manager's: reported, not rolled back
	// (the new VIPs are bound and in use).
	return errors.Join(errs...)
}

// announceAddedLocked sends the burst (Count rounds) for the VIPs just added.
func (m *Manager) announceAddedLocked(added []netip.Prefix) {
	if len(added) == 0 || len(m.anns) == 0 {
		return
	}
	var anns []announcement
	for _, a := range m.anns {
		if slices.Contains(added, a.vip) {
			anns = append(anns, a)
		}
	}
	for range m.cfg.Announce.Count {
		m.announceLocked(anns, "reloaded")
	}
}

// rescheduleLocked moves the announcement schedule onto the new configuration: the repeats left
// (at most the new Repeat) at the new interval, the refresh at the new period, from now.
func (m *Manager) rescheduleLocked(old AnnounceConfig) {
	a, now := m.cfg.Announce, time.Now()
	if a == old {
		return
	}
	m.repeatsLeft = min(m.repeatsLeft, a.Repeat)
	if m.repeatsLeft > 0 {
		m.nextRepeat = now.Add(a.RepeatInterval)
	}
	m.nextRefresh = time.Time{}
	if a.Refresh > 0 {
		m.nextRefresh = now.Add(a.Refresh)
	}
	m.poke()
}

// ErrNeedsSockets is returned by SetConfig for a configuration that needs a socket the Manager did
// not open: a VIP of an address family the current VIPs lack, or announcing or probing where the
// current configuration does neither. A new Manager can.
var ErrNeedsSockets = errors.New("needs a socket this Manager did not open")

// Reconfigurable reports why a Manager running c cannot take n through SetConfig: another interface
// or label, or a socket New did not open (ErrNeedsSockets); nil if it can. n is not validated.
func (c Config) Reconfigurable(n Config) error {
	switch {
	case n.Interface != c.Interface:
		return fmt.Errorf("vip: reconfigure %s: interface %s: a Manager has one interface", c.Interface, n.Interface)
	case n.Label != c.Label:
		return fmt.Errorf("vip: reconfigure %s: label %q to %q: a Manager has one label", c.Interface, c.Label, n.Label)
	}
	if err := c.sameSockets(n); err != nil {
		return fmt.Errorf("vip: reconfigure %s: %w", c.Interface, err)
	}
	return nil
}

// sameSockets reports, as ErrNeedsSockets, whether n needs a socket c's Manager may not have.
func (c Config) sameSockets(n Config) error {
	fams := func(vs []netip.Prefix) (v4, v6 bool) {
		for _, v := range vs {
			v4, v6 = v4 || v.Addr().Is4(), v6 || v.Addr().Is6()
		}
		return v4, v6
	}
	o4, o6 := fams(c.VIPs)
	n4, n6 := fams(n.VIPs)
	switch {
	case n.announces() && !c.announces(), n.probes() && !c.probes():
		return fmt.Errorf("announcing or probing where the running configuration does neither: %w", ErrNeedsSockets)
	case !c.announces() && !c.probes():
		return nil
	case n4 && !o4:
		return fmt.Errorf("IPv4 VIPs where the running ones are IPv6 only: %w", ErrNeedsSockets)
	case n6 && !o6:
		return fmt.Errorf("IPv6 VIPs where the running ones are IPv4 only: %w", ErrNeedsSockets)
	}
	return nil
}

// VIPs returns the configured VIPs, in configuration order.
func (m *Manager) VIPs() []netip.Prefix {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.cfg.VIPs)
}

// DiffPrefixes returns what is in b and not in a (added), and what is in a and not in b (removed),
// in their orders: what a reload from VIPs a to VIPs b adds and removes.
func DiffPrefixes(a, b []netip.Prefix) (added, removed []netip.Prefix) {
	for _, v := range b {
		if !slices.Contains(a, v) {
			added = append(added, v)
		}
	}
	for _, v := range a {
		if !slices.Contains(b, v) {
			removed = append(removed, v)
		}
	}
	return added, removed
}
