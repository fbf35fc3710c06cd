package etcd

import (
	"context"
	"errors"
	"net/netip"
	"slices"

	"go.uber.org/zap"
)

// SetRecordVIPs sets the VIPs of the master record this node publishes (a reload changed the
// instance's VIPs). A master writes its record again at once, under its lease and guarded by its
// election key as the claim wrote it, in the same term; a candidate publishes them when it next
// becomes master. Safe from any goroutine; it does not block (the master loop writes).
func (e *Elector) SetRecordVIPs(vips []netip.Prefix) {
	e.recVIPs.Set(vips)
	e.poke()
}

// recordVIPs returns the VIPs the master record carries: SetRecordVIPs's, else the Config's.
func (e *Elector) recordVIPs() []netip.Prefix { return e.recVIPs.Get(e.cfg.Record.VIPs) }

// refreshRecord writes the master record again when SetRecordVIPs changed its VIPs. It returns
// errKeyGone when the term is over; a store failure is logged (the record keeps the old VIPs until
// the next term, or the next SetRecordVIPs). The write is bounded by the keepalive interval (as
// every store call of the term) and by the term's validity.
func (m *mastership) refreshRecord(ctx context.Context) error {
	vips := m.t.e.recordVIPs()
	if slices.Equal(vips, m.rec.VIPs) {
		return nil
	}
	rec := m.rec
	rec.VIPs = vips
	if !m.valid.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, m.valid)
		defer cancel()
	}
	if _, err := m.t.writeRecord(ctx, rec); err != nil {
		if errors.Is(err, errKeyGone) {
			return err
		}
		m.log.Warn("master record not written again with the new VIPs; it carries them from the next term", zap.Error(err))
		return nil
	}
	m.rec = rec
	m.log.Info("master record written again with the new VIPs", zap.Stringers("vips", vips))
	return nil
}
