package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/election/health"
	"github.com/hacoord/hacoord/ipvs"
	"github.com/hacoord/hacoord/vip"
)

// instance is one running instance: its election, VIPs, IPVS table, health checks, hooks and
// status file. open builds it (in the calling thread's network namespace), wire joins it to its
// Elector (its own, or its sync group's member), run runs it, close releases what open opened.
type instance struct {
	plan   *instancePlan
	set    Settings
	log    *zap.Logger    // carries the instance's name, once
	vms    []*vip.Manager // one per plan.vipSets
	guards []*guard       // the daemon's one fence guard, once per vms; nil entries without it
	guard  *guard         // the daemon's fence guard; nil: none
	report *ipvsReporter  // tells the guard the IPVS services to withdraw; nil: none
	ipv    *ipvs.Reconciler
	sync   *ipvs.Syncer // lvs_sync_daemon (syncdaemon.go); nil: none
	mon    *health.Monitor
	hooks  *hooks
	el     election.Elector // the backend's; wire may be given a sync group's member instead
	gate   *election.Gate
	co     *election.Coordinator
	rl     instanceReload // what a reload (SIGHUP) replaces while run runs: reload.go
	alarms *alarms        // split-brain alarms (alarms.go); set by wireAlarms
}

// openInstance opens what instance ip needs, removes its leftover VIPs and withdraws (or takes over,
// with program_on_backup) its leftover IPVS services (it is not master yet), and tells the daemon's
// fence guard g (nil: none) of its VIPs and candidacy. Start-up problems that are the operator's
// to fix come back as configError. On error, what was opened is closed.
func openInstance(ctx context.Context, p *plan, ip *instancePlan, g *guard, stores *storeClients, log *zap.Logger) (_ *instance, err error) {
	in := &instance{plan: ip, set: settingsOf(ip, p.node, p.log), log: log.With(zap.String("instance", ip.name)), guard: g}
	defer func() {
		if err != nil {
			in.close()
		}
	}()
	if err := in.openVIPs(ctx); err != nil {
		return nil, err
	}
	rec := ip.record(p.node)
	if !rec.Address.IsValid() {
		if rec.Address, err = interfaceAddress(ip.iface, ip.vips); err != nil {
			return nil, configError{fmt.Errorf("instance %s: %w", ip.name, err)}
		}
	}
	if in.el, err = newElector(ip, rec, stores, in.log); err != nil {
		return nil, configError{fmt.Errorf("instance %s: %w", ip.name, err)}
	}
	var opts []ipvs.Option
	if g != nil && !ip.ipvs.ProgramOnBackup {
		in.report = newIPVSReporter(g, ip.name, in.log.Named("guard"))
		opts = append(opts, ipvs.WithOwnedChange(in.report.poke))
	}
	in.ipv, err = ipvs.New(ip.ipvs, in.log.Named("ipvs"), opts...)
	if in.report != nil {
		in.report.r = in.ipv
	}
	switch {
	case errors.Is(err, ipvs.ErrUnavailable):
		// Said once; the VIPs are managed regardless and status reports IPVS as unavailable.
		in.log.Warn("IPVS unavailable: virtual servers will not be programmed", zap.Error(err))
	case err != nil:
		return nil, configError{fmt.Errorf("instance %s: %w", ip.name, err)}
	}
	if in.mon, err = health.New(ip.health, in.log.Named("health")); err != nil {
		return nil, configError{fmt.Errorf("instance %s: %w", ip.name, err)}
	}
	if in.hooks, err = newHooks(ip.hooks, ip.fenceRetry(), ip.group, p.node, in.log); err != nil {
		return nil, configError{fmt.Errorf("instance %s: %w", ip.name, err)}
	}
	if err := in.ipv.Cleanup(ctx); err != nil {
		return nil, fmt.Errorf("instance %s: leftover IPVS services: %w", ip.name, err)
	}
	if err := in.openSync(ctx); err != nil {
		return nil, err
	}
	if g != nil {
		if err := in.tellGuard(); err != nil {
			return nil, err
		}
		in.relayCandidacy(g, p.etcdFiles)
	}
	return in, nil
}

// openVIPs opens a vip.Manager per device and removes the VIPs left bound there (a crash, a
// SIGKILL): the instance is not master yet.
func (in *instance) openVIPs(ctx context.Context) error {
	for _, set := range in.plan.vipSets {
		vm, err := vip.New(set.cfg, in.log.Named("vip"))
		if err != nil {
			return configError{fmt.Errorf("instance %s: %w", in.plan.name, err)}
		}
		in.vms = append(in.vms, vm)
		if err := vm.Cleanup(ctx); err != nil {
			return fmt.Errorf("instance %s: remove leftover VIPs on %s: %w", in.plan.name, set.cfg.Interface, err)
		}
	}
	return nil
}

