package vip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// A Conflict is another host found answering for a VIP by the probe before binding.
type Conflict struct {
	VIP netip.Prefix
	// HardwareAddr is the other host's: the ARP sender, or the advertisement's target link-layer
	// address.
	HardwareAddr net.HardwareAddr
	// Since is when the probe first heard it.
	Since time.Time
}

// String names the VIP and the host: "10.0.0.100/24 at 02:00:00:00:00:99".
func (c Conflict) String() string { return c.VIP.String() + " at " + c.HardwareAddr.String() }

// ErrConflict is returned by Acquire, wrapped with the error of the OnConflict function, when
// ConflictFence found another host answering for a VIP and the function failed: nothing is bound.
var ErrConflict = errors.New("another host answers for the VIP")

// OnConflict sets what ConflictFence calls when the probe finds other hosts answering for VIPs:
// f gets Acquire's context and the conflicts, and Acquire binds when f returns nil and fails with
// ErrConflict (binding nothing) when it does not. f runs with the Manager's lock held, so it must
// not call the Manager. Call OnConflict before the first Acquire.
func (m *Manager) OnConflict(f func(ctx context.Context, cs []Conflict) error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.onConflict = f
}

// Conflicts returns the VIPs ConflictWait holds back because another host answers for them, in
// configuration order; none while the VIPs are not held.
func (m *Manager) Conflicts() []Conflict {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Conflict
	for _, v := range m.cfg.VIPs {
		if c, ok := m.pending[v]; ok {
			c.HardwareAddr = slices.Clone(c.HardwareAddr)
			out = append(out, c)
		}
	}
	return out
}

// checkConflictsLocked probes every VIP and applies the policy to what answers: it returns the
// VIPs to hold back (ConflictWait), or an error that must keep Acquire from binding anything: ctx
// ended or until passed during the probe, or ConflictFence's function failed. A probe that cannot
// be sent is logged and binds: not knowing is no reason to refuse a failover.
func (m *Manager) checkConflictsLocked(ctx context.Context, until time.Time) (map[netip.Prefix]Conflict, error) {
	return m.checkConflictsOfLocked(ctx, until, m.cfg.VIPs)
}

// checkConflictsOfLocked is checkConflictsLocked for targets only (the VIPs a reload adds).
func (m *Manager) checkConflictsOfLocked(ctx context.Context, until time.Time, targets []netip.Prefix) (map[netip.Prefix]Conflict, error) {
	cs, err := m.probeLocked(ctx, until, targets)
	if err != nil || len(cs) == 0 {
		return nil, err
	}
	switch m.cfg.Conflict.Policy {
	case ConflictWait:
		hold := map[netip.Prefix]Conflict{}
		for _, c := range cs {
			hold[c.VIP] = c
			m.log.Error("another host answers for a VIP: not binding it while it does (conflict: wait)",
				zap.Stringer("vip", c.VIP), zap.Stringer("mac", c.HardwareAddr), zap.Duration("retry", m.cfg.Conflict.Retry))
		}
		return hold, nil
	case ConflictBind:
		for _, c := range cs {
			m.log.Error("another host answers for a VIP: binding it anyway (conflict: bind)",
				zap.Stringer("vip", c.VIP), zap.Stringer("mac", c.HardwareAddr))
		}
		return nil, nil
	}
	// ConflictFence.
	if m.onConflict == nil {
		for _, c := range cs {
			m.log.Error("another host answers for a VIP: binding it anyway (conflict: fence, but no fence hook to run)",
				zap.Stringer("vip", c.VIP), zap.Stringer("mac", c.HardwareAddr))
		}
		return nil, nil
	}
	for _, c := range cs {
		m.log.Error("another host answers for a VIP: fencing it before binding (conflict: fence)",
			zap.Stringer("vip", c.VIP), zap.Stringer("mac", c.HardwareAddr))
	}
	if err := m.onConflict(ctx, cs); err != nil {
		return nil, fmt.Errorf("vip: acquire on %s: %w (%s): fence: %w", m.cfg.Interface, ErrConflict, conflictList(cs), err)
	}
	m.log.Info("fenced the other host; binding", zap.String("conflicts", conflictList(cs)))
	return nil, nil
}

func conflictList(cs []Conflict) string {
	var b bytes.Buffer
	for i, c := range cs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c.String())
	}
	return b.String()
}

// probeLocked sends the conflict probe for targets (cfg.VIPs or a subset) and returns who
// answers, in configuration order. It stops at ctx's end and at until: then it returns an error
// (ErrDeadlinePassed for until), and the caller binds nothing. A failure to probe is logged and
// returns no conflicts.
func (m *Manager) probeLocked(ctx context.Context, until time.Time, targets []netip.Prefix) ([]Conflict, error) {
	if !m.cfg.probes() || m.probes == nil || len(targets) == 0 {
		return nil, nil
	}
	pctx := ctx
	if !until.IsZero() {
		var cancel context.CancelFunc
		pctx, cancel = context.WithDeadline(ctx, until)
		defer cancel()
	}
	req := probeRequest{own: m.mac, rounds: m.cfg.Conflict.Probes, interval: m.cfg.Conflict.Interval}
	for i, v := range m.cfg.VIPs {
		if containsPrefix(targets, v) {
			req.targets = append(req.targets, v.Addr())
			req.frames = append(req.frames, m.probes[i])
		}
	}
	start := time.Now()
	answers, err := m.k.probe(pctx, req)
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("vip: conflict probe on %s: %w", m.cfg.Interface, ctx.Err())
	case expired(until, time.Now()):
		return nil, fmt.Errorf("vip: conflict probe on %s: %w", m.cfg.Interface, ErrDeadlinePassed)
	case err != nil:
		m.log.Warn("conflict probe failed; binding without knowing whether another host has the VIPs", zap.Error(err))
		return nil, nil
	}
	m.log.Debug("conflict probe done", zap.Duration("took", time.Since(start)), zap.Int("answers", len(answers)))
	var out []Conflict
	for _, v := range m.cfg.VIPs {
		for _, a := range answers {
			if a.addr == v.Addr() && containsPrefix(targets, v) {
				out = append(out, Conflict{VIP: v, HardwareAddr: a.mac, Since: time.Now()})
			}
		}
	}
	return out, nil
}

