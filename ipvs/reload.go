package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"sync"

	"go.uber.org/zap"

	"github.com/hacoord/hacoord/ipvs/check"
)

// reloadState is the part of a Reconciler a reload changes besides its cfg: the checkers' generation
// (their names carry it, so a result from a checker a reload replaced is recognised and dropped) and
// the signal that tells Run to restart the checkers.
type reloadState struct {
	gen     int
	restart chan struct{} // closed by SetConfig: the running checkers are the old ones
}

// SetConfig replaces the virtual servers and the check defaults at run time (a reload). cfg must
// validate and keep ProgramOnBackup and ResyncInterval (Run and Demote are built on them). A real
// server that stays, with the same check, keeps its checker's verdict; a new one starts as New
// starts it. The desired table is recomputed at once and, while active (promoted, or
// program_on_backup), the kernel's brought in step: services and real servers the reload removed
// and this Reconciler created are removed, new ones added. Run restarts the checkers on the new
// configuration. A Reconciler that was disabled (no virtual servers in New's Config) stays
// disabled: it refuses virtual servers. Safe from any goroutine, concurrently with Run and the other
// methods (the Reconciler's mutex serialises it with them); it does not block on the kernel longer
// than one apply.
func (r *Reconciler) SetConfig(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case cfg.ProgramOnBackup != r.cfg.ProgramOnBackup:
		return fmt.Errorf("ipvs: program_on_backup cannot change at run time")
	case cfg.ResyncInterval != r.cfg.ResyncInterval:
		return fmt.Errorf("ipvs: resync_interval cannot change at run time")
	case r.state == StateDisabled && len(cfg.VirtualServers) > 0:
		return fmt.Errorf("ipvs: virtual servers added to a Reconciler built without any")
	}
	gen := r.rl.gen + 1
	checkers, index, health, err := buildCheckersFrom(cfg, gen, r.log, r.carried(cfg))
	if err != nil {
		return err
	}
	_, st := desiredTable(cfg, health, nil)
	quorum := make([]bool, len(st))
	for i, s := range st {
		quorum[i] = s.Quorum
		for j, o := range r.services {
			if o.Service == s.Service && j < len(r.quorum) {
				quorum[i] = r.quorum[j] // hysteresis goes on
			}
		}
	}
	// Field by field: Run and Demote read ProgramOnBackup and ResyncInterval without the lock.
	r.cfg.VirtualServers, r.cfg.Check = cfg.VirtualServers, cfg.Check
	r.checkers, r.index, r.health, r.quorum, r.rl.gen = checkers, index, health, quorum, gen
	if r.rl.restart != nil {
		close(r.rl.restart)
		r.rl.restart = nil
	}
	if r.client == nil {
		_, r.services = desiredTable(cfg, health, quorum)
		return nil
	}
	r.logApply(r.applyLocked())
	return nil
}

// buildCheckers builds a checker per real server that has a check, named "<gen>/<vs>/<rs>" (gen 0:
// "<vs>/<rs>", New's), and every real server's starting verdict.
func buildCheckers(cfg Config, gen int, log *zap.Logger) ([]*check.Checker, map[string][2]int, [][]check.Status, error) {
	return buildCheckersFrom(cfg, gen, log, nil)
}

