package main

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/spf13/pflag"

	"github.com/hacoord/hacoord/election/health"
)

// flagValues are the values the daemon's flags are bound to. A flag not given keeps its default
// (or, with --config, the file's value: see overlay).
type flagValues struct {
	daemon   daemonKeys
	instance instanceKeys
	// TrackScripts and TrackIfaces are --track-script and --track-interface: they add to the file's
	// track_scripts and track_interfaces.
	trackScripts []string
	trackIfaces  []string
	// trackRefs are --track-reference: they add to the file's track_reference.
	trackRefs []health.Reference
}

func defaultFlagValues() flagValues {
	return flagValues{daemon: defaultDaemon(), instance: defaultInstance()}
}

// instanceFlags are the flags that set an instance key: they define or override the single
// instance, and are refused with an instances: list in the file. Every other daemon flag is
// daemon-wide.
var instanceFlags = map[string]string{ // flag -> YAML key
	"group": "group", "interface": "interface", "address": "address", "vip": "vips", "vip-label": "vip_label",
	"vrid": "vrrp.vrid", "priority": "priority", "advert-int": "vrrp.advert_int", "nopreempt": "nopreempt",
	"preempt-delay": "preempt_delay", "unicast-peer": "vrrp.unicast_peers", "vrrp-version": "vrrp.version",
	"auth-pass": "vrrp.auth_pass", "auth-pass-file": "vrrp.auth_pass_file", "garp-count": "announce.count", "garp-repeat": "announce.repeat",
	"garp-interval": "announce.interval", "garp-refresh": "announce.refresh", "track-script": "track_scripts",
	"track-interface": "track_interfaces", "status-file": "status_file", "fence-hook": "hooks.fence",
	"track-reference": "track_reference", "conflict": "conflict",
	"notify-hook": "hooks.notify", "hook-timeout": "hooks.timeout", "fence-retries": "hooks.fence_retries",
	"fence-retry-interval": "hooks.fence_retry_interval",
}

// daemonFlags maps the daemon-wide flags to their YAML keys.
var daemonFlags = map[string]string{
	"backend": "backend", "name": "name", "endpoints": "endpoints", "lease-ttl": "lease_ttl",
	"fence-margin": "fence_margin", "cacert": "etcd.cacert", "cert": "etcd.cert", "key": "etcd.key",
	"user": "etcd.user", "password": "etcd.password", "zk-auth": "zookeeper.auth",
	"password-file": "etcd.password_file", "zk-auth-file": "zookeeper.auth_file",
	"zk-session-timeout": "zookeeper.session_timeout", "fence-guard": "fence_guard",
	"log-format": "log.format", "log-level": "log.level", "metrics-address": "metrics_address",
	"control-socket": "control_socket", "state-dir": "state_dir",
}

// flagOf returns the flag that sets YAML key (its first element: "vips[0]" -> "vip"), or "".
func flagOf(key string) string {
	base, _, _ := strings.Cut(key, "[")
	for _, m := range []map[string]string{instanceFlags, daemonFlags} {
		for f, k := range m {
			if k == base {
				return f
			}
		}
	}
	return ""
}

