package keepalivedconf

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// ConvertOptions choose the backend of the converted configuration.
type ConvertOptions struct {
	// Backend is "vrrp" (the default: a drop-in that speaks VRRP with the keepalived nodes it
	// replaces), "etcd" or "zk" (the same instances elected through the store, each in a group
	// named after it; the VRRP-only keywords are dropped).
	Backend string
	// Endpoints are the store's servers (required with etcd and zk).
	Endpoints []string
}

// keepalived's defaults (keepalived.conf(5), and the 2.2.7 source where the man page is silent).
const (
	kaAdvertInt        = time.Second     // advert_int
	kaPriority         = 100             // priority (VRRP_PRIO_DFL)
	kaOwnerPriority    = 255             // priority of state MASTER without a priority (VRRP_PRIO_OWNER)
	kaVersion          = 2               // vrrp_version
	kaGARPDelay        = 5 * time.Second // vrrp_garp_master_delay
	kaGARPRepeat       = 5               // vrrp_garp_master_repeat
	kaGARPRefreshRep   = 1               // vrrp_garp_master_refresh_repeat
	kaScriptInterval   = time.Second     // vrrp_script interval (VRRP_SCRIPT_DI); timeout defaults to it
	kaDelayLoop        = 60 * time.Second
	kaConnectTimeout   = 5 * time.Second
	kaRetry            = 1               // TCP_CHECK, HTTP_GET, SSL_GET
	kaMiscRetry        = 0               // MISC_CHECK
	kaDelayBeforeRetry = time.Second     // TCP_CHECK, MISC_CHECK
	kaHTTPDelayRetry   = 3 * time.Second // HTTP_GET, SSL_GET
	kaLBAlgo           = "wlc"
	kaLBKind           = "NAT"
	kaQuorum           = 1

	// hacoord's announcement rounds must be more than Linux's 1s neighbour locktime apart.
	minAnnounceGap = 1100 * time.Millisecond
)

// Convert maps k onto hacoord's configuration. Every keyword it drops, and every keyword whose
// meaning changes in hacoord, gets a Diagnostic at its line (k.Unmapped included). An *Error is
// returned when an instance cannot be expressed at all (no VRID for VRRP, no VIP left, no
// interface).
func Convert(k *Keepalived, opt ConvertOptions) (*Config, []Diagnostic, error) {
	if opt.Backend == "" {
		opt.Backend = "vrrp"
	}
	c := &conv{k: k, opt: opt, vrrp: opt.Backend == "vrrp"}
	switch opt.Backend {
	case "vrrp":
	case "etcd", "zk":
		if len(opt.Endpoints) == 0 {
			return nil, nil, &Error{Diagnostic{Msg: fmt.Sprintf("--endpoints is required with --backend %s", opt.Backend)}}
		}
	default:
		return nil, nil, &Error{Diagnostic{Msg: fmt.Sprintf("backend %q: want vrrp, etcd or zk", opt.Backend)}}
	}
	for _, u := range k.Unmapped {
		c.d.addf(u.Pos, u.Keyword, "%s", u.Msg)
	}
	cfg := &Config{Backend: opt.Backend, Name: k.RouterID.V}
	if !c.vrrp {
		cfg.Endpoints = opt.Endpoints
		vrrpOnlyAt(c, k.VRRPVersion)
	}
	var insts []InstanceOut
	for _, inst := range k.Instances {
		out, err := c.instance(inst)
		if err != nil {
			return nil, c.d.list, err
		}
		insts = append(insts, out)
	}
	if c.vrrp {
		if err := vridConflicts(k.Instances); err != nil {
			return nil, c.d.list, err
		}
	}
	var groups []SyncGroupOut
	for _, g := range k.SyncGroups {
		sg := SyncGroupOut{Name: g.Name}
		for _, m := range g.Members {
			sg.Instances = append(sg.Instances, m.Name)
		}
		groups = append(groups, sg)
	}
	orphans := c.virtualServers(k.VirtualServers, insts)
	c.syncDaemon(k, insts)

	switch {
	case len(insts) == 1 && len(groups) == 0:
		cfg.InstanceSettings = insts[0].InstanceSettings
	case len(insts) > 0:
		cfg.Instances, cfg.SyncGroups = insts, groups
	case len(orphans) > 0:
		c.d.addf(k.VirtualServers[0].Pos, "virtual_server", "there is no vrrp_instance: hacoord programs these virtual servers for an instance, so add `interface:` and `vips:` (or --interface and --vip) before running it")
		cfg.VirtualServers = orphans
		cfg.ProgramOnBackup = ptr(true)
		return cfg, c.d.list, nil
	default:
		return nil, c.d.list, &Error{Diagnostic{Msg: "no vrrp_instance and no virtual_server: nothing to import"}}
	}
	return cfg, c.d.list, nil
}

