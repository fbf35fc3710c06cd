package zk

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"
)

// SetRecordVIPs sets the VIPs of the master record this node publishes (a reload changed the
// instance's VIPs). A master writes its leader znode again at once, in the same term, at the
// version it owns; a candidate publishes them when it next becomes master. Safe from any
// goroutine; it does not block (the session's loop writes).
func (e *Elector) SetRecordVIPs(vips []netip.Prefix) {
	e.recVIPs.Set(vips)
	notify(e.prioc)
}

// recordVIPs returns the VIPs the master record carries: SetRecordVIPs's, else the Config's.
func (e *Elector) recordVIPs() []netip.Prefix { return e.recVIPs.Get(e.cfg.Record.VIPs) }

// refreshVIPs puts SetRecordVIPs's VIPs into our record for the current term and, when our leader
// znode holds it, writes it there at the version we own (a version that moved meanwhile leaves it
// to publish, which rewrites our own znode).
func (r *sessionRun) refreshVIPs() error {
	vips := r.e.recordVIPs()
	if r.rec.mine.Term == 0 || slices.Equal(vips, r.rec.mine.VIPs) {
		return nil
	}
	r.rec.mine.VIPs = vips
	if !r.rec.owned {
		return nil // publish writes it
	}
	p := r.e.paths.leader
	var st *zk.Stat
	err := r.call(func() (err error) { st, err = r.c.Set(p, r.rec.mine.Marshal(), r.rec.version); return err })
	switch {
	case errors.Is(err, zk.ErrBadVersion), errors.Is(err, zk.ErrNoNode):
		r.rec.owned = false
		return nil
	case errors.Is(err, zk.ErrNoAuth):
		return noAuth("write", p, r.e.cfg.Auth)
	case err != nil:
		r.rec.owned = false // publish tries again
		return fmt.Errorf("zk: write %s: %w", p, err)
	}
	r.rec.version = st.Version
	r.log.Info("master record written again with the new VIPs", zap.Stringers("vips", vips))
	return nil
}
