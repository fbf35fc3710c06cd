package keepalivedconf

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// lvsSchedulers are the schedulers keepalived 2.2.7 accepts (check_parser.c lvs_schedulers).
var lvsSchedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "sh", "mh", "dh", "fo", "ovf", "lblcr", "sed", "nq", "twos"}

var vsUnmapped = map[string]string{
	"hashed":                  noIPVSFlag,
	"flag-1":                  noIPVSFlag,
	"flag-2":                  noIPVSFlag,
	"flag-3":                  noIPVSFlag,
	"sh-port":                 noIPVSFlag,
	"sh-fallback":             noIPVSFlag,
	"mh-port":                 noIPVSFlag,
	"mh-fallback":             noIPVSFlag,
	"persistence_engine":      noIPVSFlag,
	"persistence_granularity": noIPVSFlag,
	"ha_suspend":              "hacoord runs the checkers whether or not the VIP is bound here",
	"smtp_alert":              noEmail,
	"snmp_name":               noSNMP,
	"omega":                   noEquivalent,
	"quorum_up":               "hacoord runs no quorum scripts (hacoord status shows a service's quorum)",
	"quorum_down":             "hacoord runs no quorum scripts (hacoord status shows a service's quorum)",
	"sorry_server_inhibit":    "hacoord's sorry server has no inhibit_on_failure",
}

var rsUnmapped = map[string]string{
	"uthreshold":  noIPVSFlag,
	"lthreshold":  noIPVSFlag,
	"notify_up":   "hacoord runs no real-server scripts (hacoord status shows each real server)",
	"notify_down": "hacoord runs no real-server scripts (hacoord status shows each real server)",
	"smtp_alert":  noEmail,
	"snmp_name":   noSNMP,
	"SMTP_CHECK":  noChecker,
	"DNS_CHECK":   noChecker,
	"BFD_CHECK":   noChecker,
	"UDP_CHECK":   noChecker,
	"PING_CHECK":  noChecker,
	"FILE_CHECK":  noChecker,
}

var checkerUnmapped = map[string]string{
	"bindto":           "hacoord's checkers connect from the address the kernel picks",
	"bind_port":        "hacoord's checkers connect from the port the kernel picks",
	"bind_if":          "hacoord's checkers connect through the interface the kernel picks",
	"fwmark":           "hacoord's checkers do not mark their packets",
	"log_all_failures": "hacoord logs each failed attempt at debug level",
	"http_protocol":    "hacoord's HTTP_GET speaks HTTP/1.1 with Connection: close",
	"fast_recovery":    noEquivalent,
	"enable_sni":       "hacoord has no SSL_GET checker",
	"user":             noScriptUser,
}

var urlUnmapped = map[string]string{
	"regex":            "hacoord's HTTP_GET checks status and digest only",
	"regex_no_match":   "hacoord's HTTP_GET checks status and digest only",
	"regex_options":    "hacoord's HTTP_GET checks status and digest only",
	"regex_min_offset": "hacoord's HTTP_GET checks status and digest only",
	"regex_max_offset": "hacoord's HTTP_GET checks status and digest only",
	"regex_stack":      "hacoord's HTTP_GET checks status and digest only",
}

// maxIPVSTimeout is keepalived's LVS_MAX_TIMEOUT for persistence_timeout (about 24 days).
const maxIPVSTimeout = 86400 * 31

func (in *interp) virtualServer(n *Node) {
	if !in.needBlock(n) {
		return
	}
	vs := &VirtualServer{Pos: n.Pos}
	switch n.Arg(0) {
	case "":
		in.warnf(n, "needs an address and port, fwmark N or group NAME; skipped")
		return
	case "group":
		in.unmapped(n, "hacoord's IPVS has no virtual server groups; write one virtual_server per address")
		return
	case "fwmark":
		x, ok := parseUint(n.Arg(1), 0, 1<<32-1)
		if !ok {
			in.warnf(n, "fwmark %q must be in [0, 4294967295]; skipped (as keepalived does)", n.Arg(1))
			return
		}
		vs.FWMark = set(n, uint32(x))
	default:
		a, err := netip.ParseAddr(n.Arg(0))
		var port uint64
		if err == nil && n.Arg(1) != "" {
			var ok bool
			if port, ok = parseUint(n.Arg(1), 0, 65535); !ok {
				err = strconv.ErrRange
			}
		}
		if err != nil || a.Zone() != "" {
			in.warnf(n, "invalid address/port %s; skipped (as keepalived does)", strings.Join(n.Args, " "))
			return
		}
		vs.Addr, vs.Port = a.Unmap(), uint16(port)
	}
	for _, c := range n.Block {
		in.vsKeyword(vs, c)
	}
	in.k.VirtualServers = append(in.k.VirtualServers, vs)
}

