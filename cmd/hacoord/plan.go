package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/backend/vrrp"
	"github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/election/health"
	"github.com/hacoord/hacoord/fencing"
	"github.com/hacoord/hacoord/ipvs"
	"github.com/hacoord/hacoord/vip"
)

// plan is the validated configuration: each instance's settings mapped onto the Config of every
// package it uses. The daemon runs a plan, and check-config prints one; both build it with
// buildPlan, so check-config runs exactly the daemon's validation.
type plan struct {
	node       string
	log        LogSettings
	fenceGuard bool
	etcdFiles  etcdKeys // the etcd TLS files and credentials, for the fence guards (relayCandidacy)
	control    string   // the control socket (control.go)
	stateDir   string   // what survives a restart: maintenance flags
	instances  []*instancePlan
	syncGroups []syncGroupPlan
	metrics    string // --metrics-address; "": none
}

// instancePlan is one instance.
type instancePlan struct {
	name    string
	backend string
	group   string
	iface   string
	status  string     // status file
	address netip.Addr // for the master record; zero: the interface's first global address
	vips    []netip.Prefix
	src     netip.Addr  // vrrp.unicast_src; zero: none
	etcd    etcd.Config // backend etcd
	zk      zk.Config   // backend zk
	vrrp    vrrp.Config // backend vrrp
	vipSets []vipSet    // the VIPs by device and label; the instance's interface first
	ipvs    ipvs.Config
	health  health.Config
	hooks   hookPlan
	in      *instanceSettings // where its keys came from, to name them in errors
}

// vipSet is the VIPs of an instance that go on one device with one label: one vip.Manager.
type vipSet struct {
	cfg   vip.Config
	index []int // positions in the instance's vips
}

// syncGroupPlan is a sync group: indexes into plan.instances, the leader first.
type syncGroupPlan struct {
	name    string
	members []int
}

// record returns the master record template of the instance (the address filled in later if the
// interface gives it).
func (ip *instancePlan) record(node string) election.Record {
	return election.Record{Group: ip.group, Node: node, Address: ip.address, VIPs: ip.vips}
}

// Backends.
const (
	backendEtcd = "etcd"
	backendZK   = "zk"
	backendVRRP = "vrrp"
)

// planner maps settings onto a plan, collecting every problem; each names its flag or YAML key.
type planner struct {
	s    settings
	errs []error
	seen map[string]bool
}

// fail records a problem with key (a flag or YAML key; "" for none). The same message is reported
// once: a daemon-wide setting is checked once per instance.
func (b *planner) fail(key string, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if key != "" {
		msg = key + ": " + msg
	}
	if b.seen[msg] {
		return
	}
	b.seen[msg] = true
	b.errs = append(b.errs, errors.New(msg))
}

// buildPlan maps s onto every package's Config and validates them with their Validate, plus the
// rules no single package can check (names, groups and VIPs unique across instances; sync groups).
// It reports every problem at once, as a configError; the plan is returned even then, for
// checkSystem to report the system's problems with it too.
func buildPlan(s settings) (*plan, error) {
	b := &planner{s: s, seen: map[string]bool{}}
	d := s.daemon
	p := &plan{node: d.Name, log: d.Log, fenceGuard: d.FenceGuard, etcdFiles: d.Etcd,
		control: orDefault(d.ControlSocket, defaultControlSocket(d.Name)), stateDir: orDefault(d.StateDir, defaultStateDir)}
	p.metrics = d.MetricsAddress
	b.checkDaemon()
	b.checkMetrics()
	b.checkFlags()
	tlsc := b.etcdTLS()
	for i := range s.instances {
		p.instances = append(p.instances, b.instance(&s.instances[i], tlsc))
	}
	b.checkStores(p)
	b.checkAcross(p)
	b.checkSyncDaemon(p)
	p.syncGroups = b.syncGroups(p)
	if len(b.errs) > 0 {
		return p, configError{errors.Join(b.errs...)}
	}
	return p, nil
}

