package vip

import (
	"context"
	"time"
)

// AcquireAfterHandover is Acquire without the conflict probe, for a takeover that follows a
// planned handover: the previous holder released the VIPs before it gave up its term, and the
// store recorded that in the same write that ended the term, with no holder since
// (election.State.Handover). The probe, 3 x 20 ms of ARP/DAD before the first bind, would only
// find the addresses free; skipping it takes that much off a planned move's outage. Anything
// else (a crash, an expiry, a host outside the group squatting on a VIP) still goes through
// Acquire's probe. What it trusts: that the old holder's demote removed the addresses. A demote
// whose netlink delete failed is logged there and still counts as done; its VIP then goes with its
// kernel lifetime (vip_lifetime), by the old holder's deadline, not at once.
func (m *Manager) AcquireAfterHandover(ctx context.Context, until time.Time) error {
	return m.acquire(ctx, until, false)
}