type conv struct {
	k    *Keepalived
	opt  ConvertOptions
	vrrp bool
	d    diags
}

func ptr[T any](v T) *T { return &v }

func (c *conv) warn(p Pos, keyword, format string, args ...any) {
	c.d.addf(p, keyword, format, args...)
}

func vrrpOnlyReason(backend string) string {
	return fmt.Sprintf("dropped: VRRP only; with --backend %s the store elects the master", backend)
}

// vrrpOnlyAt reports a VRRP-only keyword dropped by a store-backed import.
func vrrpOnlyAt[T any](c *conv, o Opt[T]) {
	if o.Set {
		c.warn(o.Pos, o.Keyword, "%s", vrrpOnlyReason(c.opt.Backend))
	}
}

// instance converts one vrrp_instance.
func (c *conv) instance(inst *Instance) (InstanceOut, error) {
	out := InstanceOut{Name: inst.Name}
	s := &out.InstanceSettings
	s.Group = inst.Name
	if strings.ContainsAny(s.Group, "/ \t\n") {
		s.Group = strings.Map(func(r rune) rune {
			if r == '/' || r == ' ' || r == '\t' || r == '\n' {
				return '_'
			}
			return r
		}, s.Group)
		c.warn(inst.Pos, "vrrp_instance", "(%s) its group is %s: a hacoord group name has no '/' or blanks (it names store keys and files)", inst.Name, s.Group)
	}

	ifname, err := c.iface(inst)
	if err != nil {
		return out, err
	}
	s.Interface = ifname
	if err := c.vips(inst, s); err != nil {
		return out, err
	}
	if c.vrrp {
		v, err := c.vrrpBlock(inst)
		if err != nil {
			return out, err
		}
		s.VRRP = v
	} else {
		c.dropVRRP(inst)
	}
	prio := basePriority(inst)
	s.Announce = c.announce(inst)
	s.Hooks = c.hooks(inst)
	s.TrackScripts = c.trackScripts(inst, prio)
	s.TrackInterfaces = c.trackIfaces(inst, s.Interface, prio)
	return out, nil
}

// iface returns the instance's interface: keepalived's `interface`, or, where it is omitted (a
// unicast instance may omit it), the device of its first VIP.
func (c *conv) iface(inst *Instance) (string, error) {
	if inst.Interface.Set {
		return inst.Interface.V, nil
	}
	for _, v := range inst.VIPs {
		if v.Dev != "" {
			c.warn(inst.Pos, "vrrp_instance", "(%s) no interface: %s (the device of %s) is used for the adverts and the VIPs without a dev", inst.Name, v.Dev, v.Prefix)
			return v.Dev, nil
		}
	}
	return "", errorf(inst.Pos, "vrrp_instance", "(%s) no interface, and no VIP names a dev: hacoord needs the interface the VIPs go on", inst.Name)
}