// checkDaemon checks the settings cmd itself uses: the node name and the logger.
func (b *planner) checkDaemon() {
	d := b.s.daemon
	if d.Name == "" {
		b.fail(b.s.key(nil, "name", ""), "empty (and the host name is unknown)")
	}
	if !slices.Contains([]string{"console", "json"}, d.Log.Format) {
		b.fail(b.s.key(nil, "log.format", ""), "%q is not console or json", d.Log.Format)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, d.Log.Level) {
		b.fail(b.s.key(nil, "log.level", ""), "%q is not debug, info, warn or error", d.Log.Level)
	}
	if !validBackend(d.Backend) {
		b.fail(b.s.key(nil, "backend", ""), "%q is not etcd, zk or vrrp", d.Backend)
	}
}

// checkFlags refuses the instance flags when the file lists its instances: they set the keys of
// a single-instance file only.
func (b *planner) checkFlags() {
	if len(b.s.instances) == 0 || !b.s.instances[0].listed {
		return
	}
	for _, f := range b.s.givenFlags() {
		if k, ok := instanceFlags[f]; ok {
			b.fail("--"+f, "%s has an instances: list; set %s there (flags set a single-instance file's keys only)", b.s.file, k)
		}
	}
}

func validBackend(s string) bool { return s == backendEtcd || s == backendZK || s == backendVRRP }

// etcdUser returns the etcd user and password, taking etcdctl's --user user:password form.
func etcdUser(e etcdKeys) (string, string) {
	if u, p, ok := strings.Cut(e.User, ":"); ok && e.Password == "" {
		return u, p
	}
	return e.User, e.Password
}

// etcdTLS builds the client TLS configuration from --cacert/--cert/--key, as etcdctl does; nil when
// none is given (an https:// endpoint then uses the system roots).
func (b *planner) etcdTLS() *tls.Config {
	e := b.s.daemon.Etcd
	if u, p := etcdUser(e); p != "" && u == "" {
		b.fail(b.s.key(nil, "etcd.password", ""), "needs a user (etcd.user, --user)")
	}
	if e.CACert == "" && e.Cert == "" && e.Key == "" {
		return nil
	}
	if (e.Cert == "") != (e.Key == "") {
		b.fail(b.s.key(nil, "etcd.cert", ""), "--cert and --key go together (etcd.cert, etcd.key): give both or neither")
		return nil
	}
	info := transport.TLSInfo{CertFile: e.Cert, KeyFile: e.Key, TrustedCAFile: e.CACert}
	tc, err := info.ClientConfig()
	if err != nil {
		b.fail(b.s.key(nil, "etcd.cacert", ""), "TLS files: %v", err)
		return nil
	}
	return tc
}

// instance maps one instance's keys onto the Configs it uses and validates each.
func (b *planner) instance(in *instanceSettings, tlsc *tls.Config) *instancePlan {
	k, d := in.keys, b.s.daemon
	ip := &instancePlan{in: in, backend: d.Backend, iface: k.Interface, address: k.Address.Addr,
		vips: k.VIPs.prefixes(), src: k.VRRP.UnicastSrc.Addr, ipvs: k.IPVS, health: k.Health, hooks: mapHooks(k.Hooks)}
	if in.backend != "" {
		ip.backend = in.backend
		if !validBackend(in.backend) {
			b.fail(in.path+".backend", "%q is not etcd, zk or vrrp", in.backend)
		}
	}
	ip.name, ip.group = in.name, k.Group
	switch {
	case !in.listed:
		if ip.group == "" {
			ip.group = defaultGroup
		}
		ip.name = ip.group
	case in.name == "":
		b.fail(in.path+".name", "required (it names the instance in logs, status and sync_groups)")
	case strings.ContainsAny(in.name, "/ \t\n\"'"):
		b.fail(in.path+".name", "%q: want a name without '/', quotes or spaces", in.name)
	}
	if ip.group == "" {
		ip.group = ip.name
	}
	if ip.address.IsValid() && slices.ContainsFunc(ip.vips, func(v netip.Prefix) bool { return v.Addr() == ip.address }) {
		b.fail(b.s.key(in, "address", ip.address.String()), "%s is this node's address in the master record, and a VIP too", ip.address)
	}
	ip.status = k.StatusFile
	if ip.status == "" {
		ip.status = defaultStatusFile(ip.group, d.Name)
	}
	b.mapVIP(ip)
	b.mapBackend(ip, tlsc)
	b.prefixed(in, ip.ipvs.Validate())
	b.prefixed(in, ip.health.Validate())
	b.checkHooks(ip)
	return ip
}