func (in *interp) vsKeyword(vs *VirtualServer, c *Node) {
	if c.Keyword != "nb_get_retry" && in.checkSetting(&vs.Check, c, true) {
		return
	}
	switch c.Keyword {
	case "lb_algo", "lvs_sched":
		if v, ok := in.value(c); ok {
			if !slices.Contains(lvsSchedulers, v) {
				in.warnf(c, "invalid scheduler %q; ignored (as keepalived does)", v)
				return
			}
			vs.LBAlgo = set(c, v)
		}
	case "lb_kind", "lvs_method":
		if k, ok := in.lvsMethod(c); ok {
			vs.LBKind = set(c, k)
		}
	case "persistence_timeout":
		in.noBlock(c)
		if len(c.Args) == 0 {
			vs.Persistence = set(c, 360*time.Second) // keepalived: 6 minutes
			return
		}
		x, ok := parseUint(c.Args[0], 1, maxIPVSTimeout)
		if !ok {
			in.warnf(c, "%q invalid; ignored (as keepalived does)", c.Args[0])
			return
		}
		vs.Persistence = set(c, time.Duration(x)*time.Second)
	case "protocol":
		if v, ok := in.value(c); ok {
			switch v {
			case "TCP", "UDP", "SCTP":
				vs.Protocol = set(c, v)
			default:
				in.warnf(c, "unknown protocol %q; ignored", v)
			}
		}
	case "ops":
		in.noBlock(c)
		vs.Ops = set(c, true)
	case "ip_family":
		if v, ok := in.value(c); ok {
			if v != "inet" && v != "inet6" {
				in.warnf(c, "unknown address family %q; ignored (as keepalived does)", v)
				return
			}
			vs.IPFamily = set(c, v)
		}
	case "quorum":
		if v, ok := in.value(c); ok {
			x, ok := parseUint(v, 1, 1<<32-1)
			if !ok {
				in.warnf(c, "%q must be in [1, 4294967295]; set to 1 (as keepalived does)", v)
				x = 1
			}
			vs.Quorum = set(c, uint32(x))
		}
	case "hysteresis":
		if v, ok := in.value(c); ok {
			x, ok := parseUint(v, 0, 1<<32-1)
			if !ok {
				in.warnf(c, "%q must be in [0, 4294967295]; ignored (as keepalived does)", v)
				return
			}
			vs.Hysteresis = set(c, uint32(x))
		}
	case "inhibit_on_failure":
		in.noBlock(c)
		vs.Inhibit = set(c, true)
	case "weight":
		if v, ok := in.value(c); ok {
			x, ok := parseUint(v, 1, 65535)
			if !ok {
				in.warnf(c, "virtual server weight %q is outside 1-65535; ignored", v)
				return
			}
			vs.Weight = set(c, uint32(x))
		}
	case "sorry_server":
		in.noBlock(c)
		a, port, ok := in.hostPort(c)
		if !ok {
			return
		}
		s := &SorryServer{Pos: c.Pos, Addr: a, Port: port}
		if vs.Sorry != nil {
			s.LBKind = vs.Sorry.LBKind
		}
		vs.Sorry = s
	case "sorry_server_lvs_method":
		if vs.Sorry == nil {
			in.warnf(c, "used without (or before) sorry_server; ignored (as keepalived does)")
			return
		}
		if k, ok := in.lvsMethod(c); ok {
			vs.Sorry.LBKind = set(c, k)
		}
	case "real_server":
		in.realServer(vs, c)
	default:
		in.other(c, "virtual_server", vsUnmapped)
	}
}

// hostPort reads "IP [PORT]".
func (in *interp) hostPort(c *Node) (netip.Addr, uint16, bool) {
	a, err := netip.ParseAddr(c.Arg(0))
	if err != nil || a.Zone() != "" {
		in.warnf(c, "invalid address %q; skipped (as keepalived does)", c.Arg(0))
		return netip.Addr{}, 0, false
	}
	var port uint64
	if c.Arg(1) != "" {
		var ok bool
		if port, ok = parseUint(c.Arg(1), 0, 65535); !ok {
			in.warnf(c, "invalid port %q; skipped (as keepalived does)", c.Arg(1))
			return netip.Addr{}, 0, false
		}
	}
	return a.Unmap(), uint16(port), true
}

