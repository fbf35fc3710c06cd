package election

import (
	"net/netip"
	"slices"
	"sync/atomic"
)

// RecordVIPs holds the VIPs a backend's master record carries when a reload changed them
// (SetRecordVIPs); until one does, the configured ones. Its zero value holds none set. Safe from
// any goroutine.
type RecordVIPs struct {
	p atomic.Pointer[[]netip.Prefix]
}

// Set keeps a copy of vips.
func (r *RecordVIPs) Set(vips []netip.Prefix) {
	v := slices.Clone(vips)
	r.p.Store(&v)
}

// Get returns a copy of the VIPs Set kept, else of configured.
func (r *RecordVIPs) Get(configured []netip.Prefix) []netip.Prefix {
	if p := r.p.Load(); p != nil {
		return slices.Clone(*p)
	}
	return slices.Clone(configured)
}