// mapVIP maps the instance's VIPs onto one vip.Config per device and label (the instance's interface
// and vip_label first, then the long form's dev and label, in order of appearance) and validates
// each.
func (b *planner) mapVIP(ip *instancePlan) {
	k := ip.in.keys
	base := vip.DefaultConfig()
	base.Interface, base.Label, base.Lifetime = k.Interface, k.VIPLabel, k.VIPLifetime
	base.Conflict.Policy = conflictPolicy(k.Conflict, base.Conflict.Policy)
	switch ip.backend {
	case backendZK:
		base.Conflict.Interval = conflictInterval(b.s.daemon.ZK.SessionTimeout)
	case backendEtcd:
		base.Conflict.Interval = conflictInterval(b.s.daemon.LeaseTTL)
	}
	base.Announce = vip.AnnounceConfig{Count: k.Announce.Count, Repeat: k.Announce.Repeat,
		RepeatInterval: k.Announce.Interval, Refresh: k.Announce.Refresh}
	ip.vipSets = []vipSet{{cfg: base}}
	for n, e := range k.VIPs {
		dev, label := orDefault(e.Dev, k.Interface), orDefault(e.Label, k.VIPLabel)
		i := slices.IndexFunc(ip.vipSets, func(s vipSet) bool { return s.cfg.Interface == dev && s.cfg.Label == label })
		if i < 0 {
			c := base
			c.Interface, c.Label = dev, label
			ip.vipSets, i = append(ip.vipSets, vipSet{cfg: c}), len(ip.vipSets)
		}
		ip.vipSets[i].cfg.VIPs = append(ip.vipSets[i].cfg.VIPs, e.Prefix)
		ip.vipSets[i].index = append(ip.vipSets[i].index, n)
	}
	if len(ip.vipSets) > 1 && len(ip.vipSets[0].index) == 0 {
		ip.vipSets = ip.vipSets[1:] // every VIP has a device of its own
	}
	for _, set := range ip.vipSets {
		rules := vipRules
		if set.cfg.Interface != k.Interface || set.cfg.Label != k.VIPLabel {
			first := set.index[0]
			rules = append([]rule{
				{match: "interface", key: fmt.Sprintf("vips[%d].dev", first)},
				{match: "label", key: fmt.Sprintf("vips[%d].label", first)},
			}, vipRules...)
		}
		b.attribute(ip, set.cfg.Validate(), "vip: config: ", rules)
	}
}

// conflictInterval is the conflict probe's interval (vip.ConflictConfig.Interval: Probes rounds,
// and as long again after the last) for a lease or session of ttl: ttl/60 within [5ms, 20ms], so
// vip's default 20ms from a 1.2s TTL up, 16ms for etcd's 1s fast profile and 5ms (a 15ms probe)
// for a 300ms ZooKeeper session. The probe runs on every takeover, on the path from the store's
// "you are master" to the first gratuitous ARP, so a crash failover waits for all of it: at a
// 300ms session a 30ms probe was a tenth of the failover. It also runs within the new master's
// validity, which a short session keeps small (a 300ms session with its 100ms margin: 50ms on an
// ensemble, 125ms on a standalone server, see zk.Timing): a 60ms probe could outlast it, and the
// new master would let go of the VIPs at once. A host that still has the VIP answers from its
// kernel: an ARP reply or a neighbour advertisement comes in well under a millisecond on a LAN,
// and the first round's answer has the whole window (3 x 5ms at the least), an order of magnitude
// more than it needs even on a loaded host. There is no key for the interval: every instance gets
// this one.
func conflictInterval(ttl time.Duration) time.Duration {
	return min(max(ttl/60, 5*time.Millisecond), 20*time.Millisecond)
}