// buildCheckersFrom is buildCheckers, with the starting verdict carry gives for a real server
// (the checker then starts in it, so that it reports the next change) instead of the checker's.
func buildCheckersFrom(cfg Config, gen int, log *zap.Logger, carry func(i, j int) (check.Status, bool)) ([]*check.Checker, map[string][2]int, [][]check.Status, error) {
	var checkers []*check.Checker
	index := map[string][2]int{}
	defaults := cfg.Check.WithDefaults(check.DefaultTiming())
	health := make([][]check.Status, len(cfg.VirtualServers))
	for i, vs := range cfg.VirtualServers {
		health[i] = make([]check.Status, len(vs.RealServers))
		d := defaults
		if vs.DelayLoop > 0 {
			d.Interval = vs.DelayLoop
		}
		for j, rs := range vs.RealServers {
			health[i][j] = check.Status{Up: true, Weight: check.NoWeight}
			if rs.Check.IsZero() {
				continue
			}
			target := netip.AddrPortFrom(rs.Address, rs.port(vs))
			name := fmt.Sprintf("%d/%d", i, j)
			if gen > 0 {
				name = fmt.Sprintf("%d/%s", gen, name)
			}
			clog := log.With(zap.String("service", vs.DisplayName()), zap.String("real-server", target.String()))
			cc := applyTiming(rs.Check, d)
			st, carried := check.Status{}, false
			if carry != nil {
				st, carried = carry(i, j)
			}
			if carried {
				cc = withAlpha(cc, !st.Up)
			}
			c, err := check.New(name, cc, target, clog)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("virtual_servers[%d].real_servers[%d]: %w", i, j, err)
			}
			checkers = append(checkers, c)
			index[name] = [2]int{i, j}
			health[i][j] = c.Initial()
			if carried {
				st.Name = name
				health[i][j] = st
			}
		}
	}
	return checkers, index, health, nil
}

// carried returns, for cfg's real server j of virtual server i, the verdict of the running
// configuration's same real server with the same check (same service, address, port, check, delay
// loop and check defaults), if there is one. Called with r.mu held.
func (r *Reconciler) carried(cfg Config) func(i, j int) (check.Status, bool) {
	return func(i, j int) (check.Status, bool) {
		vs := cfg.VirtualServers[i]
		rs := vs.RealServers[j]
		k, _ := vs.key()
		for oi, ovs := range r.cfg.VirtualServers {
			if ok, _ := ovs.key(); ok != k || ovs.DelayLoop != vs.DelayLoop || !reflect.DeepEqual(r.cfg.Check, cfg.Check) {
				continue
			}
			for oj, ors := range ovs.RealServers {
				if ors.Address == rs.Address && ors.port(ovs) == rs.port(vs) && reflect.DeepEqual(ors.Check, rs.Check) &&
					oi < len(r.health) && oj < len(r.health[oi]) {
					return r.health[oi][oj], true
				}
			}
		}
		return check.Status{}, false
	}
}

// withAlpha returns c with its checker's alpha (start down) set as given.
func withAlpha(c check.Config, alpha bool) check.Config {
	switch {
	case c.TCP != nil:
		v := *c.TCP
		v.Timing.Alpha = alpha
		c.TCP = &v
	case c.HTTP != nil:
		v := *c.HTTP
		v.Timing.Alpha = alpha
		c.HTTP = &v
	case c.Script != nil:
		v := *c.Script
		v.Timing.Alpha = alpha
		c.Script = &v
	}
	return c
}

// runCheckers runs the checkers until ctx is done, sending their results on results, and starts
// them again on the new configuration after each SetConfig.
func (r *Reconciler) runCheckers(ctx context.Context, results chan<- check.Status) error {
	for {
		r.mu.Lock()
		checkers := r.checkers
		restart := make(chan struct{})
		r.rl.restart = restart
		r.mu.Unlock()
		cctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		errs := make([]error, len(checkers))
		for i, c := range checkers {
			wg.Go(func() { errs[i] = c.Run(cctx, results) })
		}
		select {
		case <-ctx.Done():
		case <-restart:
		}
		cancel()
		wg.Wait()
		if ctx.Err() != nil {
			return ignoreCanceled(errors.Join(errs...))
		}
	}
}

// setHealthOf records checker result s, if its checker belongs to the running configuration, and
// applies the result.
func (r *Reconciler) setHealthOf(s check.Status) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.index[s.Name]
	if !ok || at[0] >= len(r.health) || at[1] >= len(r.health[at[0]]) {
		return nil // a checker the last SetConfig replaced
	}
	r.health[at[0]][at[1]] = s
	return r.applyLocked()
}

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
