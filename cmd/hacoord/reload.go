package main

// Reload (SIGHUP): the daemon reads its configuration again (the --config file and its original
// command line) and applies it to the running instances without a failover, or refuses it and keeps
// running with the one it has. See README.md and docs/config.md, "Reload".
//
// What reloads, per instance: the VIPs (on the devices and labels the instance had at start), the
// announcement schedule, vip_lifetime and conflict, the track scripts, interfaces and references,
// the notify hooks, the virtual servers; daemon-wide: log.level. What is refused: a changed
// identity (the backend, group, name or interface of an instance; for VRRP its VRID), anything
// else the Elector was built with (the store's endpoints, credentials, timeouts, the node name,
// priorities, VRRP's adverts and VIPs), an instance added, removed or moved, a sync group changed,
// a VIP on a device or label the instance did not use at start (or needing a socket its VIP
// Manager did not open), the first virtual server of an instance that had none, the fence hook,
// and a configuration that does not validate. A refused reload changes nothing; a reload that
// fails while applied (a VIP that cannot be bound) leaves the failing instance, and those after
// it, as they were.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"

	"github.com/hacoord/hacoord/election/health"
	"github.com/hacoord/hacoord/fencing"
	"github.com/hacoord/hacoord/ipvs"
	"github.com/hacoord/hacoord/vip"
)

// errRefused marks a reload that was refused: nothing was changed.
var errRefused = errors.New("reload refused")

// reloader applies SIGHUPs to a running daemon. Its reloads run one at a time, on watch's goroutine.
type reloader struct {
	reread func() (*plan, error) // the configuration as the daemon's command line gives it now
	cur    *plan                 // what the daemon runs
	insts  []*instance           // in cur.instances order
	level  zap.AtomicLevel
	log    *zap.Logger
}

// watch calls reload for every signal on hup until ctx is done. A reload runs to its end;
// signals that arrive meanwhile collapse into one more reload.
func (r *reloader) watch(ctx context.Context, hup <-chan os.Signal) {
	for _, in := range r.insts { // a SIGHUP during start-up waits for the instances to run
		select {
		case <-ctx.Done():
			return
		case <-in.rl.running():
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			_ = r.reload(ctx)
		}
	}
}

// ignoreHUPUntilDaemon ignores SIGHUP from the process's first instant when args run the daemon
// (no subcommand), until runDaemon catches it (notifyReload): a SIGHUP that arrives while the
// daemon starts is dropped (it reads its configuration then anyway) instead of ending it. Other
// subcommands keep SIGHUP's default action (a closed terminal ends `hacoord watch`).
func ignoreHUPUntilDaemon(args []string) {
	root := newRootCommand(io.Discard, io.Discard)
	if c, _, err := root.Find(args); err == nil && c == root {
		signal.Ignore(syscall.SIGHUP)
	}
}

// notifyReload starts catching SIGHUP (its default action kills the process) and returns the
// channel and the function that stops catching it.
func notifyReload() (<-chan os.Signal, func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup, func() { signal.Stop(hup) }
}