// mapBackend maps the instance onto its backend's Config and validates it.
func (b *planner) mapBackend(ip *instancePlan, tlsc *tls.Config) {
	d, rec := b.s.daemon, ip.record(b.s.daemon.Name)
	switch ip.backend {
	case backendEtcd:
		ip.etcd = etcdConfig(d, ip.group, rec, tlsc)
		ip.etcd.Priority, ip.etcd.NoPreempt, ip.etcd.PreemptDelay = priorityOf(ip.in.keys)
		b.attribute(ip, ip.etcd.Validate(), "etcd: config: ", etcdRules)
	case backendZK:
		ip.zk = zkConfig(d, ip.group, rec)
		ip.zk.Priority, ip.zk.NoPreempt, ip.zk.PreemptDelay = priorityOf(ip.in.keys)
		b.attribute(ip, ip.zk.Validate(), "zk: config: ", zkRules)
	case backendVRRP:
		ip.vrrp = vrrpConfig(ip.in.keys, ip.group, d.Name, ip.vips)
		b.attribute(ip, ip.vrrp.Validate(), "vrrp: ", vrrpRules)
	}
	if ip.src.IsValid() && ip.backend != backendVRRP {
		b.fail(b.s.key(ip.in, "vrrp.unicast_src", ""), "only for backend vrrp")
	}
}

// etcdConfig maps the daemon's store keys and an instance's group onto etcd.Config. An Observer
// uses it with a zero record.
func etcdConfig(d daemonKeys, group string, rec election.Record, tlsc *tls.Config) etcd.Config {
	c := etcd.DefaultConfig()
	c.Endpoints = trimmed(d.Endpoints)
	c.Group, c.Name, c.Record = group, d.Name, rec
	c.TTL, c.Margin = d.LeaseTTL, d.FenceMargin
	c.Username, c.Password = etcdUser(d.Etcd)
	c.TLS = tlsc
	return c
}

// zkConfig maps the daemon's store keys and an instance's group onto zk.Config.
func zkConfig(d daemonKeys, group string, rec election.Record) zk.Config {
	c := zk.DefaultConfig()
	c.Servers = trimmed(d.Endpoints)
	c.SessionTimeout, c.ConnectTimeout = d.ZK.SessionTimeout, d.ZK.SessionTimeout
	c.Auth = d.ZK.Auth
	c.Group, c.Name, c.Record = group, d.Name, rec
	c.Margin = d.FenceMargin
	return c
}

// vrrpConfig maps an instance's keys onto vrrp.Config.
func vrrpConfig(k instanceKeys, group, node string, vips []netip.Prefix) vrrp.Config {
	r := k.VRRP
	c := vrrp.DefaultConfig()
	c.Interface, c.VRID, c.AdvertInt = k.Interface, r.VRID, r.AdvertInt
	var noPreempt bool
	c.Priority, noPreempt, c.PreemptDelay = priorityOf(k)
	c.Preempt = !noPreempt
	c.Version, c.AuthPass = r.Version, r.AuthPass
	c.UnicastPeers = slices.Clone(r.UnicastPeers)
	c.Group, c.Node, c.VIPs = group, node, vips
	return c
}

