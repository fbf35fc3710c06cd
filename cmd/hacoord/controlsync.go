package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/hacoord/hacoord/election"
)

// Control requests on a member of a sync group move the whole group, as keepalived moves a
// vrrp_sync_group together (election/syncgroup: the members are master together or not at all,
// and the followers are candidates only on the node that holds the group's leader, its first
// member). Acting on a single member would break the group: a follower that resigns or goes into
// maintenance demotes every member on this node while the leader, still master here, keeps the
// other nodes' followers out, so nobody would hold the group. Hence, whichever member is named:
//
//   - resign and transfer act on the leader's Elector: the group follows its leader to the node
//     that takes it (a resign refused there, ErrNoOtherCandidate, leaves the whole group in place);
//     the answer comes once every member's VIPs are released;
//   - maintenance on/off is applied to every member (leader first for on, last for off) and
//     persisted for each, so a restarted daemon keeps the whole group out; on answers once no
//     member holds a VIP. A group with a member that has no maintenance mode is refused, and
//     nothing is changed.

// syncTarget is the sync group an instance of the daemon belongs to.
type syncTarget struct {
	name    string
	members []*instance // the leader first
}

// syncTargets maps every instance in a sync group of p to its group (insts are p.instances, opened).
func syncTargets(p *plan, insts []*instance) map[*instance]*syncTarget {
	m := map[*instance]*syncTarget{}
	for _, sg := range p.syncGroups {
		t := &syncTarget{name: sg.name}
		for _, i := range sg.members {
			if i < len(insts) {
				t.members = append(t.members, insts[i])
			}
		}
		for _, in := range t.members {
			m[in] = t
		}
	}
	return m
}

func (t *syncTarget) String() string {
	names := make([]string, len(t.members))
	for i, in := range t.members {
		names[i] = in.plan.name
	}
	return fmt.Sprintf("sync group %s (instances %s)", t.name, strings.Join(names, ", "))
}

// transferTimeout is the request's --timeout, which must be a positive duration.
func (req controlRequest) transferTimeout() (time.Duration, error) {
	d, err := time.ParseDuration(req.Timeout)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--timeout %q: want a positive duration", req.Timeout)
	}
	return d, nil
}

// instanceRole is in's role as its Coordinator last saw it.
func instanceRole(in *instance) string {
	if in.co == nil {
		return "not running"
	}
	return in.co.Status().State.Role.String()
}

// waitReleasedAll waits until no member of sg holds a VIP.
func (s *controlServer) waitReleasedAll(ctx context.Context, sg *syncTarget) error {
	for _, in := range sg.members {
		if w := s.held[in]; w != nil {
			if err := w.waitReleased(ctx); err != nil {
				return fmt.Errorf("%s: instance %s still holds its VIPs: %w", sg, in.plan.name, err)
			}
		}
	}
	return nil
}

// doSync carries out req for sync group sg (see the comment at the top).
func (s *controlServer) doSync(ctx context.Context, req controlRequest, sg *syncTarget) (string, error) {
	lead := sg.members[0]
	switch req.Op {
	case "resign":
		r, ok := lead.el.(election.Resigner)
		if !ok {
			return "", fmt.Errorf("%s: backend %s of its leader %s cannot resign on request: %w", sg, lead.plan.backend, lead.plan.name, election.ErrUnsupported)
		}
		switch err := r.Resign(ctx); {
		case errors.Is(err, election.ErrNotMaster):
			return "", fmt.Errorf("%s is not master of %s (its leader %s is %s): nothing to resign", s.node, sg, lead.plan.name, instanceRole(lead))
		case errors.Is(err, election.ErrNoOtherCandidate):
			return "", fmt.Errorf("%s stays master of %s: no other candidate could take over its leader %s: nothing done; "+
				"use `hacoord maintenance on` to take the node out anyway", s.node, sg, lead.plan.name)
		case err != nil:
			return "", fmt.Errorf("resign %s: %w", sg, err)
		}
		if err := s.waitReleasedAll(ctx, sg); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s resigned %s: every member's VIPs are released and the next node takes the whole group", s.node, sg), nil
	case "transfer":
		tr, ok := lead.el.(election.Transferer)
		if !ok {
			return "", fmt.Errorf("%s: backend %s of its leader %s cannot transfer: %w", sg, lead.plan.backend, lead.plan.name, election.ErrUnsupported)
		}
		d, err := req.transferTimeout()
		if err != nil {
			return "", err
		}
		switch err := tr.Transfer(ctx, req.To, d); {
		case errors.Is(err, election.ErrNotMaster):
			return "", fmt.Errorf("%s is not master of %s (its leader %s is %s): run the transfer on the master", s.node, sg, lead.plan.name, instanceRole(lead))
		case errors.Is(err, election.ErrNoSuchCandidate):
			return "", fmt.Errorf("--to %s: not a candidate of group %s, the leader of %s (not running, unhealthy or in maintenance)", req.To, lead.plan.group, sg)
		case err != nil:
			return "", fmt.Errorf("transfer %s to %s: %w", sg, req.To, err)
		}
		if err := s.waitReleasedAll(ctx, sg); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s handed %s over to %s (the others hold back for %v)", s.node, sg, req.To, d), nil
	case "maintenance":
		ms := make([]election.Maintainer, len(sg.members))
		for i, in := range sg.members {
			m, ok := in.el.(election.Maintainer)
			if !ok {
				return "", fmt.Errorf("%s: backend %s of member %s has no maintenance mode, so the group cannot be taken out together: %w",
					sg, in.plan.backend, in.plan.name, election.ErrUnsupported)
			}
			ms[i] = m
		}
		for i, in := range sg.members {
			if err := s.persistMaintenance(in, req.On); err != nil {
				// Undo the members already saved: one member's flag stands for the whole group
				// at the next start, and none was applied.
				for _, done := range sg.members[:i] {
					_ = s.persistMaintenance(done, !req.On)
				}
				return "", err
			}
		}
		// On: the leader first, so that the group follows it to another node; off: the leader
		// last, so that it wins only once its followers may run too.
		for i := range ms {
			k := i
			if !req.On {
				k = len(ms) - 1 - i
			}
			ms[k].SetMaintenance(req.On)
		}
		if !req.On {
			return fmt.Sprintf("%s is out of maintenance for %s: it campaigns again", s.node, sg), nil
		}
		if err := s.waitReleasedAll(ctx, sg); err != nil {
			return "", fmt.Errorf("maintenance on: %w", err)
		}
		return fmt.Sprintf("%s is in maintenance for %s: it holds no VIP of the group and stays out, across restarts, until 'hacoord maintenance off'", s.node, sg), nil
	}
	return "", fmt.Errorf("unknown operation %q", req.Op)
}

// maintenanceFlag returns the maintenance flag file that keeps in out at start ("" when none): its
// own, or for a member of a sync group the first member's that has one, so that the group stays
// out as a whole (a follower alone out would leave the group held by nobody while the leader wins
// here).
func (s *controlServer) maintenanceFlag(in *instance) (string, error) {
	ins := []*instance{in}
	if sg := s.groupOf[in]; sg != nil {
		ins = sg.members
	}
	for _, m := range ins {
		f := s.maintenanceFile(m)
		switch _, err := os.Stat(f); {
		case err == nil:
			return f, nil
		case !errors.Is(err, fs.ErrNotExist):
			return "", fmt.Errorf("state dir: %w", err)
		}
	}
	return "", nil
}
