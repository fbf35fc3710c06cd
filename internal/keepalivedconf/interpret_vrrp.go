package keepalivedconf

import (
	"net/netip"
	"strings"
	"time"
)

var instanceUnmapped = map[string]string{
	"use_vmac":                   noVMAC,
	"use_vmac_addr":              noVMAC,
	"vmac_xmit_base":             noVMAC,
	"use_ipvlan":                 noVMAC,
	"garp_extra_if":              noVMAC,
	"vmac_garp_intvl":            noVMAC,
	"unicast_fault_no_peer":      "hacoord refuses a unicast instance without peers at start-up",
	"check_unicast_src":          "hacoord accepts unicast adverts only from its unicast peers",
	"old_unicast_checksum":       "hacoord computes the RFC 5798 checksum only",
	"native_ipv6":                "deprecated in keepalived: the VIPs give the address family",
	"vrf":                        noEquivalent,
	"track_file":                 noTrackOther,
	"track_process":              noTrackOther,
	"track_bfd":                  noTrackOther,
	"track_src_ip":               noEquivalent,
	"mcast_src_ip":               "hacoord sends adverts from the interface's primary address",
	"mcast_dst_ip":               "hacoord sends VRRP adverts to 224.0.0.18 (RFC 5798) only",
	"unicast_ttl":                noEquivalent,
	"promote_secondaries":        noEquivalent,
	"linkbeat_use_polling":       noEquivalent,
	"virtual_routes":             noRoutes,
	"virtual_rules":              noRoutes,
	"accept":                     noEquivalent,
	"no_accept":                  "hacoord installs no firewall rules: the VIPs always accept traffic",
	"skip_check_adv_addr":        noEquivalent,
	"strict_mode":                "hacoord has no strict mode",
	"debug":                      noEquivalent,
	"notify_deleted":             "hacoord reports no DELETED state",
	"notify_master_rx_lower_pri": noEquivalent,
	"smtp_alert":                 noEmail,
	"notify_priority_changes":    noEquivalent,
	"down_timer_adverts":         "hacoord's VRRP uses RFC 5798's three advert intervals",
	"lower_prio_no_advert":       noEquivalent,
	"higher_prio_send_advert":    noEquivalent,
	"kernel_rx_buf_size":         noEquivalent,
}

// maxIfName is IFNAMSIZ-1.
const maxIfName = 15

func (in *interp) instance(n *Node) {
	if len(n.Args) == 0 {
		in.warnf(n, "needs a name; skipped")
		return
	}
	if !in.needBlock(n) {
		return
	}
	inst := &Instance{Name: n.Args[0], Pos: n.Pos}
	for _, c := range n.Block {
		in.instanceKeyword(inst, c)
	}
	for _, other := range in.k.Instances {
		if other.Name == inst.Name {
			in.warnf(n, "%s is defined twice (first at line %d); this one is ignored", inst.Name, other.Pos.Line)
			return
		}
	}
	in.k.Instances = append(in.k.Instances, inst)
}