// lvsMethod reads "NAT|DR|TUN [type ...]".
func (in *interp) lvsMethod(c *Node) (string, bool) {
	v, ok := in.value(c)
	if !ok {
		return "", false
	}
	switch v {
	case "NAT", "DR":
	case "TUN":
		if len(c.Args) > 1 {
			in.k.Unmapped = append(in.k.Unmapped, Diagnostic{Pos: c.Pos, Keyword: c.Keyword,
				Msg: "dropped the tunnel options " + formatArgs(c.Args[1:]) + ": hacoord's IPVS uses ipip tunnels"})
		}
	default:
		in.warnf(c, "unknown forwarding method %q; ignored", v)
		return "", false
	}
	return v, true
}

// checkSetting handles the settings a virtual server, real server or checker hands down to its
// checkers; it reports whether c was one. vsLevel says whether c is in a virtual_server (whose
// alpha and inhibit take no value).
func (in *interp) checkSetting(s *CheckSettings, c *Node, vsLevel bool) bool {
	timer := func(o *Opt[time.Duration], lo time.Duration) {
		if v, ok := in.value(c); ok {
			d, ok := parseTimer(v, lo, 0)
			if !ok {
				in.warnf(c, "%q is not a valid number of seconds; ignored (as keepalived does)", v)
				return
			}
			*o = set(c, d)
		}
	}
	switch c.Keyword {
	case "connect_timeout":
		timer(&s.ConnectTimeout, time.Microsecond)
	case "delay_before_retry":
		timer(&s.DelayBeforeRetry, 0)
	case "delay_loop":
		timer(&s.DelayLoop, time.Microsecond)
	case "warmup":
		timer(&s.Warmup, 0)
	case "retry", "nb_get_retry":
		if c.Keyword == "nb_get_retry" {
			in.warnf(c, "deprecated: read as retry (keepalived: nb_get_retry is deprecated - please use 'retry')")
		}
		if v, ok := in.value(c); ok {
			x, ok := parseUint(v, 0, 1<<32-2)
			if !ok {
				in.warnf(c, "invalid retry value %q; ignored (as keepalived does)", v)
				return true
			}
			s.Retry = set(c, int(x))
		}
	case "alpha":
		in.noBlock(c)
		on := true
		if !vsLevel && len(c.Args) > 0 {
			var ok bool
			if on, ok = parseBool(c.Args[0]); !ok {
				in.warnf(c, "%q is not a <BOOL>; ignored", c.Args[0])
				return true
			}
		}
		s.Alpha = set(c, on)
	case "virtualhost":
		if v, ok := in.value(c); ok {
			s.VirtualHost = set(c, v)
		}
	default:
		return false
	}
	return true
}

func (in *interp) realServer(vs *VirtualServer, n *Node) {
	a, port, ok := in.hostPort(n)
	if !ok || !in.needBlock(n) {
		return
	}
	rs := &RealServer{Pos: n.Pos, Addr: a, Port: port}
	for _, c := range n.Block {
		if c.Keyword == "nb_get_retry" || !in.checkSetting(&rs.Check, c, false) {
			in.rsKeyword(rs, c)
		}
	}
	vs.RealServers = append(vs.RealServers, rs)
}

func (in *interp) rsKeyword(rs *RealServer, c *Node) {
	switch c.Keyword {
	case "weight":
		if v, ok := in.value(c); ok {
			x, ok := parseUint(v, 0, 1<<31-1)
			if !ok {
				in.warnf(c, "real server weight %q is outside 0-2147483647; ignored (as keepalived does)", v)
				return
			}
			rs.Weight = set(c, uint32(x))
		}
	case "lvs_method":
		if k, ok := in.lvsMethod(c); ok {
			rs.LBKind = set(c, k)
		}
	case "inhibit_on_failure":
		in.noBlock(c)
		on := true
		if len(c.Args) > 0 {
			var ok bool
			if on, ok = parseBool(c.Args[0]); !ok {
				in.warnf(c, "%q is not a <BOOL>; ignored", c.Args[0])
				return
			}
		}
		rs.Inhibit = set(c, on)
	case "TCP_CHECK", "HTTP_GET", "SSL_GET", "MISC_CHECK":
		in.checker(rs, c)
	default:
		in.other(c, "real_server", rsUnmapped)
	}
}

func (in *interp) checker(rs *RealServer, n *Node) {
	if len(n.Args) > 0 {
		in.warnf(n, "extra parameters %s ignored", formatArgs(n.Args))
	}
	if !in.needBlock(n) {
		return
	}
	ck := &Checker{Kind: n.Keyword, Pos: n.Pos}
	for _, c := range n.Block {
		in.checkerKeyword(ck, c)
	}
	if ck.Kind == "MISC_CHECK" && !ck.MiscPath.Set {
		in.warnf(n, "has no misc_path; removed (as keepalived does)")
		return
	}
	rs.Checkers = append(rs.Checkers, ck)
}