// reload reads the configuration again and applies it, logging the outcome: "reloaded: +vip
// 10.0.0.5/24, -track_script chk" at info, or why it was refused at error. It returns the error
// it logged (wrapping errRefused when nothing changed).
func (r *reloader) reload(ctx context.Context) error {
	np, err := r.reread()
	if err != nil {
		err = fmt.Errorf("%w: the configuration does not validate: %w", errRefused, err)
		r.log.Error("reload refused: the configuration does not validate; running on with the one loaded before", zap.Error(err))
		return err
	}
	rp, err := planReload(r.cur, np)
	if err != nil {
		err = fmt.Errorf("%w: %w", errRefused, err)
		r.log.Error("reload refused: running on with the configuration loaded before", zap.Error(err))
		return err
	}
	if err := r.checkGuards(rp); err != nil {
		err = fmt.Errorf("%w: %w", errRefused, err)
		r.log.Error("reload refused: running on with the configuration loaded before", zap.Error(err))
		return err
	}
	if rp.level != "" { // first: the reload's own debug lines follow it
		var l zapcore.Level
		if err := l.UnmarshalText([]byte(rp.level)); err == nil {
			r.level.SetLevel(l)
		}
	}
	var done []string
	for i, ic := range rp.insts {
		if !ic.any() {
			continue
		}
		if err := r.insts[i].reload(ctx, r.cur.instances[i], ic); err != nil {
			// Instances before i have their new configuration, i and those after the old one.
			r.log.Error("reload failed: this instance, and those after it, keep the configuration loaded before", zap.String("instance", ic.ip.name),
				zap.Strings("applied", done), zap.Error(err))
			r.commit(np, i)
			return err
		}
		done = append(done, ic.changes...)
	}
	r.commit(np, len(rp.insts))
	if len(rp.changes) == 0 {
		r.log.Info("reloaded: no changes")
		return nil
	}
	r.log.Info("reloaded: " + strings.Join(rp.changes, ", "))
	return nil
}

// commit makes np the running plan for its first n instances (those a reload applied); the others
// keep theirs.
func (r *reloader) commit(np *plan, n int) {
	next := *r.cur
	next.log.Level = np.log.Level
	next.instances = slices.Clone(r.cur.instances)
	copy(next.instances, np.instances[:n])
	r.cur = &next
}