// vips converts virtual_ipaddress and virtual_ipaddress_excluded.
func (c *conv) vips(inst *Instance, s *InstanceSettings) error {
	kw := func(v VIP) string {
		if v.Excluded {
			return "virtual_ipaddress_excluded"
		}
		return "virtual_ipaddress"
	}
	var entries []VIPEntry
	seen := map[netip.Addr]Pos{}
	for _, v := range inst.VIPs {
		switch {
		case v.Excluded && c.vrrp:
			c.warn(v.Pos, kw(v), "(%s) dropped %s: hacoord lists every VIP in its adverts, and keepalived peers drop adverts whose address list differs from theirs (with --backend etcd or zk it is kept)", inst.Name, v.Prefix)
			continue
		}
		if p, dup := seen[v.Prefix.Addr()]; dup {
			c.warn(v.Pos, kw(v), "(%s) %s is already listed at line %d; dropped", inst.Name, v.Prefix.Addr(), p.Line)
			continue
		}
		seen[v.Prefix.Addr()] = v.Pos
		if len(v.Options) > 0 {
			c.warn(v.Pos, kw(v), "(%s) dropped the options %s of %s: hacoord binds a VIP with scope global and no other options", inst.Name, formatArgs(v.Options), v.Prefix)
		}
		e := VIPEntry{Address: v.Prefix, Dev: v.Dev, Label: v.Label}
		if e.Dev == s.Interface {
			e.Dev = ""
		}
		dev := v.Dev
		if dev == "" {
			dev = s.Interface
		}
		if e.Label != "" && !strings.HasPrefix(e.Label, dev) {
			c.warn(v.Pos, kw(v), "(%s) dropped label %s of %s: hacoord needs a label that starts with the device name (%s)", inst.Name, e.Label, v.Prefix, dev)
			e.Label = ""
		}
		if e.Dev != "" {
			c.warn(v.Pos, kw(v), "(%s) %s goes on %s, not on %s: written in the long VIP form {address, dev}, which docs/config.md adds for import-keepalived", inst.Name, v.Prefix, e.Dev, s.Interface)
		}
		entries = append(entries, e)
	}
	if len(entries) == 0 {
		return errorf(inst.Pos, "vrrp_instance", "(%s) no VIP left to manage: hacoord needs at least one", inst.Name)
	}
	// One label shared by every IPv4 VIP on the interface becomes vip_label; otherwise each VIP
	// keeps its own label in the long form.
	label, common := "", true
	for _, e := range entries {
		if e.Dev != "" || !e.Address.Addr().Is4() {
			continue
		}
		if label == "" {
			label = e.Label
		}
		common = common && e.Label != "" && e.Label == label
	}
	if common && label != "" {
		s.VIPLabel = label
		for i := range entries {
			if entries[i].Dev == "" && entries[i].Address.Addr().Is4() {
				entries[i].Label = ""
			}
		}
	}
	s.VIPs = entries
	return nil
}

// vrrpBlock converts the VRRP keywords, completing them as keepalived's vrrp_complete_instance
// does.
func (c *conv) vrrpBlock(inst *Instance) (*VRRP, error) {
	if !inst.VRID.Set {
		return nil, errorf(inst.Pos, "vrrp_instance", "(%s) the virtual router id must be set (keepalived refuses the instance too)", inst.Name)
	}
	v := &VRRP{VRID: inst.VRID.V, Priority: basePriority(inst)}
	master := inst.State.V == "MASTER"
	if inst.State.Set {
		how := fmt.Sprintf("priority %d", v.Priority)
		if !inst.Priority.Set && master {
			how = "priority 255, which keepalived gives a MASTER without a priority"
		}
		c.warn(inst.State.Pos, "state", "(%s) meaning changes: hacoord has no initial state; the priority decides who is master (%s)", inst.Name, how)
	}

	v.NoPreempt = inst.NoPreempt.V
	switch {
	case v.NoPreempt && v.Priority == kaOwnerPriority:
		c.warn(inst.NoPreempt.Pos, "nopreempt", "(%s) incompatible with priority 255; reset (as keepalived does)", inst.Name)
		v.NoPreempt = false
	case v.NoPreempt && master:
		c.warn(inst.NoPreempt.Pos, "nopreempt", "(%s) does not work with state MASTER; cleared (as keepalived does)", inst.Name)
		v.NoPreempt = false
	}
	v.PreemptDelay = inst.PreemptDelay.V
	switch {
	case v.PreemptDelay > 0 && master:
		c.warn(inst.PreemptDelay.Pos, "preempt_delay", "(%s) does not work with state MASTER; cleared (as keepalived does)", inst.Name)
		v.PreemptDelay = 0
	case v.PreemptDelay > 0 && v.NoPreempt:
		c.warn(inst.PreemptDelay.Pos, "preempt_delay", "(%s) incompatible with nopreempt; reset (as keepalived does)", inst.Name)
		v.PreemptDelay = 0
	}

	v.Version = inst.Version.Or(c.k.VRRPVersion.Or(kaVersion))
	if inst.IPv6 {
		// keepalived runs an IPv6 instance with VRRPv3 whatever vrrp_version says.
		if inst.Version.Set && inst.Version.V == 2 {
			c.warn(inst.Version.Pos, "version", "(%s) VRRPv2 is IPv4 only: an IPv6 instance uses version 3 (as keepalived does)", inst.Name)
		}
		v.Version = 3
		if len(inst.UnicastPeers) > 0 {
			return nil, errorf(inst.UnicastPeers[0].Pos, "unicast_peer", "(%s) hacoord's VRRP has no IPv6 unicast: it would multicast to ff02::12 and never reach these peers; use --backend etcd or zk", inst.Name)
		}
	}
	v.AdvertInt = c.advertInt(inst, v.Version)

	switch {
	case !inst.Auth.Set && inst.AuthPass.Set:
	case !inst.Auth.Set:
	case inst.AuthType.V == "AH":
		c.warn(inst.AuthType.Pos, "auth_type", "(%s) dropped AH: hacoord has no IPsec AH authentication, so keepalived peers using AH will not accept its adverts; use PASS or none on every node", inst.Name)
	case !inst.AuthType.Set:
		if inst.AuthPass.Set {
			c.warn(inst.AuthPass.Pos, "auth_pass", "(%s) ignored: no auth_type PASS (keepalived uses no authentication then)", inst.Name)
		}
	case v.Version == 3:
		c.warn(inst.AuthType.Pos, "auth_type", "(%s) VRRP version 3 does not support authentication; ignored (as keepalived does)", inst.Name)
	case !inst.AuthPass.Set || inst.AuthPass.V == "":
		c.warn(inst.AuthType.Pos, "auth_type", "(%s) authentication without a password; ignored (as keepalived does)", inst.Name)
	default:
		v.AuthPass = inst.AuthPass.V
	}

	var peers []string
	for _, p := range inst.UnicastPeers {
		if p.TTL {
			c.warn(p.Pos, "unicast_peer", "(%s) dropped the min_ttl/max_ttl of %s: hacoord checks no TTL range", inst.Name, p.Addr)
		}
		peers = append(peers, p.Addr.String())
	}
	v.UnicastPeers = peers
	if a := inst.UnicastSrc; a.Set {
		switch {
		case len(peers) == 0:
			c.warn(a.Pos, a.Keyword, "(%s) a unicast keyword without unicast peers: multicast is used (as keepalived does); dropped", inst.Name)
		case a.V.Unmap().Is6() != inst.IPv6:
			c.warn(a.Pos, a.Keyword, "(%s) dropped %s: not of the instance's address family", inst.Name, a.V)
		default:
			v.UnicastSrc = a.V.String()
		}
	}
	return v, nil
}