func (in *interp) instanceKeyword(inst *Instance, c *Node) {
	switch c.Keyword {
	case "state":
		v, ok := in.value(c)
		if !ok {
			return
		}
		switch {
		case v == "MASTER":
			inst.State = set(c, v)
		case v == "BACKUP" && inst.State.V == "MASTER":
			in.warnf(c, "(%s) state previously set as MASTER; BACKUP ignored (as keepalived does)", inst.Name)
		case v == "BACKUP":
			inst.State = set(c, v)
		default:
			in.warnf(c, "(%s) unknown state %q; BACKUP (as keepalived does)", inst.Name, v)
			inst.State = set(c, "BACKUP")
		}
	case "interface":
		if v, ok := in.value(c); ok {
			if len(v) > maxIfName {
				in.warnf(c, "(%s) interface name %q is too long; ignored (as keepalived does)", inst.Name, v)
				return
			}
			inst.Interface = set(c, v)
		}
	case "virtual_router_id":
		if v, ok := in.value(c); ok {
			x, ok := parseUint(v, 1, 255)
			if !ok {
				in.warnf(c, "(%s) %q is not valid: must be between 1 and 255; ignored (as keepalived does)", inst.Name, v)
				return
			}
			inst.VRID = set(c, int(x))
		}
	case "priority":
		if v, ok := in.value(c); ok {
			x, ok := parseUint(v, 1, 255)
			if !ok {
				in.warnf(c, "(%s) %q is not valid: must be between 1 and 255; the default 100 is used (as keepalived does)", inst.Name, v)
				x = 100
			}
			inst.Priority = set(c, int(x))
		}
	case "advert_int":
		if v, ok := in.value(c); ok {
			d, ok := parseTimer(v, 10*time.Millisecond, 255*time.Second)
			if !ok {
				in.warnf(c, "(%s) %q is not valid: must be from 0.01 to 255 seconds; ignored (as keepalived does)", inst.Name, v)
				return
			}
			inst.AdvertInt = set(c, d)
		}
	case "version":
		if v, ok := in.value(c); ok {
			x, ok := parseUint(v, 2, 3)
			if !ok {
				in.warnf(c, "(%s) version must be either 2 or 3; ignored (as keepalived does)", inst.Name)
				return
			}
			inst.Version = set(c, int(x))
		}
	case "dont_track_primary":
		in.noBlock(c)
		inst.DontTrackPrimary = set(c, true)
	case "nopreempt":
		in.noBlock(c)
		inst.NoPreempt = set(c, true)
	case "preempt":
		in.noBlock(c)
		inst.NoPreempt = set(c, false)
	case "preempt_delay":
		if v, ok := in.value(c); ok {
			d, ok := parseTimer(v, 0, 1000*time.Second)
			if !ok {
				in.warnf(c, "(%s) %q is not valid: must be from 0 to 1000 seconds; 0 (as keepalived does)", inst.Name, v)
			}
			inst.PreemptDelay = set(c, d)
		}
	case "authentication":
		if !in.needBlock(c) {
			return
		}
		inst.Auth = set(c, true)
		for _, a := range c.Block {
			switch a.Keyword {
			case "auth_type":
				v, ok := in.value(a)
				if !ok {
					continue
				}
				if v != "PASS" && v != "AH" {
					in.warnf(a, "(%s) unknown authentication type %q; ignored (as keepalived does)", inst.Name, v)
					continue
				}
				inst.AuthType = set(a, v)
			case "auth_pass":
				v, ok := in.value(a)
				if !ok {
					continue
				}
				if len(v) > 8 {
					in.warnf(a, "(%s) truncated to its first 8 characters (as keepalived does)", inst.Name)
					v = v[:8]
				}
				inst.AuthPass = set(a, v)
			default:
				in.other(a, "authentication", nil)
			}
		}
	case "virtual_ipaddress", "virtual_ipaddress_excluded":
		if !in.needBlock(c) {
			return
		}
		for _, l := range c.Block {
			if v, ok := in.vip(inst, l, c.Keyword == "virtual_ipaddress_excluded"); ok {
				inst.VIPs = append(inst.VIPs, v)
			}
		}
	case "unicast_src_ip":
		if v, ok := in.value(c); ok {
			a, err := netip.ParseAddr(v)
			if err != nil {
				in.warnf(c, "(%s) %q is not an IP address; ignored", inst.Name, v)
				return
			}
			inst.UnicastSrc = set(c, a)
		}
	case "unicast_peer":
		if !in.needBlock(c) {
			return
		}
		inst.UnicastPeer = set(c, true)
		for _, l := range c.Block {
			in.noBlock(l)
			a, err := netip.ParseAddr(l.Keyword)
			if err != nil {
				in.d.addf(l.Pos, "unicast_peer", "(%s) malformed peer address %q; skipped (as keepalived does)", inst.Name, l.Keyword)
				continue
			}
			if !in.family(inst, a.Unmap().Is6()) {
				in.d.addf(l.Pos, "unicast_peer", "(%s) %s: the instance and its unicast peers must be of the same address family; skipped (as keepalived does)", inst.Name, l.Keyword)
				continue
			}
			p := UnicastPeer{Addr: a.Unmap(), Pos: l.Pos}
			for i := 0; i < len(l.Args); i += 2 {
				if l.Args[i] != "min_ttl" && l.Args[i] != "max_ttl" || i+1 >= len(l.Args) {
					in.d.addf(l.Pos, "unicast_peer", "(%s) unknown or incomplete option %q; ignored", inst.Name, l.Args[i])
					break
				}
				p.TTL = true
			}
			inst.UnicastPeers = append(inst.UnicastPeers, p)
		}
	case "track_script":
		in.trackScripts(c, inst.Name, &inst.TrackScripts)
	case "track_interface":
		in.trackInterfaces(c, inst.Name, &inst.TrackIfaces)
	case "notify", "notify_master", "notify_backup", "notify_fault", "notify_stop":
		in.hook(c, inst.Name, &inst.Hooks)
	case "garp_master_delay", "garp_master_repeat", "garp_master_refresh", "garp_master_refresh_repeat",
		"garp_lower_prio_delay", "garp_lower_prio_repeat":
		in.garp(c, &inst.GARP, c.Keyword)
	case "lvs_sync_daemon_interface":
		in.syncDaemonInterface(c, inst.Name)
	default:
		in.other(c, "vrrp_instance", instanceUnmapped)
	}
}