// retryPendingLocked probes the held-back VIPs again (ConflictWait): those nobody answers for any
// more are bound and announced; the others wait for the next retry.
func (m *Manager) retryPendingLocked() {
	var targets []netip.Prefix
	for _, v := range m.cfg.VIPs {
		if m.isPendingLocked(v) {
			targets = append(targets, v)
		}
	}
	m.nextProbe = time.Now().Add(m.cfg.Conflict.Retry)
	cs, err := m.probeLocked(context.Background(), m.until, targets)
	if err != nil {
		return // the deadline passed: the owner releases
	}
	still := map[netip.Prefix]Conflict{}
	for _, c := range cs {
		if old, ok := m.pending[c.VIP]; ok {
			c.Since = old.Since
		}
		still[c.VIP] = c
	}
	for i, v := range targets {
		if _, ok := still[v]; ok {
			m.log.Debug("another host still answers for a VIP", zap.Stringer("vip", v), zap.Stringer("mac", still[v].HardwareAddr))
			continue
		}
		delete(m.pending, v)
		if !m.mayActLocked() {
			continue
		}
		if err := m.bindLocked(v, m.until); err != nil {
			m.log.Error("nobody else answers for the VIP any more, but binding it failed", zap.Stringer("vip", v), zap.Error(err))
			m.pending[v] = Conflict{VIP: v, Since: time.Now()} // try again at the next retry
			continue
		}
		m.log.Info("nobody else answers for the VIP any more: bound it", zap.Stringer("vip", v))
		if j := slices.Index(m.cfg.VIPs, targets[i]); j >= 0 && m.anns != nil {
			for range max(m.cfg.Announce.Count, 1) {
				m.announceLocked(m.anns[j:j+1], "conflict cleared")
			}
		}
	}
	for v, c := range still {
		m.pending[v] = c
	}
	if len(m.pending) == 0 {
		m.nextProbe = time.Time{}
	}
}

func (m *Manager) isPendingLocked(v netip.Prefix) bool {
	_, ok := m.pending[v]
	return ok
}

// boundSetLocked returns the configured VIPs but those in hold.
func (m *Manager) boundSetLocked(hold map[netip.Prefix]Conflict) []netip.Prefix {
	var out []netip.Prefix
	for _, v := range m.cfg.VIPs {
		if _, ok := hold[v]; !ok {
			out = append(out, v)
		}
	}
	return out
}

// setMACLocked builds the announcements and probe frames from the interface's hardware address.
func (m *Manager) setMACLocked(mac net.HardwareAddr) error {
	var anns []announcement
	if m.cfg.announces() {
		for _, v := range m.cfg.VIPs {
			a, err := buildAnnouncement(mac, v)
			if err != nil {
				return err
			}
			anns = append(anns, a)
		}
	}
	var probes [][]byte
	if m.cfg.probes() && len(mac) == 6 {
		for _, v := range m.cfg.VIPs {
			f, err := probeFrame(mac, v.Addr())
			if err != nil {
				return err
			}
			probes = append(probes, f)
		}
	}
	m.mac, m.anns, m.probes = slices.Clone(mac), anns, probes
	return nil
}

// relinkLocked looks the interface up by name again (see kernel.relink): after it was deleted and
// created again, binding and announcing go to the new one, with its hardware address.
func (m *Manager) relinkLocked(reason string) error {
	index, mac, changed, err := m.k.relink()
	if err != nil {
		return err
	}
	if changed {
		m.forgetAddrsLocked()
		m.log.Warn("the interface was deleted and created again; using the new one", zap.Int("index", index), zap.String("reason", reason))
	}
	if !bytes.Equal(mac, m.mac) {
		if err := m.setMACLocked(mac); err != nil {
			m.log.Error("the interface's new hardware address cannot announce the VIPs", zap.Stringer("mac", mac), zap.Error(err))
			return nil
		}
		m.log.Warn("the interface has a new hardware address; announcing it", zap.Stringer("mac", mac))
	}
	return nil
}

// unbindLocked deletes v; if the interface's index is gone it looks the interface up by name again
// and deletes v there (a fence guard that opened the old interface must still find a VIP its
// daemon bound on the new one). An interface that is gone for good has no VIP left.
func (m *Manager) unbindLocked(v netip.Prefix) (bool, error) {
	ok, err := m.unbindAnyLocked(v)
	if err == nil {
		m.seenLocked(v, false)
	}
	return ok, err
}

func (m *Manager) unbindAnyLocked(v netip.Prefix) (bool, error) {
	ok, err := m.k.unbind(v)
	if !isNoDevice(err) {
		return ok, err
	}
	if m.relinkLocked("delete") != nil {
		return false, nil // the interface is gone, and its addresses with it
	}
	ok, err = m.k.unbind(v)
	if isNoDevice(err) {
		return false, nil
	}
	return ok, err
}

// isNoDevice reports whether err is the kernel's "no such device": the interface index is gone.
func isNoDevice(err error) bool { return errors.Is(err, unix.ENODEV) }
