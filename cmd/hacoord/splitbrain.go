package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/hacoord/hacoord/election/health"
	"github.com/hacoord/hacoord/vip"
)

// The split-brain guards of the operators' guides, as the daemon wires them (docs/config.md,
// "Added for split-brain guards"): reference-IP arbitration (track_reference, election/health)
// and the conflict probe before binding (conflict, vip).

// referenceFlag is --track-reference ADDR (repeat): a reference address with the defaults of
// track_reference (arp for IPv4, icmp for IPv6, 1s, 500ms, rise 2, fall 3). Its references add to
// the file's track_reference, as --track-script adds to track_scripts.
type referenceFlag struct{ l *[]health.Reference }

func (f referenceFlag) Type() string { return "ip" }

func (f referenceFlag) String() string { return "[" + strings.Join(f.GetSlice(), ",") + "]" }

func (f referenceFlag) Set(s string) error {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not an IP address", s)
	}
	*f.l = append(*f.l, health.Reference{Address: a})
	return nil
}

func (f referenceFlag) Append(s string) error { return f.Set(s) }

func (f referenceFlag) Replace(ss []string) error {
	*f.l = nil
	for _, s := range ss {
		if err := f.Set(s); err != nil {
			return err
		}
	}
	return nil
}

func (f referenceFlag) GetSlice() []string {
	out := make([]string, len(*f.l))
	for i, r := range *f.l {
		out[i] = r.Address.String()
	}
	return out
}

// conflictPolicy maps the conflict key onto vip's policy; unset keeps vip's default (fence).
func conflictPolicy(key string, def vip.ConflictPolicy) vip.ConflictPolicy {
	if key == "" {
		return def
	}
	return vip.ConflictPolicy(key)
}

// wireConflicts gives every VIP Manager of the instance what conflict: fence runs: the fence hook,
// told the conflicts (HACOORD_REASON=conflict, HACOORD_CONFLICT) and the term being promoted.
// Without a fence hook the Managers bind and log the conflict.
func (in *instance) wireConflicts() {
	if in.hooks.fence == nil {
		return
	}
	for _, vm := range in.vms {
		vm.OnConflict(func(ctx context.Context, cs []vip.Conflict) error {
			e := in.hooks.fenceEvent(in.co.Status().State)
			e.Reason, e.Conflict = "conflict", conflictEnv(cs)
			return in.hooks.fence.Run(ctx, e)
		})
	}
}

// conflictEnv is HACOORD_CONFLICT: "VIP=MAC" for each conflict, separated by spaces.
func conflictEnv(cs []vip.Conflict) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.VIP.String() + "=" + c.HardwareAddr.String()
	}
	return strings.Join(parts, " ")
}