// tellGuard tells the daemon's fence guard the instance's VIPs on each device, before anything
// can be bound.
func (in *instance) tellGuard() error {
	in.guards = make([]*guard, len(in.vms))
	for i, set := range in.plan.vipSets {
		if err := in.guard.SetVIPs(in.plan.name, set.cfg.Interface, set.cfg.VIPs); err != nil {
			return fmt.Errorf("instance %s: %w", in.plan.name, err)
		}
		in.guards[i] = in.guard
	}
	return nil
}

// wire builds the instance's Gate and Coordinator over el (in.el, or the member of a sync group
// standing for it).
func (in *instance) wire(el election.Elector) error {
	var err error
	prio, _, _ := priorityOf(in.plan.in.keys)
	in.gate, err = election.NewGate(el, prio, in.mon.Checks(), in.log.Named("health"))
	if err != nil {
		return configError{fmt.Errorf("instance %s: %w", in.plan.name, err)}
	}
	var vas []vipAction
	for i, vm := range in.vms {
		vas = append(vas, vipAction{m: vm, dev: in.plan.vipSets[i].cfg.Interface})
	}
	var ga, ia election.Action
	if in.guard != nil {
		ga = guardAction{g: in.guard, inst: in.plan.name, vms: in.vms, log: in.log.Named("guard")}
	}
	if len(in.plan.ipvs.VirtualServers) > 0 {
		ia = ipvsAction{r: in.ipv, report: in.report}
	}
	acts := in.withSync(in.hooks.actions(ga, ia, vas), len(vas))
	in.co, err = election.NewCoordinator(el, acts, in.log.Named("coordinator"))
	in.wireConflicts()
	return err
}

// run runs the instance until ctx is done (then it lets go of the VIPs and resigns) or its
// Elector or VIP watch gives up. The helpers (address/link watch and announce schedule, IPVS
// checkers, health checks, notifiers, status file) outlive the Coordinator: they are stopped only
// after it has demoted.
func (in *instance) run(ctx context.Context) error {
	aux, stopAux := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAux()
	cctx, stopCo := context.WithCancelCause(ctx)
	defer stopCo(nil)
	var helpers errgroup.Group
	for _, vm := range in.vms {
		helpers.Go(func() error {
			err := vm.Run(aux)
			if err != nil && aux.Err() == nil {
				stopCo(fmt.Errorf("instance %s: vip watch stopped: %w", in.plan.name, err))
			}
			return ignoreCanceled(err)
		})
	}
	for _, n := range in.hooks.notifiers() {
		helpers.Go(func() error { return ignoreCanceled(n.Run(aux)) })
	}
	helpers.Go(func() error { return ignoreCanceled(in.ipv.Run(aux)) })
	if in.report != nil {
		helpers.Go(func() error { in.report.run(aux); return nil })
	}
	in.startReloadable(aux, &helpers) // the health Monitor, which a reload may replace
	st := newStatusWriter(in.set.StatusFile, withAlarms(daemonStatus(in.set, in.co, in.vms, in.ipv, in.gate), in.alarms), in.log.Named("status"))
	write := st.prepare()
	st.snap = withVRRP(st.snap, in.el) // mismatched adverts (statusvrrp.go)
	in.co.OnChange(func(cs election.Status) {
		if write {
			st.changed()
		}
		in.hooks.watch(cs)
	})
	if write {
		in.gate.OnChange(st.changed) // health verdicts, eligibility, priority
		in.rl.mu.Lock()
		in.rl.status = st.changed // a reload's VIPs, checks, IPVS services
		in.rl.mu.Unlock()
	}
	if write {
		helpers.Go(func() error { st.run(aux); return nil })
	}

	err := in.co.Run(cctx)
	in.hooks.tell(roleStop, in.co.Status().State, stopReason(err, cctx))
	in.endReloads() // no reload starts a helper from now on
	stopAux()
	herr := helpers.Wait()
	if cause := context.Cause(cctx); err == nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	if err == nil {
		err = herr
	}
	if err != nil {
		return fmt.Errorf("instance %s: %w", in.plan.name, err)
	}
	return nil
}

// close releases what openInstance opened (the daemon's fence guard is the daemon's to close); it
// runs after run has returned.
func (in *instance) close() {
	if in.mon != nil {
		in.mon.Close()
	}
	in.closeSync()
	if in.ipv != nil {
		_ = in.ipv.Close()
	}
	for _, vm := range in.vms {
		_ = vm.Close()
	}
}

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// interfaceAddress is the address published in the master record when none is configured: the
// interface's first global address that is not a VIP (IPv4 preferred); the zero Addr if it has
// none (the record then carries no address).
func interfaceAddress(ifname string, vips []netip.Prefix) (netip.Addr, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("interface %s: %w", ifname, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("interface %s: addresses: %w", ifname, err)
	}
	isVIP := func(a netip.Addr) bool {
		for _, v := range vips {
			if v.Addr() == a {
				return true
			}
		}
		return false
	}
	var v6 netip.Addr
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok || !ip.IsGlobalUnicast() || isVIP(ip.Unmap()) {
			continue
		}
		ip = ip.Unmap()
		if ip.Is4() {
			return ip, nil
		}
		if !v6.IsValid() {
			v6 = ip
		}
	}
	return v6, nil
}
