package main

import (
	"slices"
	"time"

	"github.com/hacoord/hacoord/backend/vrrp"
	"github.com/hacoord/hacoord/election"
)

// VRRPStatus is what a VRRP instance heard from the other routers of its VRID, in its status
// file: the routers whose adverts do not match its configuration (another version, VIP list,
// password or advert interval). Such a router does not join this virtual router, so both may be
// master at once (keepalived's default is VRRPv2; hacoord's is v3). The counts change only when
// adverts are dropped or mismatched, so a healthy instance's status file is not rewritten for
// them.
type VRRPStatus struct {
	// Mismatches are the mismatched routers heard since the daemon started, one entry per reason
	// and source (the 64 most recent), by reason and source.
	Mismatches []VRRPMismatch `json:"mismatches"`
	// Mismatched counts the mismatched adverts by reason; Dropped the packets that failed a
	// receive check, by reason (ttl, version, vrid, auth, ...).
	Mismatched map[string]uint64 `json:"mismatched,omitempty"`
	Dropped    map[string]uint64 `json:"dropped,omitempty"`
}

// VRRPMismatch is one router whose adverts for this VRID do not match (vrrp.Mismatch).
type VRRPMismatch struct {
	Reason string `json:"reason"` // version, vips, auth, advert-int
	Source string `json:"source"` // the other router's address
	Detail string `json:"detail"` // what it sent and what this router expects (never a password)
	// Dropped is true when its adverts are dropped (it does not join this virtual router).
	Dropped bool      `json:"dropped"`
	Count   uint64    `json:"count"`
	First   time.Time `json:"first"`
	Last    time.Time `json:"last"`
}

// vrrpStatus renders what a VRRP Elector reports.
func vrrpStatus(st vrrp.Stats, ms []vrrp.Mismatch) *VRRPStatus {
	out := &VRRPStatus{Mismatches: []VRRPMismatch{}}
	for _, m := range ms {
		out.Mismatches = append(out.Mismatches, VRRPMismatch{Reason: string(m.Reason), Source: m.Source.String(), Detail: m.Detail,
			Dropped: m.Dropped, Count: m.Count, First: m.First.UTC(), Last: m.Last.UTC()})
	}
	slices.SortFunc(out.Mismatches, func(a, b VRRPMismatch) int {
		if a.Reason != b.Reason {
			if a.Reason < b.Reason {
				return -1
			}
			return 1
		}
		if a.Source < b.Source {
			return -1
		}
		if a.Source > b.Source {
			return 1
		}
		return 0
	})
	for r, n := range st.Mismatched {
		if n > 0 {
			if out.Mismatched == nil {
				out.Mismatched = map[string]uint64{}
			}
			out.Mismatched[string(r)] = n
		}
	}
	for r, n := range st.Dropped {
		if n > 0 {
			if out.Dropped == nil {
				out.Dropped = map[string]uint64{}
			}
			out.Dropped[string(r)] = n
		}
	}
	return out
}

// withVRRP adds the VRRP section to what snap returns when el is a VRRP Elector.
func withVRRP(snap func() Status, el election.Elector) func() Status {
	v, ok := el.(*vrrp.Elector)
	if !ok {
		return snap
	}
	return func() Status {
		st := snap()
		st.VRRP = vrrpStatus(v.Stats(), v.Mismatches())
		return st
	}
}