// vridConflicts refuses two multicast instances with one VRID on one interface and address family,
// as keepalived does (check_vrid_conflicts: "duplicate VRID conflict"); unicast instances may share
// a VRID when their peers differ, which hacoord's check-config judges.
func vridConflicts(insts []*Instance) error {
	type key struct {
		ifname string
		vrid   int
		ipv6   bool
	}
	seen := map[key]*Instance{}
	for _, inst := range insts {
		if len(inst.UnicastPeers) > 0 || !inst.VRID.Set {
			continue
		}
		k := key{inst.Interface.V, inst.VRID.V, inst.IPv6}
		if other, dup := seen[k]; dup {
			return errorf(inst.VRID.Pos, "virtual_router_id", "(%s) duplicate VRID conflict with %s (VRID %d on %s); keepalived refuses this too", inst.Name, other.Name, k.vrid, k.ifname)
		}
		seen[k] = inst
	}
	return nil
}

// basePriority is the priority keepalived gives the instance: the configured one, else 255 for
// state MASTER (the address owner) and 100 otherwise.
func basePriority(inst *Instance) int {
	if !inst.Priority.Set && inst.State.V == "MASTER" {
		return kaOwnerPriority
	}
	return inst.Priority.Or(kaPriority)
}

// advertInt completes advert_int as keepalived does: version 2 needs whole seconds (rounded, at
// least 1s), version 3 centiseconds up to 40.95s.
func (c *conv) advertInt(inst *Instance, version int) time.Duration {
	a := inst.AdvertInt.Or(kaAdvertInt)
	at := inst.AdvertInt.Pos
	switch version {
	case 2:
		if a%time.Second != 0 {
			r := max((a+time.Second/2)/time.Second*time.Second, time.Second)
			c.warn(at, "advert_int", "(%s) VRRPv2 advertisement interval %v must be whole seconds; rounded to %v (as keepalived does)", inst.Name, a, r)
			a = r
		}
	default:
		if a > 4095*10*time.Millisecond {
			c.warn(at, "advert_int", "(%s) VRRPv3 advertisement interval %v is out of range; set to 40.95s (as keepalived does)", inst.Name, a)
			a = 4095 * 10 * time.Millisecond
		} else if a%(10*time.Millisecond) != 0 {
			r := max((a+5*time.Millisecond)/(10*time.Millisecond)*(10*time.Millisecond), 10*time.Millisecond)
			c.warn(at, "advert_int", "(%s) VRRPv3 advertisement interval %v must be in units of 10ms; rounded to %v (as keepalived does)", inst.Name, a, r)
			a = r
		}
	}
	return a
}