func (in *interp) checkerKeyword(ck *Checker, c *Node) {
	misc, http := ck.Kind == "MISC_CHECK", ck.Kind == "HTTP_GET" || ck.Kind == "SSL_GET"
	switch {
	case c.Keyword == "nb_get_retry" && !http,
		c.Keyword == "virtualhost" && !http,
		misc && (c.Keyword == "connect_timeout" || c.Keyword == "connect_ip" || c.Keyword == "connect_port"):
		in.other(c, ck.Kind, nil)
		return
	}
	if in.checkSetting(&ck.Check, c, false) {
		return
	}
	switch c.Keyword {
	case "connect_ip":
		if v, ok := in.value(c); ok {
			a, err := netip.ParseAddr(v)
			if err != nil || a.Zone() != "" {
				in.warnf(c, "invalid address %q; ignored", v)
				return
			}
			ck.ConnectIP = set(c, a.Unmap())
		}
	case "connect_port":
		if v, ok := in.value(c); ok {
			x, ok := parseUint(v, 1, 65535)
			if !ok {
				in.warnf(c, "invalid port %q; ignored", v)
				return
			}
			ck.ConnectPort = set(c, uint16(x))
		}
	case "url":
		if !http {
			in.other(c, ck.Kind, nil)
			return
		}
		if in.needBlock(c) {
			in.url(ck, c)
		}
	case "misc_path":
		if !misc {
			in.other(c, ck.Kind, nil)
			return
		}
		in.noBlock(c)
		argv, user, ok := splitScript(c)
		if !ok {
			in.warnf(c, "cannot read the command (missing, or an unterminated quote); ignored")
			return
		}
		if len(user) > 0 {
			in.warnf(c, "extra words %s after the command are ignored (as keepalived does: quote a command with arguments)", formatArgs(user))
		}
		ck.MiscPath = set(c, argv)
	case "misc_timeout":
		if !misc {
			in.other(c, ck.Kind, nil)
			return
		}
		if v, ok := in.value(c); ok {
			x, ok := parseUint(v, 0, 1<<32-1)
			if !ok {
				in.warnf(c, "invalid misc_timeout %q; ignored (as keepalived does)", v)
				return
			}
			ck.MiscTimeout = set(c, time.Duration(x)*time.Second)
		}
	case "misc_dynamic":
		if !misc {
			in.other(c, ck.Kind, nil)
			return
		}
		in.noBlock(c)
		ck.MiscDynamic = set(c, true)
	default:
		in.other(c, ck.Kind, checkerUnmapped)
	}
}

func (in *interp) url(ck *Checker, n *Node) {
	u := URL{Pos: n.Pos}
	for _, c := range n.Block {
		switch c.Keyword {
		case "path":
			if v, ok := in.value(c); ok {
				u.Path = set(c, v)
			}
		case "digest":
			v, ok := in.value(c)
			if !ok {
				continue
			}
			if len(v) != 32 || strings.Trim(strings.ToLower(v), "0123456789abcdef") != "" {
				in.warnf(c, "digest %q should be 32 hex digits (an MD5); ignored (as keepalived does)", v)
				continue
			}
			if u.Digest.Set {
				in.warnf(c, "digest given twice; ignored (as keepalived does)")
				continue
			}
			u.Digest = set(c, strings.ToLower(v))
		case "status_code":
			in.noBlock(c)
			var rs []statusRange
			for _, a := range c.Args {
				lo, hi, isRange := strings.Cut(a, "-")
				if !isRange {
					hi = lo
				}
				l, ok1 := parseUint(lo, 100, 599)
				h, ok2 := parseUint(hi, 100, 599)
				if !ok1 || !ok2 || l > h {
					in.warnf(c, "invalid status code %q; ignored (as keepalived does)", a)
					continue
				}
				rs = append(rs, statusRange{int(l), int(h)})
			}
			if len(rs) > 0 {
				prev := u.Status.V
				u.Status = set(c, append(prev, rs...))
			}
		case "virtualhost":
			if v, ok := in.value(c); ok {
				u.VirtualHost = set(c, v)
			}
		default:
			in.other(c, "url", urlUnmapped)
		}
	}
	if !u.Path.Set {
		in.warnf(n, "url has no path; ignored (as keepalived does)")
		return
	}
	ck.URLs = append(ck.URLs, u)
}
