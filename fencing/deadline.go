// Package fencing guards against split brain: the self-fencing deadline a master keeps on the
// monotonic clock, and the hooks that hand the fencing token to the outside world.
//
// It is a leaf: it imports nothing of hacoord.
package fencing

import (
	"fmt"
	"time"
)

// Deadline returns the instant by which a master whose lease renewal was sent at sent (and
// acknowledged, granting ttl) must have let go of everything it holds.
//
// Why sent, not the time the acknowledgement arrived: the store starts the lease's new life when it
// receives the request, which is after we sent it, so counting from the send time can only make our
// deadline earlier than the store's expiry, never later. sent must come from time.Now() so that it
// carries the monotonic clock reading: wall-clock steps (NTP, an operator's date) cannot move it.
//
// Worst-case timeline for a master M that loses the store at instant L (the last acknowledged
// keepalive was sent at S <= L):
//
//	S            M sends a keepalive; the store receives it at R >= S and expires the lease at R+ttl.
//	S+ttl-margin M's deadline: the Coordinator's timer fires and M removes its VIPs (takes a few ms).
//	R+ttl        the earliest instant the store can expire M's lease (an etcd leader change only
//	             extends leases; ZooKeeper's session timeout runs from the server's last contact).
//	R+ttl+e      another node learns of the expiry, wins, and binds the VIPs (e >= one round trip).
//
// So M has let go margin (plus the election latency e) before anyone else can hold the VIPs. The
// margin must cover what can delay M between its timer firing and the address being gone: timer and
// scheduler latency, a GC pause, the netlink round trip, and clock-rate skew between M and the store
// (ppm, negligible at these TTLs). A process stopped with SIGSTOP, or killed, cannot act at all:
// the fence guard (Guard, a process of its own that is told every deadline) removes the VIPs for it,
// and the kernel lifetime the vip package puts on a bound VIP is the last backstop.
func Deadline(sent time.Time, ttl, margin time.Duration) time.Time {
	return sent.Add(ttl - margin)
}

// DefaultMargin returns the margin used when none is configured: a tenth of the TTL, at least 100ms
// and at most 1s. For the default 2s TTL it is 200ms, which leaves the master 1.8s of validity per
// acknowledged keepalive while keepalives are sent every ttl/4 (500ms).
func DefaultMargin(ttl time.Duration) time.Duration {
	m := ttl / 10
	if m < 100*time.Millisecond {
		m = 100 * time.Millisecond
	}
	if m > time.Second {
		m = time.Second
	}
	return m
}

// CheckMargin reports an error when margin leaves no useful validity out of ttl: the margin must be
// positive and at most half the TTL, otherwise a master would fence itself between keepalives.
func CheckMargin(ttl, margin time.Duration) error {
	if margin <= 0 {
		return fmt.Errorf("fencing: margin %v must be positive", margin)
	}
	if margin > ttl/2 {
		return fmt.Errorf("fencing: margin %v is more than half the TTL %v", margin, ttl)
	}
	return nil
}