func trimmed(in []string) []string {
	var out []string
	for _, v := range in {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// hookPlan is an instance's hooks as fencing.Hooks, by YAML key (hooks.fence, hooks.notify,
// hooks.notify_master, ...); a key is absent when its hook is not set.
type hookPlan map[string]fencing.Hook

// mapHooks maps the hook keys onto fencing.Hook values.
func mapHooks(k hookKeys) hookPlan {
	hp := hookPlan{}
	for key, path := range map[string]string{"hooks.fence": k.Fence, "hooks.notify": k.Notify, "hooks.notify_master": k.NotifyMaster,
		"hooks.notify_backup": k.NotifyBackup, "hooks.notify_fault": k.NotifyFault, "hooks.notify_stop": k.NotifyStop} {
		if path != "" {
			hp[key] = fencing.Hook{Path: path, Timeout: k.Timeout}
		}
	}
	return hp
}

// checkHooks checks the hook settings (fencing.Hook has no Validate yet: a candidate for a move;
// that each program exists is checkSystem's).
func (b *planner) checkHooks(ip *instancePlan) {
	h := ip.in.keys.Hooks
	if h.Timeout < 0 {
		b.fail(b.s.key(ip.in, "hooks.timeout", ""), "%v is negative", h.Timeout)
	}
	if h.FenceRetries < 0 {
		b.fail(b.s.key(ip.in, "hooks.fence_retries", ""), "%d is negative", h.FenceRetries)
	}
	if h.FenceRetryInterval < 0 {
		b.fail(b.s.key(ip.in, "hooks.fence_retry_interval", ""), "%v is negative", h.FenceRetryInterval)
	}
}

// checkStores checks the store endpoints the instances need: URL schemes for etcd, ports for
// ZooKeeper (rules that belong in etcd.Config.Validate and zk.Config.Validate; done here until
// those packages check them), and one store per daemon.
func (b *planner) checkStores(p *plan) {
	uses := map[string]bool{}
	for _, ip := range p.instances {
		uses[ip.backend] = true
	}
	if uses[backendEtcd] && uses[backendZK] {
		b.fail(b.s.key(nil, "backend", ""), "instances use both etcd and zk: one daemon talks to one store (its endpoints)")
	}
	key := func(i int, e string) string { return b.s.key(nil, fmt.Sprintf("endpoints[%d]", i), e) }
	for i, e := range trimmed(b.s.daemon.Endpoints) {
		switch {
		case uses[backendEtcd]:
			if err := checkEtcdEndpoint(e); err != nil {
				b.fail(key(i, e), "%v", err)
			}
		case uses[backendZK]:
			if err := checkZKEndpoint(e); err != nil {
				b.fail(key(i, e), "%v", err)
			}
		}
	}
}

// checkAcross checks what must be unique across instances: names, groups (per store), VRRP
// routers, VIPs, virtual servers and status files.
func (b *planner) checkAcross(p *plan) {
	owner := map[netip.Addr][3]int{} // VIP -> instance, position, VIP set
	first := map[string]int{}
	dup := func(kind, value string, i int) (int, bool) {
		k := kind + "\x00" + value
		j, ok := first[k]
		if !ok {
			first[k] = i
		}
		return j, ok
	}
	for i, ip := range p.instances {
		in := ip.in
		if ip.name != "" && in.listed {
			if j, ok := dup("name", ip.name, i); ok {
				b.fail(in.path+".name", "%q is also instances[%d]'s name", ip.name, j)
			}
		}
		if ip.backend != backendVRRP {
			if j, ok := dup("group", ip.group, i); ok {
				b.fail(b.s.key(in, "group", ""), "%q is also %s's group", ip.group, p.instances[j].name)
			}
		} else if j, ok := dup("vrid", fmt.Sprintf("%d on %s", ip.vrrp.VRID, ip.iface), i); ok {
			b.fail(b.s.key(in, "vrrp.vrid", ""), "%d on %s is also %s's", ip.vrrp.VRID, ip.iface, p.instances[j].name)
		}
		b.checkVIPsAcross(p, i, owner)
		for n, vs := range ip.ipvs.VirtualServers {
			if j, ok := dup("vs", serviceKey(vs), i); ok && j != i {
				b.fail(fmt.Sprintf("%svirtual_servers[%d]", pathDot(in), n), "%s is also a virtual server of %s", serviceKey(vs), p.instances[j].name)
			}
		}
		if j, ok := dup("status", ip.status, i); ok {
			b.fail(b.s.key(in, "status_file", ""), "%s is also %s's status file", ip.status, p.instances[j].name)
		}
	}
}

// checkVIPsAcross refuses a VIP of instance i that another instance has too, or that i has on two
// devices (twice on one device, vip.Config says so).
func (b *planner) checkVIPsAcross(p *plan, i int, owner map[netip.Addr][3]int) {
	ip := p.instances[i]
	for s, set := range ip.vipSets {
		for _, n := range set.index {
			v := ip.vips[n]
			o, ok := owner[v.Addr()]
			switch {
			case !ok:
				owner[v.Addr()] = [3]int{i, n, s}
			case o[0] != i:
				b.fail(b.s.key(ip.in, fmt.Sprintf("vips[%d]", n), v.String()), "%s is also a VIP of %s", v.Addr(), p.instances[o[0]].name)
			case o[2] != s:
				b.fail(b.s.key(ip.in, fmt.Sprintf("vips[%d]", n), v.String()), "%s is also vips[%d], on another device", v.Addr(), o[1])
			}
		}
	}
}

func pathDot(in *instanceSettings) string {
	if in.path == "" {
		return ""
	}
	return in.path + "."
}

// serviceKey names a virtual service as ipvsadm does: "TCP 10.0.0.100:80", "FWM 1".
func serviceKey(vs ipvs.VirtualServer) string {
	if vs.FWMark != 0 {
		return fmt.Sprintf("FWM %d %s", vs.FWMark, vs.Family)
	}
	proto := strings.ToUpper(vs.Protocol)
	if proto == "" {
		proto = "TCP"
	}
	return proto + " " + netip.AddrPortFrom(vs.Address, vs.Port).String()
}

// syncGroups checks sync_groups and resolves their members.
func (b *planner) syncGroups(p *plan) []syncGroupPlan {
	byName := map[string]int{}
	for i, ip := range p.instances {
		if ip.in.listed && ip.name != "" {
			byName[ip.name] = i
		}
	}
	var out []syncGroupPlan
	groupOf, names := map[int]int{}, map[string]int{}
	for g, sg := range b.s.syncGroups {
		key := fmt.Sprintf("sync_groups[%d]", g)
		switch j, dup := names[sg.Name]; {
		case sg.Name == "":
			b.fail(key+".name", "required")
		case dup:
			b.fail(key+".name", "%q is also sync_groups[%d]", sg.Name, j)
		default:
			names[sg.Name] = g
		}
		if len(sg.Instances) < 2 {
			b.fail(key+".instances", "a sync group needs at least two instances, it has %d", len(sg.Instances))
		}
		plan := syncGroupPlan{name: sg.Name}
		for m, name := range sg.Instances {
			mk := fmt.Sprintf("%s.instances[%d]", key, m)
			i, ok := byName[name]
			switch h, taken := groupOf[i]; {
			case !ok:
				b.fail(mk, "%q is not the name of an entry of instances:", name)
				continue
			case taken:
				b.fail(mk, "%q is already in sync_groups[%d]", name, h)
				continue
			}
			groupOf[i] = g
			plan.members = append(plan.members, i)
		}
		out = append(out, plan)
	}
	return out
}

// rule names the key a package's error message is about: a message starting with match (after the
// package's prefix) is about key (an instance key, or a daemon key when daemon is set). For a list
// key, the element is the one whose value the message names.
type rule struct {
	match  string
	key    string
	daemon bool
	list   bool
}

// The packages' messages name their fields in words; these tables map them to keys. A structured
// field error in each package's Validate would replace them.
var (
	vipRules = []rule{
		{match: "interface", key: "interface"},
		{match: "no VIPs", key: "vips"},
		{match: "VIP ", key: "vips", list: true},
		{match: "label", key: "vip_label"},
		{match: "announce count", key: "announce.count"},
		{match: "announce repeat interval", key: "announce.interval"},
		{match: "announce repeat", key: "announce.repeat"},
		{match: "announce refresh", key: "announce.refresh"},
		{match: "conflict", key: "conflict"},
	}
	etcdRules = []rule{
		{match: "no endpoints", key: "endpoints", daemon: true},
		{match: "group", key: "group"},
		{match: "name", key: "name", daemon: true},
		{match: "record node", key: "name", daemon: true},
		{match: "ttl", key: "lease_ttl", daemon: true},
		{match: "keepalive interval", key: "lease_ttl", daemon: true},
		{match: "fencing: margin", key: "fence_margin", daemon: true},
		{match: "priority", key: "priority"},
		{match: "preempt delay", key: "preempt_delay"},
	}
	zkRules = []rule{
		{match: "Servers", key: "endpoints", daemon: true},
		{match: "server ", key: "endpoints", daemon: true},
		{match: "chroot", key: "endpoints", daemon: true},
		{match: "SessionTimeout", key: "zookeeper.session_timeout", daemon: true},
		{match: "Auth", key: "zookeeper.auth", daemon: true},
		{match: "Group", key: "group"},
		{match: "Name", key: "name", daemon: true},
		{match: "Record.Node", key: "name", daemon: true},
		{match: "Margin", key: "fence_margin", daemon: true},
		{match: "fencing: margin", key: "fence_margin", daemon: true},
	}
	vrrpRules = []rule{
		{match: "interface", key: "interface"},
		{match: "vrid", key: "vrrp.vrid"},
		{match: "priority", key: "vrrp.priority"},
		{match: "advert-int", key: "vrrp.advert_int"},
		{match: "auth-pass", key: "vrrp.auth_pass"},
		{match: "vrrp-version", key: "vrrp.version"},
		{match: "preempt-delay", key: "vrrp.preempt_delay"},
		{match: "unicast-peer", key: "vrrp.unicast_peers", list: true},
		{match: "vip", key: "vips", list: true},
		{match: "", key: "vips"}, // "300 VIPs, at most 255 fit an advert"
	}
)

// attribute reports each line of a package's Validate error under the key it is about.
func (b *planner) attribute(ip *instancePlan, err error, prefix string, rules []rule) {
	if err == nil {
		return
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		msg := strings.TrimPrefix(line, prefix)
		r, ok := matchRule(msg, rules)
		if !ok {
			b.fail(pathOr(ip.in), "%s", line)
			continue
		}
		in, key, value := ip.in, r.key, ""
		if r.daemon {
			in = nil
		}
		if r.list {
			if n, v, ok := listElement(msg, ip, r.key); ok {
				key, value = fmt.Sprintf("%s[%d]", r.key, n), v
			}
		}
		b.fail(b.s.key(in, key, value), "%s", msg)
	}
}

func matchRule(msg string, rules []rule) (rule, bool) {
	for _, r := range rules {
		if strings.HasPrefix(msg, r.match) {
			return r, true
		}
	}
	return rule{}, false
}

// listElement finds the element of list key that msg names (the last one with that address, for
// "listed twice"), and its text.
func listElement(msg string, ip *instancePlan, key string) (int, string, bool) {
	var vals []string
	switch key {
	case "vips":
		for _, v := range ip.vips {
			vals = append(vals, v.String())
		}
	case "vrrp.unicast_peers":
		for _, a := range ip.in.keys.VRRP.UnicastPeers {
			vals = append(vals, a.String())
		}
	}
	found := -1
	for _, t := range strings.Fields(msg) {
		t = strings.Trim(t, ",:;()\"'")
		for n, v := range vals {
			if t == v || t == strings.Split(v, "/")[0] {
				found = n
			}
		}
		if found >= 0 {
			return found, vals[found], true
		}
	}
	return 0, "", false
}

// prefixed reports each line of an error whose lines start with a key relative to the instance
// ("virtual_servers[0].lb_algo: ...", "track_scripts[1].name: ...") under the instance's path, or
// the flag that set it.
func (b *planner) prefixed(in *instanceSettings, err error) {
	if err == nil {
		return
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		key, msg, ok := strings.Cut(line, ": ")
		if !ok || strings.ContainsAny(key, " ") {
			b.fail(pathOr(in), "%s", line)
			continue
		}
		b.fail(b.s.key(in, key, ""), "%s", msg)
	}
}

// pathOr returns the instance's YAML path, or "" at the top level.
func pathOr(in *instanceSettings) string { return in.path }