// dropVRRP reports the VRRP-only keywords of an instance converted for a store.
func (c *conv) dropVRRP(inst *Instance) {
	vrrpOnlyAt(c, inst.State)
	vrrpOnlyAt(c, inst.VRID)
	vrrpOnlyAt(c, inst.Priority)
	vrrpOnlyAt(c, inst.AdvertInt)
	vrrpOnlyAt(c, inst.Version)
	vrrpOnlyAt(c, inst.NoPreempt)
	vrrpOnlyAt(c, inst.PreemptDelay)
	vrrpOnlyAt(c, inst.Auth)
	vrrpOnlyAt(c, inst.UnicastSrc)
	vrrpOnlyAt(c, inst.UnicastPeer)
}

// announce maps keepalived's gratuitous ARP schedule onto hacoord's announce settings.
//
// keepalived, on becoming master, sends garp_master_repeat messages at once (vrrp_garp_interval
// apart), and a second set of as many garp_master_delay later (0: no second set); while master it
// sends garp_master_refresh_repeat messages every garp_master_refresh (0: never). hacoord sends
// `count` rounds at once (a round is a GARP request and a GARP reply per IPv4 VIP, an unsolicited
// NA per IPv6 VIP), then `repeat` more rounds `interval` apart, then one round every `refresh`.
// So count = garp_master_repeat; keepalived's second set becomes repeat 1 at interval
// garp_master_delay (one round: a Linux receiver takes at most one update per 1s neighbour
// locktime, so the rest of a set back to back changes nothing there); refresh = garp_master_refresh.
// hacoord spaces rounds more than that locktime apart, so 1s becomes 1.1s; with no second set the
// interval is unused but must still be valid, so it is 1.1s too.
func (c *conv) announce(inst *Instance) *Announce {
	g, ig, minGARP := c.k.GARP, inst.GARP, c.k.MinGARP.Set && c.k.MinGARP.V
	pickD := func(i, gl Opt[time.Duration], def, minDef time.Duration) Opt[time.Duration] {
		switch {
		case i.Set:
			return i
		case gl.Set:
			return gl
		case minGARP:
			return Opt[time.Duration]{V: minDef}
		}
		return Opt[time.Duration]{V: def}
	}
	pickN := func(i, gl Opt[int], def, minDef int) Opt[int] {
		switch {
		case i.Set:
			return i
		case gl.Set:
			return gl
		case minGARP:
			return Opt[int]{V: minDef}
		}
		return Opt[int]{V: def}
	}
	delay := pickD(ig.Delay, g.Delay, kaGARPDelay, 0)
	repeat := pickN(ig.Repeat, g.Repeat, kaGARPRepeat, 1)
	refresh := pickD(ig.Refresh, g.Refresh, 0, 0)
	refreshRep := pickN(ig.RefreshRepeat, g.RefreshRepeat, kaGARPRefreshRep, kaGARPRefreshRep)

	a := &Announce{Count: repeat.V, Interval: minAnnounceGap, Refresh: refresh.V}
	if delay.V > 0 {
		a.Repeat, a.Interval = 1, max(delay.V, minAnnounceGap)
		if delay.V < minAnnounceGap {
			c.warn(delay.Pos, delay.Keyword, "%v becomes %v: hacoord spaces announcement rounds more than Linux's 1s neighbour locktime apart", delay.V, a.Interval)
		}
		if repeat.Set && repeat.V > 1 {
			c.warn(repeat.Pos, repeat.Keyword, "meaning changes: hacoord sends %d rounds at once but one round after garp_master_delay (keepalived sends %d again; a Linux receiver takes at most one update per second anyway)", repeat.V, repeat.V)
		}
	}
	if refresh.V > 0 && refresh.V < minAnnounceGap {
		c.warn(refresh.Pos, refresh.Keyword, "%v becomes %v: hacoord spaces announcement rounds more than Linux's 1s neighbour locktime apart", refresh.V, minAnnounceGap)
		a.Refresh = minAnnounceGap
	}
	if refreshRep.Set && refreshRep.V > 1 {
		c.warn(refreshRep.Pos, refreshRep.Keyword, "meaning changes: hacoord sends one round per refresh, not %d", refreshRep.V)
	}
	for _, o := range []Opt[time.Duration]{g.Interval, g.GNAInterval} {
		if o.Set && o.V > 0 {
			c.warn(o.Pos, o.Keyword, "dropped: hacoord sends the messages of a round back to back")
		}
	}
	for _, o := range []Opt[time.Duration]{ig.LowerPrioDelay, g.LowerPrioDelay} {
		if o.Set {
			c.warn(o.Pos, o.Keyword, "dropped: hacoord does not re-announce on a lower-priority advert")
		}
	}
	for _, o := range []Opt[int]{ig.LowerPrioRepeat, g.LowerPrioRepeat} {
		if o.Set {
			c.warn(o.Pos, o.Keyword, "dropped: hacoord does not re-announce on a lower-priority advert")
		}
	}
	return a
}

