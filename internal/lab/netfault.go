package lab

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/hacoord/hacoord/internal/netnstest"
)

// The network faults the lab injects with nftables inside a namespace (a node's or a store
// member's). Each is its own table, so that they can be undone one by one; none touches anything
// outside the namespace.
const (
	// faultPartition drops everything but loopback (partitionRules).
	faultPartition = "partition"
	// faultCut drops IP traffic to and from some addresses (cutRules).
	faultCut = "cut"
	// faultLoss drops a share of all IP traffic but loopback (lossRules).
	faultLoss = "loss"
)

// partitionRules drop everything but loopback, in both directions: IP (inet), ARP, and — with the
// netdev ingress/egress hooks on eth0 — frames of AF_PACKET sockets too (gratuitous ARP is sent on
// one, and those bypass the inet and arp hooks). The egress hook needs Linux 5.16.
const partitionRules = `table inet hacoord_lab {
	chain input { type filter hook input priority -300; policy drop; iif "lo" accept; }
	chain output { type filter hook output priority -300; policy drop; oif "lo" accept; }
}
table arp hacoord_lab {
	chain input { type filter hook input priority 0; policy drop; }
	chain output { type filter hook output priority 0; policy drop; }
}
table netdev hacoord_lab {
	chain ingress { type filter hook ingress device "eth0" priority 0; policy drop; }
	chain egress { type filter hook egress device "eth0" priority 0; policy drop; }
}
`

const healRules = "delete table inet hacoord_lab\ndelete table arp hacoord_lab\ndelete table netdev hacoord_lab\n"

// cutRules drop IP packets to and from addrs; ARP and everything else pass.
func cutRules(addrs []netip.Addr) string {
	var s []string
	for _, a := range addrs {
		s = append(s, a.String())
	}
	set := "{ " + strings.Join(s, ", ") + " }"
	return fmt.Sprintf(`table inet hacoord_lab_cut {
	chain input { type filter hook input priority -300; policy accept; ip saddr %s drop; }
	chain output { type filter hook output priority -300; policy accept; ip daddr %s drop; }
}
`, set, set)
}

// lossRules drop pct percent (1..99: numgen's range) of the IP packets in each direction, at random
// (nftables numgen), loopback excepted.
func lossRules(pct int) string {
	return fmt.Sprintf(`table inet hacoord_lab_loss {
	chain input { type filter hook input priority -300; policy accept; iif "lo" accept; numgen random mod 100 < %d drop; }
	chain output { type filter hook output priority -300; policy accept; oif "lo" accept; numgen random mod 100 < %d drop; }
}
`, pct, pct)
}

var undoRules = map[string]string{
	faultPartition: healRules,
	faultCut:       "delete table inet hacoord_lab_cut\n",
	faultLoss:      "delete table inet hacoord_lab_loss\n",
}

// netFaults are the network faults in force in one namespace. Safe for concurrent use.
type netFaults struct {
	ns  *netnstest.NS
	who string // names the namespace in errors

	mu sync.Mutex
	on []string // fault kinds in force
}

// add installs a fault of the given kind (one of each kind at a time).
func (f *netFaults) add(ctx context.Context, kind, rules string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if slices.Contains(f.on, kind) {
		return fmt.Errorf("lab: %s: a %s fault is already in force", f.who, kind)
	}
	if err := nft(ctx, f.ns, f.who, rules); err != nil {
		return err
	}
	f.on = append(f.on, kind)
	return nil
}

// has reports whether a fault of kind is in force.
func (f *netFaults) has(kind string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.on, kind)
}

// clear removes every fault in force.
func (f *netFaults) clear(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.on) > 0 {
		kind := f.on[len(f.on)-1]
		if err := nft(ctx, f.ns, f.who, undoRules[kind]); err != nil {
			return err
		}
		f.on = f.on[:len(f.on)-1]
	}
	return nil
}

// nft loads the ruleset script into the nftables of ns (`nft -f -`); who names ns in errors.
func nft(ctx context.Context, ns *netnstest.NS, who, script string) error {
	cmd := ns.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lab: %s: nft -f -: %w\n%s", who, err, out)
	}
	return nil
}
