package main

import (
	"time"

	"github.com/spf13/pflag"
)

// durationFlag is a pflag.Value over a Duration field of Settings.
type durationFlag struct{ d *Duration }

func (f durationFlag) String() string { return time.Duration(*f.d).String() }
func (f durationFlag) Type() string   { return "duration" }
func (f durationFlag) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*f.d = Duration(v)
	return nil
}

// registerFlags binds the daemon's flags to the fields of s. It is called twice: once on the
// command's own flag set and once on a scratch set over the settings read from --config, so that
// the flags a user gave can be applied on top of the file (see overlay).
func registerFlags(fs *pflag.FlagSet, s *Settings) {
	registerStoreFlags(fs, s)
	fs.StringVar(&s.Name, "name", s.Name, "this node's name, unique in the group (the host name unless set)")
	fs.StringVar(&s.Interface, "interface", s.Interface, "interface that carries the VIPs")
	fs.StringArrayVar(&s.VIPs, "vip", s.VIPs, "virtual IP with prefix length, e.g. 10.0.0.100/24 (repeat for several)")
	fs.StringVar(&s.Address, "address", s.Address, "this node's address in the master record (default: the interface's first global address)")
	fs.StringVar(&s.VIPLabel, "vip-label", s.VIPLabel, "IPv4 label for the VIPs, e.g. eth0:vip")
	fs.Var(durationFlag{&s.LeaseTTL}, "lease-ttl", "lease TTL (etcd) / how long a silent master keeps the VIPs; whole seconds for etcd")
	fs.Var(durationFlag{&s.FenceMargin}, "fence-margin", "how long before the lease can expire the master lets go (default: TTL/10, 100ms..1s)")

	fs.IntVar(&s.VRRP.VRID, "vrid", s.VRRP.VRID, "VRRP: virtual router id 1-255 (keepalived's virtual_router_id)")
	fs.IntVar(&s.VRRP.Priority, "priority", s.VRRP.Priority, "VRRP: priority 1-254 (255 = address owner)")
	fs.Var(durationFlag{&s.VRRP.AdvertInt}, "advert-int", "VRRP: advertisement interval (v3: centiseconds; v2: whole seconds)")
	fs.BoolVar(&s.VRRP.NoPreempt, "nopreempt", s.VRRP.NoPreempt, "VRRP: a higher-priority backup does not take over from a live master")
	fs.Var(durationFlag{&s.VRRP.PreemptDelay}, "preempt-delay", "VRRP: wait this long after start-up before preempting")
	fs.StringArrayVar(&s.VRRP.UnicastPeers, "unicast-peer", s.VRRP.UnicastPeers, "VRRP: send adverts to this peer instead of multicast (repeat)")
	fs.IntVar(&s.VRRP.Version, "vrrp-version", s.VRRP.Version, "VRRP: protocol version 3 (RFC 5798) or 2 (RFC 3768)")
	fs.StringVar(&s.VRRP.AuthPass, "auth-pass", s.VRRP.AuthPass, "VRRP v2: simple password authentication (as keepalived's auth_pass)")

	fs.IntVar(&s.Announce.Count, "garp-count", s.Announce.Count, "gratuitous ARP / NA rounds sent at once on becoming master")
	fs.IntVar(&s.Announce.Repeat, "garp-repeat", s.Announce.Repeat, "further rounds after the first burst")
	fs.Var(durationFlag{&s.Announce.Interval}, "garp-interval", "spacing of the further rounds (more than 1s)")
	fs.Var(durationFlag{&s.Announce.Refresh}, "garp-refresh", "re-announce this often while master (0: off)")

	fs.StringArrayVar(&s.trackScriptArgs, "track-script", s.trackScriptArgs, "program whose failure withdraws this node's candidacy (repeat; runs every 2s, no shell: use sh -c '...'); the YAML track_scripts set interval, rise/fall and VRRP weight")
	fs.StringArrayVar(&s.trackIfaceArgs, "track-interface", s.trackIfaceArgs, "interface whose link loss withdraws this node's candidacy (repeat)")
	fs.StringVar(&s.StatusFile, "status-file", s.StatusFile, "file where the daemon keeps its state for hacoord status (default /run/hacoord/<group>.<name>.json)")

	fs.BoolVar(&s.FenceGuard, "fence-guard", s.FenceGuard, "run a watchdog process that removes the VIPs as soon as the daemon dies or a stopped daemon's deadline passes")
	fs.StringVar(&s.Hooks.Fence, "fence-hook", s.Hooks.Fence, "program run before taking the VIPs; gets HACOORD_TERM (the fencing token); non-zero exit refuses mastership")
	fs.StringVar(&s.Hooks.Notify, "notify-hook", s.Hooks.Notify, "program run after each transition with args: group node role term")

}

// registerStoreFlags binds the flags that say which store to reach and how: the daemon's and
// hacoord watch's.
func registerStoreFlags(fs *pflag.FlagSet, s *Settings) {
	fs.StringVar(&s.Backend, "backend", s.Backend, "election backend: etcd, zk (ZooKeeper) or vrrp (native VRRP: NO quorum, two masters if the path between nodes is cut)")
	fs.StringSliceVar(&s.Endpoints, "endpoints", s.Endpoints, "store endpoints, comma-separated: etcd URLs (http://10.0.0.1:2379) or ZooKeeper host:port[/chroot]")
	fs.StringVar(&s.Group, "group", s.Group, "group name: nodes with the same group share the VIPs")
	fs.StringVar(&s.Etcd.CACert, "cacert", s.Etcd.CACert, "etcd: verify the server with this CA bundle")
	fs.StringVar(&s.Etcd.Cert, "cert", s.Etcd.Cert, "etcd: client certificate")
	fs.StringVar(&s.Etcd.Key, "key", s.Etcd.Key, "etcd: client key")
	fs.StringVar(&s.Etcd.User, "user", s.Etcd.User, "etcd: user name (or user:password)")
	fs.StringVar(&s.Etcd.Password, "password", s.Etcd.Password, "etcd: password")

	fs.StringVar(&s.ZK.Auth, "zk-auth", s.ZK.Auth, "ZooKeeper: digest user:password; znodes get an ACL only this identity can change")
	fs.Var(durationFlag{&s.ZK.SessionTimeout}, "zk-session-timeout", "ZooKeeper: session timeout (the server may clamp it)")

	fs.StringVar(&s.Log.Format, "log-format", s.Log.Format, "log format: console or json")
	fs.StringVar(&s.Log.Level, "log-level", s.Log.Level, "log level: debug, info, warn, error")
}

// overlay applies the flags the user set on fs to base (settings read from a file).
func overlay(fs *pflag.FlagSet, base *Settings) error {
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
