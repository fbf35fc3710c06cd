package keepalivedconf

import (
	"fmt"
	"net/netip"
	"time"
)

// virtualServers converts the virtual_server blocks and puts each under the instance whose VIPs
// include its address (keepalived programs LVS whatever the VRRP state; hacoord programs a
// service with its instance, and program_on_backup: true, keepalived's behaviour, keeps it
// programmed on a backup too). A service no instance's VIPs cover goes under the first instance.
// With no instance at all, the converted services are returned for the caller to place.
func (c *conv) virtualServers(vss []*VirtualServer, insts []InstanceOut) []VirtualServerOut {
	var orphans []VirtualServerOut
	for _, vs := range vss {
		out, ok := c.virtualServer(vs)
		if !ok {
			continue
		}
		if len(insts) == 0 {
			orphans = append(orphans, out)
			continue
		}
		i := c.owner(vs, insts)
		insts[i].VirtualServers = append(insts[i].VirtualServers, out)
		insts[i].ProgramOnBackup = ptr(true)
	}
	return orphans
}

// owner returns the index of the instance a virtual server belongs with.
func (c *conv) owner(vs *VirtualServer, insts []InstanceOut) int {
	if vs.Addr.IsValid() {
		for i, inst := range insts {
			for _, v := range inst.VIPs {
				if v.Address.Addr() == vs.Addr {
					return i
				}
			}
		}
	}
	what := "its address is no VIP of any vrrp_instance"
	if vs.FWMark.Set {
		what = "a firewall-mark service names no VIP"
	}
	c.warn(vs.Pos, "virtual_server", "%s: %s; it goes under instance %s (program_on_backup keeps it programmed whatever the instance's state, as keepalived does)", c.vsName(vs), what, insts[0].Name)
	return 0
}

func (c *conv) vsName(vs *VirtualServer) string {
	if vs.FWMark.Set {
		return fmt.Sprintf("fwmark %d", vs.FWMark.V)
	}
	return netip.AddrPortFrom(vs.Addr, vs.Port).String()
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "inet"
	}
	return "inet6"
}

func (c *conv) virtualServer(vs *VirtualServer) (VirtualServerOut, bool) {
	name := c.vsName(vs)
	out := VirtualServerOut{
		LBAlgo:             vs.LBAlgo.Or(kaLBAlgo),
		LBKind:             vs.LBKind.Or(kaLBKind),
		PersistenceTimeout: vs.Persistence.V,
		DelayLoop:          vs.Check.DelayLoop.Or(kaDelayLoop),
		Quorum:             vs.Quorum.Or(kaQuorum),
		Hysteresis:         vs.Hysteresis.V,
		InhibitOnFailure:   vs.Inhibit.V,
	}
	fam := ""
	if vs.FWMark.Set {
		out.FWMark = vs.FWMark.V
		out.Family = vs.IPFamily.V
		fam = vs.IPFamily.Or("inet")
		if vs.Protocol.Set {
			c.warn(vs.Protocol.Pos, "protocol", "%s: dropped: a firewall-mark service has no protocol", name)
		}
	} else {
		out.Address, out.Port = vs.Addr.String(), vs.Port
		out.Protocol = vs.Protocol.Or("TCP")
		fam = family(vs.Addr)
		if f := vs.IPFamily; f.Set && f.V != fam {
			c.warn(f.Pos, "ip_family", "%s: %s conflicts with the address; ignored (as keepalived does)", name, f.V)
		}
		if vs.Port == 0 && !vs.Persistence.Set {
			c.warn(vs.Pos, "virtual_server", "%s: no port: keepalived allows that only for a persistent service, and hacoord refuses it without persistence_timeout", name)
		}
	}
	if vs.Ops.Set {
		if vs.FWMark.Set || out.Protocol == "UDP" {
			out.OnePacket = true
		} else {
			c.warn(vs.Ops.Pos, "ops", "%s: dropped: one-packet scheduling is for UDP services", name)
		}
	}
	if out.Hysteresis >= out.Quorum {
		c.warn(vs.Hysteresis.Pos, "hysteresis", "%s: %d is not below quorum %d: hacoord refuses it", name, out.Hysteresis, out.Quorum)
	}
	if w := vs.Check.Warmup; w.Set {
		c.warn(w.Pos, w.Keyword, "%s: dropped: hacoord starts every checker at once (no random warm-up delay)", name)
	}
	if s := vs.Sorry; s != nil {
		kind := s.LBKind.Or(out.LBKind)
		if family(s.Addr) != fam && kind != "TUN" {
			c.warn(s.Pos, "sorry_server", "%s: the address family of %s does not match the service's; sorry server skipped (as keepalived does)", name, s.Addr)
		} else {
			port := s.Port
			if kind != "NAT" && port != 0 && !vs.FWMark.Set && port != vs.Port {
				c.warn(s.Pos, "sorry_server", "%s: port %d does not match the service's; reset (as keepalived does)", name, port)
				port = 0
			}
			if kind != "NAT" && port != 0 && vs.FWMark.Set {
				c.warn(s.Pos, "sorry_server", "%s: a firewall-mark service's sorry server has no port; cleared (as keepalived does)", name)
				port = 0
			}
			out.SorryServer = &SorryOut{Address: s.Addr.String(), Port: port, LBKind: s.LBKind.V}
		}
	}
	seen := map[netip.AddrPort]int{}
	for _, rs := range vs.RealServers {
		r, ok := c.realServer(vs, &out, rs, fam, name)
		if !ok {
			continue
		}
		key := netip.AddrPortFrom(rs.Addr, r.Port)
		if r.Port == 0 {
			key = netip.AddrPortFrom(rs.Addr, vs.Port)
		}
		if line, dup := seen[key]; dup {
			c.warn(rs.Pos, "real_server", "%s: %s is duplicated (line %d); the second is removed (as keepalived does)", name, key, line)
			continue
		}
		seen[key] = rs.Pos.Line
		out.RealServers = append(out.RealServers, r)
	}
	if len(out.RealServers) == 0 && out.SorryServer == nil {
		c.warn(vs.Pos, "virtual_server", "%s: dropped: no real server (hacoord needs one, or a sorry_server)", name)
		return out, false
	}
	if out.RealServers == nil {
		out.RealServers = []RealServerOut{}
	}
	return out, true
}