// checkGuards refuses a VIP change for an instance whose fence guard cannot learn the new list
// (a bound VIP is never unknown to the guard).
func (r *reloader) checkGuards(rp reloadPlan) error {
	var errs []error
	for i, ic := range rp.insts {
		for s, changed := range ic.vipSets {
			if !changed {
				continue
			}
			if g := r.insts[i].guardOf(s); g != nil {
				if _, ok := guardLearner(g); !ok {
					errs = append(errs, fmt.Errorf("%s: the fence guard of this build cannot learn a new VIP list: restart the daemon (or run it with --fence-guard=false)",
						keyOf(ic.ip, "vips")))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// recordVIPSetter is an Elector whose master record's VIPs can change at run time (etcd, zk).
type recordVIPSetter interface {
	SetRecordVIPs(vips []netip.Prefix)
}

// vipLearner is a fence guard that can be told a new VIP list for a device of an instance: the
// guard of cmd/hacoord/guard.go (one process per daemon) has it.
type vipLearner interface {
	SetVIPs(instance, dev string, vips []netip.Prefix) error
}

// guardLearner returns g as a vipLearner, if it is one.
func guardLearner(g *guard) (vipLearner, bool) {
	l, ok := any(g).(vipLearner)
	return l, ok
}

// reloadPlan is what a reload changes: per running instance, in order, and the daemon's log level.
type reloadPlan struct {
	insts   []instanceChange
	level   string   // the new log level; "" unchanged
	changes []string // every change, for the log line
}

// instanceChange is what a reload changes in one instance.
type instanceChange struct {
	ip      *instancePlan // the new plan
	vipSets []bool        // per VIP set (same order as the running plan's): its vip.Config changed
	health  bool
	hooks   bool
	ipvs    bool
	changes []string
}

func (ic instanceChange) any() bool {
	return ic.health || ic.hooks || ic.ipvs || slices.Contains(ic.vipSets, true)
}

// planReload compares the running plan with the new one: what to apply, or every reason to refuse
// (each naming its key), joined.
func planReload(old, np *plan) (reloadPlan, error) {
	var rp reloadPlan
	var errs []error
	refuse := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if old.node != np.node {
		refuse("name", "%q to %q: the node's name is its identity in every election; restart the daemon", old.node, np.node)
	}
	if old.fenceGuard != np.fenceGuard {
		refuse("fence_guard", "%v to %v: restart the daemon", old.fenceGuard, np.fenceGuard)
	}
	if old.metrics != np.metrics {
		refuse("metrics_address", "%q to %q: the metrics server is bound at start; restart the daemon", old.metrics, np.metrics)
	}
	if old.etcdFiles != np.etcdFiles {
		refuse("etcd", "TLS files or credentials changed: the store client is built at start; restart the daemon")
	}
	if old.log.Format != np.log.Format {
		refuse("log.format", "%s to %s: restart the daemon", old.log.Format, np.log.Format)
	}
	if old.log.Level != np.log.Level {
		rp.level = np.log.Level
		rp.changes = append(rp.changes, fmt.Sprintf("log.level %s -> %s", old.log.Level, np.log.Level))
	}
	oldNames, newNames := instanceNames(old), instanceNames(np)
	if !slices.Equal(oldNames, newNames) && !(single(old) && single(np)) { // a single instance is named by its group
		refuse("instances", "%s to %s: adding, removing or reordering instances needs a restart",
			strings.Join(oldNames, ","), strings.Join(newNames, ","))
		return rp, errors.Join(errs...)
	}
	if !reflect.DeepEqual(syncGroupNames(old), syncGroupNames(np)) {
		refuse("sync_groups", "changed: a sync group is wired at start; restart the daemon")
	}
	multi := len(np.instances) > 1
	for i, oi := range old.instances {
		ic, ierrs := planInstance(oi, np.instances[i])
		errs = append(errs, ierrs...)
		for _, c := range ic.changes {
			if multi {
				c = oi.name + ": " + c
			}
			rp.changes = append(rp.changes, c)
		}
		rp.insts = append(rp.insts, ic)
	}
	return rp, errors.Join(errs...)
}

// single reports whether p is the single-instance form (no instances: list).
func single(p *plan) bool {
	return len(p.instances) == 1 && (p.instances[0].in == nil || !p.instances[0].in.listed)
}

func instanceNames(p *plan) []string {
	out := make([]string, len(p.instances))
	for i, ip := range p.instances {
		out[i] = ip.name
	}
	return out
}

func syncGroupNames(p *plan) [][]string {
	var out [][]string
	for _, sg := range p.syncGroups {
		g := []string{sg.name}
		for _, m := range sg.members {
			g = append(g, p.instances[m].name)
		}
		out = append(out, g)
	}
	return out
}

// keyOf names an instance's key as its YAML path ("instances[1].group", or "group").
func keyOf(ip *instancePlan, key string) string {
	if ip.in != nil && ip.in.path != "" {
		return ip.in.path + "." + key
	}
	return key
}

// planInstance compares one instance's running and new plans.
func planInstance(o, n *instancePlan) (instanceChange, []error) {
	ic := instanceChange{ip: n}
	var errs []error
	refuse := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", keyOf(n, key), fmt.Sprintf(format, args...)))
	}
	identity := func(key, was, is string) {
		if was != is {
			refuse(key, "%s to %s: the instance's identity; a reload keeps it (restart the daemon to change it)", was, is)
		}
	}
	identity("backend", o.backend, n.backend)
	identity("group", o.group, n.group)
	identity("interface", o.iface, n.iface)
	if o.backend == backendVRRP && n.backend == backendVRRP {
		identity("vrrp.vrid", fmt.Sprint(o.vrrp.VRID), fmt.Sprint(n.vrrp.VRID))
	}
	if len(errs) > 0 {
		return ic, errs // nothing else compares
	}
	if o.address != n.address {
		refuse("address", "%v to %v: it is in the master record; restart the daemon", o.address, n.address)
	}
	if o.status != n.status {
		refuse("status_file", "%s to %s: restart the daemon", o.status, n.status)
	}
	errs = append(errs, backendChanges(o, n)...)
	ic.vipSets, errs = planVIPs(o, n, &ic, errs)
	if !reflect.DeepEqual(o.health, n.health) {
		ic.health = true
		ic.changes = append(ic.changes, checkChanges(o.health, n.health)...)
	}
	of, hadFence := o.hooks["hooks.fence"]
	nf, hasFence := n.hooks["hooks.fence"]
	if hadFence != hasFence || !sameHook(of, nf) || o.fenceRetry() != n.fenceRetry() {
		refuse("hooks.fence", "changed (or its timeout, or hooks.fence_retries): the fence hook is a step of the promote path, built at start; restart the daemon")
	}
	if hc := hookChanges(o.hooks, n.hooks); len(hc) > 0 {
		ic.hooks = true
		ic.changes = append(ic.changes, hc...)
	}
	if !reflect.DeepEqual(o.ipvs, n.ipvs) {
		switch {
		case len(o.ipvs.VirtualServers) == 0 && len(n.ipvs.VirtualServers) > 0:
			refuse("virtual_servers", "the instance had none at start, so IPVS is not in its promote path: restart the daemon to add the first")
		case o.ipvs.ProgramOnBackup != n.ipvs.ProgramOnBackup:
			refuse("program_on_backup", "%v to %v: restart the daemon", o.ipvs.ProgramOnBackup, n.ipvs.ProgramOnBackup)
		case o.ipvs.ResyncInterval != n.ipvs.ResyncInterval:
			refuse("resync_interval", "%v to %v: restart the daemon", o.ipvs.ResyncInterval, n.ipvs.ResyncInterval)
		case !reflect.DeepEqual(o.ipvs.SyncDaemon, n.ipvs.SyncDaemon):
			refuse("lvs_sync_daemon", "changed: the sync daemons are started at start-up; restart the daemon")
		default:
			ic.ipvs = true
			ic.changes = append(ic.changes, serviceChanges(o.ipvs, n.ipvs)...)
		}
	}
	return ic, errs
}

// backendChanges refuses a change of what the instance's Elector was built with, but the VIPs of
// the quorum backends' master record (they follow the instance's VIPs; the record is published at
// the next campaign).
func backendChanges(o, n *instancePlan) []error {
	var a, b any
	switch o.backend {
	case backendEtcd:
		oc, nc := o.etcd, n.etcd
		oc.TLS, nc.TLS = nil, nil // built from etcdFiles, compared there
		oc.Record.VIPs, nc.Record.VIPs = nil, nil
		a, b = oc, nc
	case backendZK:
		oc, nc := o.zk, n.zk
		oc.Record.VIPs, nc.Record.VIPs = nil, nil
		a, b = oc, nc
	case backendVRRP:
		a, b = o.vrrp, n.vrrp
	}
	var errs []error
	for _, f := range fieldChanges(a, b) {
		what := "the Elector is built with it at start"
		if o.backend == backendVRRP && f == "VIPs" {
			what = "a VRRP router's VIPs are in its adverts, and its peers check them"
		}
		errs = append(errs, fmt.Errorf("%s: %s changed: %s; restart the daemon", keyOf(n, o.backend), f, what))
	}
	return errs
}

// fieldChanges names the exported fields of two structs of one type that differ (functions are
// not compared).
func fieldChanges(a, b any) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	if va.Kind() != reflect.Struct || va.Type() != vb.Type() {
		return nil
	}
	var out []string
	for i := range va.NumField() {
		f := va.Type().Field(i)
		if !f.IsExported() || f.Type.Kind() == reflect.Func {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, f.Name)
		}
	}
	return out
}

// planVIPs matches the new VIP sets to the running ones by device and label: a set on a device or
// label the instance did not use at start is refused (a vip.Manager and fence guard per device are
// opened at start), as is a set left without VIPs.
func planVIPs(o, n *instancePlan, ic *instanceChange, errs []error) ([]bool, []error) {
	changed := make([]bool, len(o.vipSets))
	matched := make([]bool, len(o.vipSets))
	byDev := make([]int, len(n.vipSets))
	for j, ns := range n.vipSets {
		byDev[j] = slices.IndexFunc(o.vipSets, func(s vipSet) bool {
			return s.cfg.Interface == ns.cfg.Interface && s.cfg.Label == ns.cfg.Label
		})
		if byDev[j] < 0 {
			k := "vips"
			if len(ns.index) > 0 {
				k = fmt.Sprintf("vips[%d]", ns.index[0])
			}
			errs = append(errs, fmt.Errorf("%s: device %s label %q: the instance had no VIP there at start; restart the daemon",
				keyOf(n, k), ns.cfg.Interface, ns.cfg.Label))
			continue
		}
		matched[byDev[j]] = true
	}
	for i, set := range o.vipSets {
		if !matched[i] {
			errs = append(errs, fmt.Errorf("%s: no VIP left on device %s label %q: restart the daemon to stop using it",
				keyOf(n, "vips"), set.cfg.Interface, set.cfg.Label))
		}
	}
	added, removed := vip.DiffPrefixes(o.vips, n.vips)
	for _, v := range added {
		ic.changes = append(ic.changes, "+vip "+v.String())
	}
	for _, v := range removed {
		ic.changes = append(ic.changes, "-vip "+v.String())
	}
	for j, i := range byDev {
		if i < 0 {
			continue
		}
		oc, nc := o.vipSets[i].cfg, n.vipSets[j].cfg
		if reflect.DeepEqual(oc, nc) {
			continue
		}
		if err := oc.Reconfigurable(nc); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w; restart the daemon", keyOf(n, "vips"), err))
			continue
		}
		changed[i] = true
		dev := ""
		if len(o.vipSets) > 1 {
			dev = " on " + oc.Interface
		}
		if oc.Announce != nc.Announce {
			ic.changes = append(ic.changes, "announce"+dev)
		}
		if oc.Lifetime != nc.Lifetime {
			ic.changes = append(ic.changes, fmt.Sprintf("vip_lifetime %v", nc.Lifetime))
		}
		if oc.Conflict != nc.Conflict {
			ic.changes = append(ic.changes, fmt.Sprintf("conflict %s", orDefault(string(nc.Conflict.Policy), "off")))
		}
	}
	ic.changes = dedup(ic.changes)
	return changed, errs
}

func dedup(ss []string) []string {
	var out []string
	for _, s := range ss {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// checkChanges names the health checks added, removed and changed.
func checkChanges(o, n health.Config) []string {
	var out []string
	out = append(out, namedChanges("track_script", o.Scripts, n.Scripts, func(s health.Script) string { return s.Name })...)
	out = append(out, namedChanges("track_interface", o.Interfaces, n.Interfaces, func(t health.Interface) string { return t.Name })...)
	out = append(out, namedChanges("track_reference", o.References, n.References, func(r health.Reference) string { return r.Address.String() })...)
	return out
}

// namedChanges lists "+kind name", "-kind name" and "kind name changed" between two lists.
func namedChanges[T any](kind string, o, n []T, name func(T) string) []string {
	var out []string
	find := func(l []T, k string) (T, bool) {
		for _, x := range l {
			if name(x) == k {
				return x, true
			}
		}
		var zero T
		return zero, false
	}
	for _, x := range n {
		if y, ok := find(o, name(x)); !ok {
			out = append(out, "+"+kind+" "+name(x))
		} else if !reflect.DeepEqual(x, y) {
			out = append(out, kind+" "+name(x)+" changed")
		}
	}
	for _, y := range o {
		if _, ok := find(n, name(y)); !ok {
			out = append(out, "-"+kind+" "+name(y))
		}
	}
	return out
}

// sameHook reports whether two hooks run the same program under the same timeout.
func sameHook(a, b fencing.Hook) bool { return a.Path == b.Path && a.Timeout == b.Timeout }

// hookChanges names the hook keys added, removed and changed.
func hookChanges(o, n hookPlan) []string {
	var keys []string
	for k := range o {
		keys = append(keys, k)
	}
	for k := range n {
		if _, ok := o[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		a, inO := o[k]
		b, inN := n[k]
		switch {
		case !inO:
			out = append(out, "+"+k)
		case !inN:
			out = append(out, "-"+k)
		case !sameHook(a, b):
			out = append(out, k+" changed")
		}
	}
	return out
}

// replace gives h the notify hooks of n (a reload; the fence hook does not change) and returns
// n's Notifiers, for the caller to run; h's own keep running until the daemon stops, with the
// events queued before.
func (h *hooks) replace(n *hooks) []*fencing.Notifier {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.notify, h.byRole = n.notify, n.byRole
	return n.notifiers()
}

// serviceChanges names the virtual servers added, removed and changed.
func serviceChanges(o, n ipvs.Config) []string {
	out := namedChanges("virtual_server", o.VirtualServers, n.VirtualServers, serviceKey)
	if !reflect.DeepEqual(o.Check, n.Check) {
		out = append(out, "check_defaults changed")
	}
	return out
}

// instanceReload is an instance's side of reloads: serialised with the instance's end, so that no
// reload starts a helper after run has stopped them.
type instanceReload struct {
	once     sync.Once
	ready    chan struct{} // closed once run runs (running)
	mu       sync.Mutex
	stopping bool
	helpers  *errgroup.Group    // run's helpers; nil before run
	aux      context.Context    // their context
	monStop  context.CancelFunc // stops the running Monitor's Run
	monDone  chan struct{}      // closed when it has returned
	status   func()             // tells the status file that a reload changed it (nil: no file)
}

// startReloadable starts the instance's health Monitor among run's helpers, so that a reload can
// replace it, and lets reloads start helpers of their own (new notify hooks).
func (in *instance) startReloadable(aux context.Context, helpers *errgroup.Group) {
	in.rl.mu.Lock()
	defer in.rl.mu.Unlock()
	in.rl.helpers, in.rl.aux = helpers, aux
	in.startMonitorLocked(in.mon)
	close(in.rl.running())
}

// running returns a channel closed once the instance runs (startReloadable).
func (r *instanceReload) running() chan struct{} {
	r.once.Do(func() { r.ready = make(chan struct{}) })
	return r.ready
}

// startMonitorLocked runs m against the Gate until aux ends or the next reload stops it.
func (in *instance) startMonitorLocked(m *health.Monitor) {
	ctx, stop := context.WithCancel(in.rl.aux)
	done := make(chan struct{})
	in.rl.monStop, in.rl.monDone = stop, done
	in.rl.helpers.Go(func() error {
		defer close(done)
		return ignoreCanceled(m.Run(ctx, in.gate))
	})
}

// endReloads waits for a reload under way and refuses those to come: run calls it before it stops
// the helpers.
func (in *instance) endReloads() {
	in.rl.mu.Lock()
	defer in.rl.mu.Unlock()
	in.rl.stopping = true
}

// guardOf returns the fence guard of VIP set s (nil: none).
func (in *instance) guardOf(s int) *guard {
	if s < len(in.guards) {
		return in.guards[s]
	}
	return nil
}

// reload applies ic to the running instance, whose running plan is o. What can fail (binding the
// new VIPs, building the new Monitor and hooks) is done first; if it fails, the instance keeps its
// configuration as it was, and the error says why.
func (in *instance) reload(ctx context.Context, o *instancePlan, ic instanceChange) error {
	in.rl.mu.Lock()
	defer in.rl.mu.Unlock()
	if in.rl.stopping || in.rl.helpers == nil {
		return errors.New("the instance is not running")
	}
	n := ic.ip
	var (
		mon *health.Monitor
		hk  *hooks
		err error
	)
	if ic.health {
		if mon, err = health.NewReloaded(n.health, in.gate.Verdicts(), in.log.Named("health")); err != nil {
			return err
		}
	}
	if ic.hooks {
		if hk, err = newHooks(n.hooks, n.fenceRetry(), n.group, in.set.Name, in.log); err != nil {
			closeMonitor(mon)
			return err
		}
	}
	if ic.ipvs {
		if err := in.ipv.SetConfig(n.ipvs); err != nil {
			closeMonitor(mon)
			return err
		}
	}
	if err := in.reloadVIPs(ctx, o, n, ic.vipSets); err != nil {
		closeMonitor(mon)
		if ic.ipvs {
			if rerr := in.ipv.SetConfig(o.ipvs); rerr != nil {
				err = errors.Join(err, fmt.Errorf("virtual_servers: back to the running ones: %w", rerr))
			}
		}
		return err
	}
	if rs, ok := in.el.(recordVIPSetter); ok && !slices.Equal(o.vips, n.vips) {
		rs.SetRecordVIPs(n.vips) // the master record: written again in the same term
	}
	if mon != nil {
		if _, _, err := in.gate.SetChecks(mon.Checks()); err != nil {
			mon.Close() // the Gate checked these at start: not expected
			return fmt.Errorf("track checks: %w", err)
		}
		in.rl.monStop()
		<-in.rl.monDone
		in.mon.Close()
		in.mon = mon
		in.startMonitorLocked(mon)
	}
	if hk != nil {
		for _, nt := range in.hooks.replace(hk) {
			in.rl.helpers.Go(func() error { return ignoreCanceled(nt.Run(in.rl.aux)) })
		}
	}
	if in.rl.status != nil {
		in.rl.status() // the VIPs, checks and IPVS services it lists
	}
	return nil
}

func closeMonitor(m *health.Monitor) {
	if m != nil {
		m.Close()
	}
}

// reloadVIPs gives every VIP Manager whose set changed its new vip.Config, telling its fence guard
// the union of the old and new VIPs first and the new list after; on a failure it puts back the
// sets it changed.
func (in *instance) reloadVIPs(ctx context.Context, o, n *instancePlan, changed []bool) error {
	var done []int
	var err error
	for s, ch := range changed {
		if !ch {
			continue
		}
		ns := slices.IndexFunc(n.vipSets, func(v vipSet) bool {
			return v.cfg.Interface == o.vipSets[s].cfg.Interface && v.cfg.Label == o.vipSets[s].cfg.Label
		})
		if err = in.setVIPs(ctx, s, o.vipSets[s].cfg, n.vipSets[ns].cfg); err != nil {
			break
		}
		done = append(done, s)
	}
	if err == nil {
		return nil
	}
	for _, s := range done {
		ns := slices.IndexFunc(n.vipSets, func(v vipSet) bool {
			return v.cfg.Interface == o.vipSets[s].cfg.Interface && v.cfg.Label == o.vipSets[s].cfg.Label
		})
		if rerr := in.setVIPs(ctx, s, n.vipSets[ns].cfg, o.vipSets[s].cfg); rerr != nil {
			err = errors.Join(err, fmt.Errorf("putting back the VIPs on %s: %w", o.vipSets[s].cfg.Interface, rerr))
		}
	}
	return err
}

// setVIPs moves VIP set s from cfg was to cfg is.
func (in *instance) setVIPs(ctx context.Context, s int, was, is vip.Config) error {
	var gl vipLearner
	if g := in.guardOf(s); g != nil {
		gl, _ = guardLearner(g) // checkGuards refused the reload otherwise
	}
	tell := func(vips []netip.Prefix) error {
		if gl == nil {
			return nil
		}
		if err := gl.SetVIPs(in.plan.name, was.Interface, vips); err != nil {
			return fmt.Errorf("telling the fence guard the VIPs on %s: %w", was.Interface, err)
		}
		return nil
	}
	union := slices.Clone(was.VIPs)
	for _, v := range is.VIPs {
		if !slices.Contains(union, v) {
			union = append(union, v)
		}
	}
	if err := tell(union); err != nil {
		return err
	}
	if _, _, err := in.vms[s].SetConfig(ctx, is); err != nil {
		if gerr := tell(was.VIPs); gerr != nil {
			err = errors.Join(err, gerr)
		}
		return err
	}
	if err := tell(is.VIPs); err != nil {
		// The guard still knows every VIP bound (and the removed ones): it removes too much, never
		// too little.
		in.log.Warn("fence guard: the removed VIPs stay on its list", zap.Error(err))
	}
	return nil
}