// vip reads one line of virtual_ipaddress: ADDR[/LEN] [dev IF] [label LABEL] [options...]. An
// address without a length is a host address (/32, /128), as keepalived's parse_ipaddress makes it.
func (in *interp) vip(inst *Instance, l *Node, excluded bool) (VIP, bool) {
	in.noBlock(l)
	kw := "virtual_ipaddress"
	if excluded {
		kw = "virtual_ipaddress_excluded"
	}
	addrText, lenText, hasLen := strings.Cut(l.Keyword, "/")
	a, err := netip.ParseAddr(addrText)
	if err != nil || a.Zone() != "" {
		in.d.addf(l.Pos, kw, "(%s) %q is not an IP address; skipped (as keepalived does)", inst.Name, l.Keyword)
		return VIP{}, false
	}
	a = a.Unmap()
	bits := a.BitLen()
	if hasLen {
		x, ok := parseUint(lenText, 0, uint64(a.BitLen()))
		if !ok {
			in.d.addf(l.Pos, kw, "(%s) invalid prefix length %q for %s; /%d is used (as keepalived does)", inst.Name, lenText, addrText, bits)
		} else {
			bits = int(x)
		}
	}
	if !excluded && !in.family(inst, a.Is6()) {
		in.d.addf(l.Pos, kw, "(%s) %s: the address family must match the instance's; ignored (as keepalived does: put it in virtual_ipaddress_excluded)", inst.Name, l.Keyword)
		return VIP{}, false
	}
	v := VIP{Prefix: netip.PrefixFrom(a, bits), Pos: l.Pos, Excluded: excluded}
	for i := 0; i < len(l.Args); i++ {
		opt := l.Args[i]
		takesValue := map[string]bool{"dev": true, "label": true, "brd": true, "broadcast": true, "scope": true,
			"peer": true, "preferred_lft": true, "track_group": true}[opt]
		if takesValue && i+1 >= len(l.Args) {
			in.d.addf(l.Pos, kw, "(%s) no %s value given for %s; ignored", inst.Name, opt, l.Keyword)
			break
		}
		switch opt {
		case "dev":
			i++
			if v.Dev != "" {
				in.d.addf(l.Pos, kw, "(%s) dev given twice for %s; the first is used (as keepalived does)", inst.Name, l.Keyword)
				continue
			}
			v.Dev = l.Args[i]
		case "label":
			i++
			switch {
			case a.Is6():
				in.d.addf(l.Pos, kw, "(%s) IPv6 addresses have no label; label %s ignored (as keepalived does)", inst.Name, l.Args[i])
			case len(l.Args[i]) > maxIfName:
				in.d.addf(l.Pos, kw, "(%s) label %s is longer than %d bytes; the address is removed (as keepalived does)", inst.Name, l.Args[i], maxIfName)
				return VIP{}, false
			default:
				v.Label = l.Args[i]
			}
		case "scope":
			i++
			if l.Args[i] != "global" {
				v.Options = append(v.Options, "scope "+l.Args[i])
			}
		case "brd", "broadcast", "peer", "preferred_lft", "track_group":
			v.Options = append(v.Options, opt+" "+l.Args[i+1])
			i++
		case "home", "-nodad", "mngtmpaddr", "noprefixroute", "autojoin", "no_track", "use_vmac":
			v.Options = append(v.Options, opt)
		default:
			in.d.addf(l.Pos, kw, "(%s) unknown option %q for %s; ignored (as keepalived does)", inst.Name, opt, l.Keyword)
		}
	}
	return v, true
}

// family sets the instance's address family on first use and reports whether v6 matches it.
func (in *interp) family(inst *Instance, v6 bool) bool {
	if !inst.familySet {
		inst.IPv6, inst.familySet = v6, true
	}
	return inst.IPv6 == v6
}