// registerFlags binds the daemon's flags to v. It is called twice: once on the command's own flag
// set and once on a scratch set over the values read from --config, so that the flags a user gave
// can be applied on top of the file (see overlay).
func registerFlags(fs *pflag.FlagSet, v *flagValues) {
	registerStoreFlags(fs, &v.daemon, &v.instance.Group)
	d, in := &v.daemon, &v.instance
	fs.StringVar(&d.Name, "name", d.Name, "this node's name, unique in each group (the host name unless set)")
	fs.DurationVar(&d.LeaseTTL, "lease-ttl", d.LeaseTTL, "lease TTL (etcd) / how long a silent master keeps the VIPs; whole seconds for etcd")
	fs.DurationVar(&d.FenceMargin, "fence-margin", d.FenceMargin, "how long before the lease can expire the master lets go (default: TTL/10, 100ms..1s)")
	fs.StringVar(&d.ControlSocket, "control-socket", d.ControlSocket, "the daemon's control socket for hacoord resign, transfer and maintenance (default /run/hacoord/<name>.sock)")
	fs.StringVar(&d.StateDir, "state-dir", d.StateDir, "directory for what survives a restart: maintenance (default /var/lib/hacoord)")
	fs.BoolVar(&d.FenceGuard, "fence-guard", d.FenceGuard, "run a watchdog process that removes the VIPs as soon as the daemon dies or a stopped daemon's deadline passes")
	fs.StringVar(&d.MetricsAddress, "metrics-address", d.MetricsAddress, "serve Prometheus /metrics and /healthz on this host:port (empty: off)")

	fs.StringVar(&in.Interface, "interface", in.Interface, "interface that carries the VIPs")
	fs.Var(&prefixListFlag{l: &in.VIPs}, "vip", "virtual IP with prefix length, e.g. 10.0.0.100/24 (repeat for several)")
	fs.Var(&addrFlag{a: &in.Address}, "address", "this node's address in the master record (default: the interface's first global address)")
	fs.StringVar(&in.VIPLabel, "vip-label", in.VIPLabel, "IPv4 label for the VIPs, e.g. eth0:vip")

	r := &in.VRRP
	fs.IntVar(&r.VRID, "vrid", r.VRID, "VRRP: virtual router id 1-255 (keepalived's virtual_router_id)")
	fs.IntVar(&in.Priority, "priority", in.Priority, "priority 1-254, every backend: the highest-priority healthy candidate is master (VRRP: 255 = address owner; default 100)")
	fs.DurationVar(&r.AdvertInt, "advert-int", r.AdvertInt, "VRRP: advertisement interval (v3: centiseconds; v2: whole seconds)")
	fs.BoolVar(&in.NoPreempt, "nopreempt", in.NoPreempt, "a higher-priority node does not take over from a live master (every backend)")
	fs.DurationVar(&in.PreemptDelay, "preempt-delay", in.PreemptDelay, "wait this long after joining before taking over from a lower-priority master (every backend)")
	fs.Var(&addrListFlag{l: &r.UnicastPeers}, "unicast-peer", "VRRP: send adverts to this peer instead of multicast (repeat)")
	fs.IntVar(&r.Version, "vrrp-version", r.Version, "VRRP: protocol version 3 (RFC 5798) or 2 (RFC 3768)")
	fs.StringVar(&r.AuthPass, "auth-pass", r.AuthPass, "VRRP v2: simple password authentication (as keepalived's auth_pass)")
	fs.StringVar(&r.AuthPassFile, "auth-pass-file", r.AuthPassFile, "VRRP v2: read --auth-pass from this file (or $HACOORD_VRRP_AUTH_PASS[_FILE])")

	a := &in.Announce
	fs.IntVar(&a.Count, "garp-count", a.Count, "gratuitous ARP / NA rounds sent at once on becoming master")
	fs.IntVar(&a.Repeat, "garp-repeat", a.Repeat, "further rounds after the first burst")
	fs.DurationVar(&a.Interval, "garp-interval", a.Interval, "spacing of the further rounds (more than 1s)")
	fs.DurationVar(&a.Refresh, "garp-refresh", a.Refresh, "re-announce this often while master (0: off)")

	fs.StringArrayVar(&v.trackScripts, "track-script", v.trackScripts, "program whose failure withdraws this node's candidacy (repeat; runs every 2s, no shell: use sh -c '...'); the YAML track_scripts set interval, rise/fall and VRRP weight")
	fs.StringArrayVar(&v.trackIfaces, "track-interface", v.trackIfaces, "interface whose link loss withdraws this node's candidacy (repeat)")
	fs.Var(referenceFlag{&v.trackRefs}, "track-reference", "address (the gateway) this node must reach, by ARP (IPv4) or ICMP echo, to campaign; a master that reaches none of them resigns (repeat; YAML track_reference sets method, interval, rise/fall)")
	fs.StringVar(&in.Conflict, "conflict", in.Conflict, "when another host answers the ARP/DAD probe for a VIP before binding: fence (run the fence hook, then bind; default), bind, wait or off")
	fs.StringVar(&in.StatusFile, "status-file", in.StatusFile, "file where the daemon keeps its state for hacoord status (default /run/hacoord/<group>.<name>.json)")
	fs.StringVar(&in.Hooks.Fence, "fence-hook", in.Hooks.Fence, "program run once elected, before anything is bound, under --hook-timeout (not the lease); gets HACOORD_TERM (the fencing token) and HACOORD_PREVIOUS_MASTER/_ADDRESS (the node to fence); a failure blocks the takeover, retried --fence-retries times, then the node yields")
	fs.StringVar(&in.Hooks.Notify, "notify-hook", in.Hooks.Notify, "program run after each transition with args: group node role term")
	fs.DurationVar(&in.Hooks.Timeout, "hook-timeout", in.Hooks.Timeout, "how long one run of a hook may take before it is killed (the fence hook's own limit, not the lease's)")
	fs.IntVar(&in.Hooks.FenceRetries, "fence-retries", in.Hooks.FenceRetries, "runs of a failed fence hook after the first before the node gives up its candidacy")
	fs.DurationVar(&in.Hooks.FenceRetryInterval, "fence-retry-interval", in.Hooks.FenceRetryInterval, "pause between runs of a failed fence hook")
}

