package etcd

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hacoord/hacoord/fencing"
)

// leaderChangeSlack is what a store leader change takes beyond the followers' election timers: the
// pre-vote and vote round trips, the new leader's first commit and a client's reconnection to a
// live member, on a LAN and a loaded host.
const leaderChangeSlack = 100 * time.Millisecond

// Timing is what an etcd cluster's timing means for a master's lease.
//
// etcd does not publish its election timeout, but it shows through the shortest lease TTL it
// grants: the lessor's minimum is (3*ElectionTicks/2) heartbeats, that is 1.5 election timeouts,
// rounded up to whole seconds (etcdserver: minTTL, v3.7.3). LearnTiming reads it by asking for a 1s
// lease. The election timeout is then known only to within a third of a second, and Timing takes
// the longest consistent with MinTTL, so that RideOutTTL errs on the safe side: for etcd's defaults
// (heartbeat 100ms, election timeout 1s, minimum TTL 2s) it assumes 1.33s. Where the timeout is
// known (Config.StoreElectionTimeout, the lab), set ElectionTimeout directly.
type Timing struct {
	// ElectionTimeout is the store's election timeout (--election-timeout), or the longest one that
	// gives MinTTL.
	ElectionTimeout time.Duration
	// MinTTL is the shortest lease TTL the store grants; 0 when not learnt.
	MinTTL time.Duration
}

// TimingFromMinTTL returns the Timing of a store whose shortest lease TTL is minTTL: its election
// timeout is at most minTTL/1.5.
func TimingFromMinTTL(minTTL time.Duration) Timing {
	return Timing{ElectionTimeout: minTTL * 2 / 3, MinTTL: minTTL}
}

// LeaderChange bounds how long the store goes without a leader when its leader dies or is cut off:
// raft's followers campaign after a randomised timeout in [1, 2) election timeouts since the last
// heartbeat, plus leaderChangeSlack for the votes and the first commit. A new leader extends every
// lease by its election timeout (lessor Promote), so leases survive the change; what a master must
// survive is the time its renewals go unanswered.
func (t Timing) LeaderChange() time.Duration { return 2*t.ElectionTimeout + leaderChangeSlack }

// RidesOut reports whether a master with lease ttl, fencing margin and keepalive interval keeps its
// VIPs through a store leader change: its last acknowledged keepalive may have been sent up to one
// interval before the leader failed, and it holds the VIPs until that send time + ttl - margin, so
// ttl - margin - interval must exceed LeaderChange.
func (t Timing) RidesOut(ttl, margin, interval time.Duration) bool {
	return ttl-margin-interval > t.LeaderChange()
}

// RideOutTTL returns the shortest whole-second TTL, at least MinTTL, that rides out a store leader
// change with the default margin (fencing.DefaultMargin) and keepalive interval (TTL/4).
func (t Timing) RideOutTTL() time.Duration {
	ttl := max(t.MinTTL, time.Second)
	for !t.RidesOut(ttl, fencing.DefaultMargin(ttl), ttl/4) {
		ttl += time.Second
	}
	return ttl
}

// String describes t for logs.
func (t Timing) String() string {
	return fmt.Sprintf("election timeout <= %v, minimum lease TTL %v, leader change <= %v",
		t.ElectionTimeout, t.MinTTL, t.LeaderChange())
}

// LearnTiming asks etcd for a 1s lease, reads the TTL it grants (its minimum, if above 1s), revokes
// the lease and returns the Timing that follows.
func LearnTiming(ctx context.Context, cli *clientv3.Client) (Timing, error) {
	resp, err := cli.Grant(ctx, 1)
	if err != nil {
		return Timing{}, fmt.Errorf("etcd: grant a 1s lease to learn the minimum TTL: %w", err)
	}
	// Best effort: the probe expires within its TTL anyway.
	_, _ = cli.Revoke(ctx, resp.ID)
	return TimingFromMinTTL(time.Duration(resp.TTL) * time.Second), nil
}