func (c *conv) realServer(vs *VirtualServer, out *VirtualServerOut, rs *RealServer, fam, name string) (RealServerOut, bool) {
	kind := rs.LBKind.Or(out.LBKind)
	target := netip.AddrPortFrom(rs.Addr, rs.Port).String()
	if family(rs.Addr) != fam && kind != "TUN" {
		c.warn(rs.Pos, "real_server", "%s: the address family of %s does not match the service's; real server skipped (as keepalived does)", name, rs.Addr)
		return RealServerOut{}, false
	}
	r := RealServerOut{Address: rs.Addr.String(), Port: rs.Port, LBKind: rs.LBKind.V}
	switch {
	case kind == "NAT":
	case vs.FWMark.Set && rs.Port != 0:
		c.warn(rs.Pos, "real_server", "%s: a firewall-mark service's real server %s has no port; cleared (as keepalived does)", name, target)
		r.Port = 0
	case !vs.FWMark.Set && rs.Port != 0 && rs.Port != vs.Port:
		c.warn(rs.Pos, "real_server", "%s: the port of %s does not match the service's and %s cannot change it; reset (as keepalived does)", name, target, kind)
		r.Port = 0
	}
	w := rs.Weight.Or(vs.Weight.Or(1))
	if w > 65535 {
		c.warn(rs.Weight.Pos, "weight", "%s: %d is above IPVS's 65535; set to 65535", name, w)
		w = 65535
	}
	r.Weight = ptr(w)
	if rs.Inhibit.Set {
		r.InhibitOnFailure = ptr(rs.Inhibit.V)
	}
	if w := rs.Check.Warmup; w.Set {
		c.warn(w.Pos, w.Keyword, "%s: dropped: hacoord starts every checker at once (no random warm-up delay)", name)
	}
	var used *Checker
	for _, ck := range rs.Checkers {
		if used != nil {
			c.warn(ck.Pos, ck.Kind, "%s: dropped: hacoord runs one checker per real server, the %s at line %d (keepalived needs every checker to pass)", name, used.Kind, used.Pos.Line)
			continue
		}
		used = ck
		c.checker(vs, rs, ck, &r, out.DelayLoop, name)
	}
	return r, true
}