// hooks converts the notify keywords. hacoord runs a hook as a program without arguments of its
// own (the notify hook gets GROUP NODE ROLE TERM).
func (c *conv) hooks(inst *Instance) *Hooks {
	if len(inst.Hooks) == 0 {
		return nil
	}
	h := &Hooks{}
	for _, k := range inst.Hooks {
		prog := k.Argv[0]
		if len(k.Argv) > 1 {
			c.warn(k.Pos, k.Keyword, "(%s) meaning changes: hacoord runs %s without the arguments %s (a hook is a program; wrap the command in a script)", inst.Name, prog, formatArgs(k.Argv[1:]))
		}
		if len(k.User) > 0 {
			c.warn(k.Pos, k.Keyword, "(%s) dropped the user %s: %s", inst.Name, formatArgs(k.User), noScriptUser)
		}
		switch k.Keyword {
		case "notify":
			c.warn(k.Pos, k.Keyword, "(%s) meaning changes: hacoord's notify hook gets GROUP NODE ROLE TERM (role master, backup, fault or stop) and HACOORD_* variables, not keepalived's INSTANCE NAME STATE PRIORITY", inst.Name)
			h.Notify = prog
		case "notify_master":
			h.NotifyMaster = prog
		case "notify_backup":
			h.NotifyBackup = prog
		case "notify_fault":
			h.NotifyFault = prog
		case "notify_stop":
			h.NotifyStop = prog
		}
	}
	return h
}

// command writes an argv as hacoord's script strings want it: words separated by blanks, with no
// quoting (hacoord splits on blanks and starts the program directly, like keepalived but without
// its quotes).
func (c *conv) command(p Pos, keyword, owner string, argv []string) string {
	for _, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n\r\v\f") {
			c.warn(p, keyword, "(%s) meaning changes: hacoord splits the command on blanks and has no quoting, so the argument %q becomes several (wrap the command in a script)", owner, a)
		}
	}
	return strings.Join(argv, " ")
}