// registerStoreFlags binds the flags that say which store to reach and how: the daemon's and
// hacoord watch's.
func registerStoreFlags(fs *pflag.FlagSet, d *daemonKeys, group *string) {
	fs.StringVar(&d.Backend, "backend", d.Backend, "election backend: etcd, zk (ZooKeeper) or vrrp (native VRRP: NO quorum, two masters if the path between nodes is cut)")
	fs.StringSliceVar(&d.Endpoints, "endpoints", d.Endpoints, "store endpoints, comma-separated: etcd URLs (http://10.0.0.1:2379) or ZooKeeper host:port[/chroot]")
	fs.StringVar(group, "group", *group, "group name: nodes with the same group share the VIPs (default \"default\")")
	fs.StringVar(&d.Etcd.CACert, "cacert", d.Etcd.CACert, "etcd: verify the server with this CA bundle")
	fs.StringVar(&d.Etcd.Cert, "cert", d.Etcd.Cert, "etcd: client certificate")
	fs.StringVar(&d.Etcd.Key, "key", d.Etcd.Key, "etcd: client key")
	fs.StringVar(&d.Etcd.User, "user", d.Etcd.User, "etcd: user name (or user:password)")
	fs.StringVar(&d.Etcd.Password, "password", d.Etcd.Password, "etcd: password (shows in ps: prefer --password-file or $HACOORD_ETCD_PASSWORD)")
	fs.StringVar(&d.Etcd.PasswordFile, "password-file", d.Etcd.PasswordFile, "etcd: read the password from this file (or $HACOORD_ETCD_PASSWORD_FILE; $HACOORD_ETCD_PASSWORD, $ETCDCTL_PASSWORD)")
	fs.StringVar(&d.ZK.Auth, "zk-auth", d.ZK.Auth, "ZooKeeper: digest user:password; znodes get an ACL only this identity can change")
	fs.StringVar(&d.ZK.AuthFile, "zk-auth-file", d.ZK.AuthFile, "ZooKeeper: read --zk-auth from this file (or $HACOORD_ZK_AUTH_FILE; $HACOORD_ZK_AUTH)")
	fs.DurationVar(&d.ZK.SessionTimeout, "zk-session-timeout", d.ZK.SessionTimeout, "ZooKeeper: session timeout (the server may clamp it)")
	fs.StringVar(&d.Log.Format, "log-format", d.Log.Format, "log format: console or json")
	fs.StringVar(&d.Log.Level, "log-level", d.Log.Level, "log level: debug, info, warn, error")
}

// overlay applies the daemon flags the user set on fs to base (values read from a file). Flags fs
// has that the daemon does not (a subcommand's own) are left alone.
func overlay(fs *pflag.FlagSet, base *flagValues) error {
	scratch := pflag.NewFlagSet("overlay", pflag.ContinueOnError)
	registerFlags(scratch, base)
	var err error
	fs.Visit(func(f *pflag.Flag) {
		dst := scratch.Lookup(f.Name)
		if dst == nil || err != nil {
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			err = dst.Value.(pflag.SliceValue).Replace(sv.GetSlice())
			return
		}
		err = dst.Value.Set(f.Value.String())
	})
	return err
}

// prefixListFlag is --vip: a repeatable flag (the short form of vips) whose first use replaces the
// default list.
type prefixListFlag struct {
	l   *vipList
	set bool
}

func (f *prefixListFlag) Type() string { return "prefix" }

func (f *prefixListFlag) String() string { return "[" + strings.Join(f.GetSlice(), ",") + "]" }

func (f *prefixListFlag) Set(s string) error {
	p, err := parseVIP(s)
	if err != nil {
		return err
	}
	if !f.set {
		*f.l, f.set = nil, true
	}
	*f.l = append(*f.l, vipEntry{Prefix: p})
	return nil
}

func (f *prefixListFlag) Append(s string) error { return f.Set(s) }

func (f *prefixListFlag) Replace(ss []string) error {
	out := vipList{}
	for _, s := range ss {
		p, err := parseVIP(s)
		if err != nil {
			return err
		}
		out = append(out, vipEntry{Prefix: p})
	}
	*f.l, f.set = out, true
	return nil
}

func (f *prefixListFlag) GetSlice() []string {
	out := make([]string, len(*f.l))
	for i, e := range *f.l {
		out[i] = e.Prefix.String()
	}
	return out
}

// addrFlag is a flag holding one IP address.
type addrFlag struct{ a *addrValue }

func (f *addrFlag) Type() string { return "ip" }

func (f *addrFlag) String() string {
	if !f.a.IsValid() {
		return ""
	}
	return f.a.Addr.String()
}

func (f *addrFlag) Set(s string) error {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not an IP address", s)
	}
	f.a.Addr = a
	return nil
}

// addrListFlag is a repeatable flag holding IP addresses; its first use replaces the default.
type addrListFlag struct {
	l   *addrList
	set bool
}

func (f *addrListFlag) Type() string { return "ip" }

func (f *addrListFlag) String() string { return "[" + strings.Join(f.GetSlice(), ",") + "]" }

func (f *addrListFlag) Set(s string) error {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not an IP address", s)
	}
	if !f.set {
		*f.l, f.set = nil, true
	}
	*f.l = append(*f.l, a)
	return nil
}

func (f *addrListFlag) Append(s string) error { return f.Set(s) }

func (f *addrListFlag) Replace(ss []string) error {
	*f.l, f.set = nil, false
	for _, s := range ss {
		if err := f.Set(s); err != nil {
			return err
		}
	}
	f.set = true
	return nil
}

func (f *addrListFlag) GetSlice() []string {
	out := make([]string, len(*f.l))
	for i, a := range *f.l {
		out[i] = a.String()
	}
	return out
}