// checker converts one checker, with its settings resolved checker > real server > virtual server
// > keepalived's default for the kind, and written out (delay_loop only where it differs from the
// service's).
func (c *conv) checker(vs *VirtualServer, rs *RealServer, ck *Checker, r *RealServerOut, vsDelay time.Duration, name string) {
	chainD := func(get func(*CheckSettings) Opt[time.Duration], def time.Duration) time.Duration {
		for _, s := range []*CheckSettings{&ck.Check, &rs.Check, &vs.Check} {
			if o := get(s); o.Set {
				return o.V
			}
		}
		return def
	}
	http := ck.Kind == "HTTP_GET" || ck.Kind == "SSL_GET"
	retryDef, delayRetryDef := kaRetry, kaDelayBeforeRetry
	switch {
	case ck.Kind == "MISC_CHECK":
		retryDef = kaMiscRetry
	case http:
		delayRetryDef = kaHTTPDelayRetry
	}
	retry := retryDef
	for _, s := range []*CheckSettings{&ck.Check, &rs.Check, &vs.Check} {
		if s.Retry.Set {
			retry = s.Retry.V
			break
		}
	}
	alpha := false
	for _, s := range []*CheckSettings{&ck.Check, &rs.Check, &vs.Check} {
		if s.Alpha.Set {
			alpha = s.Alpha.V
			break
		}
	}
	t := TimingOut{
		ConnectTimeout:   chainD(func(s *CheckSettings) Opt[time.Duration] { return s.ConnectTimeout }, kaConnectTimeout),
		Retry:            ptr(retry),
		DelayBeforeRetry: chainD(func(s *CheckSettings) Opt[time.Duration] { return s.DelayBeforeRetry }, delayRetryDef),
		Alpha:            alpha,
	}
	if d := chainD(func(s *CheckSettings) Opt[time.Duration] { return s.DelayLoop }, vsDelay); d != vsDelay {
		t.Interval = d
	}
	if w := ck.Check.Warmup; w.Set {
		c.warn(w.Pos, w.Keyword, "%s: dropped: hacoord starts every checker at once (no random warm-up delay)", name)
	}
	ip, port := "", ck.ConnectPort.V
	if ck.ConnectIP.Set {
		ip = ck.ConnectIP.V.String()
	}
	switch ck.Kind {
	case "TCP_CHECK":
		r.TCP = &TCPOut{TimingOut: t, ConnectIP: ip, ConnectPort: port}
	case "SSL_GET":
		c.warn(ck.Pos, ck.Kind, "%s: meaning changes: hacoord has no TLS checker, so this becomes a TCP_CHECK of the same address (only the connection is checked, not the URLs)", name)
		r.TCP = &TCPOut{TimingOut: t, ConnectIP: ip, ConnectPort: port}
	case "HTTP_GET":
		h := &HTTPOut{TimingOut: t, ConnectIP: ip, ConnectPort: port}
		vhost := Opt[string]{}
		for _, s := range []*CheckSettings{&ck.Check, &rs.Check, &vs.Check} {
			if s.VirtualHost.Set {
				vhost = s.VirtualHost
				break
			}
		}
		for i, u := range ck.URLs {
			uv := vhost
			if u.VirtualHost.Set {
				uv = u.VirtualHost
			}
			if i == 0 {
				h.VirtualHost = uv.V
			} else if uv.V != h.VirtualHost {
				c.warn(uv.Pos, "virtualhost", "%s: dropped: hacoord sends one Host (%q) for all the URLs of a checker", name, h.VirtualHost)
			}
			h.URLs = append(h.URLs, URLOut{Path: u.Path.V, StatusCode: c.statusCode(u, name), Digest: u.Digest.V})
		}
		if len(h.URLs) == 0 {
			c.warn(ck.Pos, ck.Kind, "%s: no url: dropped, the real server is always up (keepalived's checker checks nothing then either)", name)
			return
		}
		r.HTTP = h
	case "MISC_CHECK":
		r.Script = &ScriptOut{
			TimingOut: TimingOut{Interval: t.Interval, Retry: t.Retry, DelayBeforeRetry: t.DelayBeforeRetry, Alpha: t.Alpha},
			Path:      c.command(ck.MiscPath.Pos, "misc_path", name, ck.MiscPath.V),
			Timeout:   ck.MiscTimeout.Or(vsDelay), // keepalived: the virtual server's delay_loop
			Dynamic:   ck.MiscDynamic.V,
		}
	}
}

// statusCode maps keepalived's status_code list onto hacoord's one code (0: any 2xx, keepalived's
// default of 200-299).
func (c *conv) statusCode(u URL, name string) int {
	if !u.Status.Set {
		return 0
	}
	rs := u.Status.V
	switch {
	case len(rs) == 1 && rs[0].lo == rs[0].hi:
		return rs[0].lo
	case len(rs) == 1 && rs[0].lo == 200 && rs[0].hi == 299:
		return 0
	}
	c.warn(u.Status.Pos, "status_code", "%s: meaning changes: hacoord accepts one status code (or any 2xx); %d is used", name, rs[0].lo)
	return rs[0].lo
}