// trackScripts converts an instance's track_script entries and those of its sync group, applying
// keepalived's rules: a sync group member ignores weighted instance scripts (unless the group sets
// sync_group_tracking_weight) and the address owner (priority 255) ignores weighted scripts.
func (c *conv) trackScripts(inst *Instance, prio int) []TrackScriptOut {
	var out []TrackScriptOut
	seen := map[string]bool{}
	add := func(t TrackScript, fromGroup bool) {
		s := t.script
		w := t.Weight.Or(s.Weight.V)
		reverse := t.Reverse.Or(s.Reverse)
		switch {
		case seen[t.Name]:
			c.warn(t.Pos, "track_script", "(%s) %s is tracked by the instance and its sync group; the instance's entry is used", inst.Name, t.Name)
			return
		case reverse:
			c.warn(t.Pos, "track_script", "(%s) dropped %s: hacoord has no reverse tracking (wrap the script in one that inverts its exit status)", inst.Name, t.Name)
			return
		case !fromGroup && w != 0 && inst.Sync != nil && !inst.Sync.TrackingWeight:
			c.warn(t.Pos, "track_script", "(%s) dropped %s with weight %d: keepalived ignores weighted track scripts of a sync group member (sync_group_tracking_weight keeps them)", inst.Name, t.Name, w)
			return
		case w != 0 && prio == kaOwnerPriority:
			if fromGroup {
				c.warn(t.Pos, "track_script", "(%s) weight of %s cleared: a member has priority 255 (as keepalived does)", inst.Name, t.Name)
				w = 0
			} else {
				c.warn(t.Pos, "track_script", "(%s) dropped %s with weight %d: the address owner (priority 255) ignores weighted track scripts (as keepalived does)", inst.Name, t.Name, w)
				return
			}
		case w != 0 && !c.vrrp:
			c.warn(t.Pos, "track_script", "(%s) meaning changes: with --backend %s a failing %s withdraws the candidacy whatever its weight (%d)", inst.Name, c.opt.Backend, t.Name, w)
		}
		seen[t.Name] = true
		interval := s.Interval.Or(kaScriptInterval)
		out = append(out, TrackScriptOut{
			Name:     t.Name,
			Script:   c.command(s.Argv.Pos, "script", s.Name, s.Argv.V),
			Interval: interval,
			Timeout:  s.Timeout.Or(interval),
			Weight:   w,
			Rise:     s.Rise.Or(1),
			Fall:     s.Fall.Or(1),
		})
	}
	for _, t := range inst.TrackScripts {
		add(t, false)
	}
	if g := inst.Sync; g != nil {
		ownerInGroup := false
		for _, m := range g.Members {
			ownerInGroup = ownerInGroup || basePriority(m) == kaOwnerPriority
		}
		for _, t := range g.TrackScripts {
			if ownerInGroup && prio != kaOwnerPriority && t.Weight.Or(t.script.Weight.V) != 0 {
				c.warn(t.Pos, "track_script", "(%s) weight of %s cleared: a member of %s has priority 255 (as keepalived does)", inst.Name, t.Name, g.Name)
				t.Weight = Opt[int]{V: 0, Set: true, Pos: t.Pos}
			}
			add(t, true)
		}
	}
	return out
}

// trackIfaces converts track_interface entries with keepalived's rules: the instance tracks its
// own interface with weight 0 (a down link means FAULT) unless dont_track_primary, and ignores an
// entry naming it; a sync group member's weights become 0 (unless sync_group_tracking_weight); the
// address owner stops tracking a weighted interface.
func (c *conv) trackIfaces(inst *Instance, own string, prio int) []TrackIfaceOut {
	var out []TrackIfaceOut
	seen := map[string]bool{}
	if !inst.DontTrackPrimary.V {
		out = append(out, TrackIfaceOut{Name: own, Weight: 0})
		seen[own] = true
	}
	add := func(t TrackInterface, fromGroup bool) {
		w := t.Weight
		switch {
		case t.Name == own && !fromGroup:
			c.warn(t.Pos, "track_interface", "(%s) %s ignored: it is the instance's own interface, which keepalived tracks anyway (down: FAULT) unless dont_track_primary", inst.Name, t.Name)
			return
		case seen[t.Name]:
			c.warn(t.Pos, "track_interface", "(%s) %s is tracked by the instance and its sync group (keepalived: remove one); the first entry is used", inst.Name, t.Name)
			return
		case t.Reverse:
			c.warn(t.Pos, "track_interface", "(%s) dropped %s: hacoord has no reverse tracking", inst.Name, t.Name)
			return
		case !fromGroup && w != 0 && inst.Sync != nil && !inst.Sync.TrackingWeight:
			c.warn(t.Pos, "track_interface", "(%s) weight %d of %s set to 0: keepalived ignores tracking weights of a sync group member (a down link means FAULT)", inst.Name, w, t.Name)
			w = 0
		case w != 0 && prio == kaOwnerPriority:
			c.warn(t.Pos, "track_interface", "(%s) dropped %s with weight %d: the address owner (priority 255) stops tracking weighted interfaces (as keepalived does)", inst.Name, t.Name, w)
			return
		case w != 0 && !c.vrrp:
			c.warn(t.Pos, "track_interface", "(%s) meaning changes: with --backend %s a down %s withdraws the candidacy whatever its weight (%d)", inst.Name, c.opt.Backend, t.Name, w)
		}
		seen[t.Name] = true
		out = append(out, TrackIfaceOut{Name: t.Name, Weight: w})
	}
	for _, t := range inst.TrackIfaces {
		add(t, false)
	}
	if g := inst.Sync; g != nil {
		for _, t := range g.TrackIfaces {
			add(t, true)
		}
	}
	return out
}
