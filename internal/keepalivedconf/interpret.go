package keepalivedconf

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Interpret reads the tree Parse returned as keepalived 2.2.7 reads its configuration: keyword by
// keyword, with keepalived's ranges and corrections (each reported as keepalived reports it), and
// with the keywords hacoord has no counterpart for collected in Keepalived.Unmapped. Unknown
// keywords are reported and skipped with their block.
func Interpret(nodes []*Node) (*Keepalived, []Diagnostic) {
	in := &interp{k: &Keepalived{}}
	for _, n := range nodes {
		in.root(n)
	}
	in.syncGroups()
	for _, s := range in.k.Scripts {
		if !s.used {
			in.d.addf(s.Pos, "vrrp_script", "%s is not used by any vrrp_instance or sync group (keepalived: Warning - script is not used)", s.Name)
		}
	}
	return in.k, in.d.list
}

type interp struct {
	k *Keepalived
	d diags
}

// Reasons for dropping, shared by several keywords.
const (
	noEmail      = "hacoord sends no e-mail alerts (use a notify hook)"
	noSNMP       = "hacoord has no SNMP or D-Bus interface (see hacoord status)"
	noEquivalent = "hacoord has no equivalent"
	noScriptUser = "hacoord runs scripts as its own user (run it as the user the script needs)"
	noTrackOther = "hacoord tracks only scripts and interfaces; use a vrrp_script instead"
	noVMAC       = "hacoord binds VIPs on the interface itself (no VMAC or ipvlan)"
	noRoutes     = "hacoord manages only its VIPs, no routes or rules"
	noIPVSFlag   = "hacoord's IPVS has no such setting"
	noChecker    = "hacoord has TCP_CHECK, HTTP_GET and MISC_CHECK only; the real server is always up without a checker"
)

var rootUnmapped = map[string]string{
	"virtual_server_group":     "hacoord's IPVS has no virtual server groups; write one virtual_server per address",
	"SSL":                      "hacoord has no SSL_GET checker",
	"static_ipaddress":         "hacoord manages only the VIPs of its instances",
	"static_routes":            noRoutes,
	"static_rules":             noRoutes,
	"static_track_group":       noRoutes,
	"linkbeat_interfaces":      noEquivalent,
	"linkbeat_use_polling":     noEquivalent,
	"garp_group":               "hacoord sends the messages of a round back to back",
	"vrrp_track_file":          noTrackOther,
	"track_file":               noTrackOther,
	"vrrp_track_process":       noTrackOther,
	"bfd_instance":             noTrackOther,
	"interface_up_down_delays": noEquivalent,
	"net_namespace":            "run hacoord inside the namespace instead",
	"net_namespace_ipvs":       "run hacoord inside the namespace instead",
	"namespace_with_ipsets":    noEquivalent,
	"use_pid_dir":              noEquivalent,
	"instance":                 noEquivalent,
	"child_wait_time":          noEquivalent,
}

func (in *interp) root(n *Node) {
	switch n.Keyword {
	case "global_defs":
		if in.needBlock(n) {
			for _, c := range n.Block {
				in.global(c)
			}
		}
	case "vrrp_script":
		in.script(n)
	case "vrrp_instance":
		in.instance(n)
	case "vrrp_sync_group":
		in.syncGroup(n)
	case "virtual_server":
		in.virtualServer(n)
	default:
		in.other(n, "the top level", rootUnmapped)
	}
}

// other handles a keyword a block has no handler for: dropped with a reason when keepalived knows
// it, else reported as unknown. Either way its block goes with it.
func (in *interp) other(n *Node, where string, known map[string]string) {
	if reason, ok := known[n.Keyword]; ok {
		in.unmapped(n, reason)
		return
	}
	with := ""
	if n.HasBlock {
		with = " with its block"
	}
	in.d.addf(n.Pos, n.Keyword, "unknown keyword in %s, skipped%s (keepalived: Unknown keyword)", where, with)
}

func (in *interp) unmapped(n *Node, reason string) {
	in.k.Unmapped = append(in.k.Unmapped, Diagnostic{Pos: n.Pos, Keyword: n.Keyword, Msg: "dropped: " + reason})
}

// needBlock reports whether n has a block, and says so when it does not.
func (in *interp) needBlock(n *Node) bool {
	if !n.HasBlock {
		in.d.addf(n.Pos, n.Keyword, "needs a { } block; ignored (keepalived: Missing '{')")
	}
	return n.HasBlock
}

// noBlock warns about a block after a keyword that takes none.
func (in *interp) noBlock(n *Node) {
	if n.HasBlock {
		in.d.addf(n.BlockPos, n.Keyword, "takes no block; the block is ignored (keepalived: Unexpected '{')")
	}
}

// value returns the single argument of a scalar keyword.
func (in *interp) value(n *Node) (string, bool) {
	in.noBlock(n)
	if len(n.Args) == 0 {
		in.d.addf(n.Pos, n.Keyword, "missing value; ignored")
		return "", false
	}
	return n.Args[0], true
}

func (in *interp) warnf(n *Node, format string, args ...any) {
	in.d.addf(n.Pos, n.Keyword, format, args...)
}

// --- global_defs --------------------------------------------------------------------------------

var globalUnmapped = func() map[string]string {
	m := map[string]string{
		"script_user":                  noScriptUser,
		"enable_script_security":       "hacoord makes no script security checks (keep scripts writable by root only)",
		"vrrp_strict":                  "hacoord has no strict mode",
		"vrrp_iptables":                "hacoord installs no firewall rules",
		"vrrp_ipsets":                  "hacoord installs no firewall rules",
		"nftables":                     "hacoord installs no firewall rules",
		"default_interface":            "only static addresses use it; hacoord manages only its VIPs",
		"dynamic_interfaces":           "hacoord needs its interfaces to exist at start-up",
		"vrrp_garp_extra_if":           noVMAC,
		"vrrp_vmac_garp_intvl":         noVMAC,
		"vmac_prefix":                  noVMAC,
		"vmac_addr_prefix":             noVMAC,
		"vrrp_down_timer_adverts":      "hacoord's VRRP uses RFC 5798's three advert intervals",
		"vrrp_lower_prio_no_advert":    noEquivalent,
		"vrrp_higher_prio_send_advert": noEquivalent,
		"vrrp_skip_check_adv_addr":     noEquivalent,
		"vrrp_check_unicast_src":       "hacoord accepts unicast adverts only from its unicast peers",
	}
	for _, k := range []string{"notification_email", "notification_email_from", "smtp_server", "smtp_helo_name",
		"smtp_connect_timeout", "smtp_alert", "smtp_alert_vrrp", "smtp_alert_checker", "no_email_faults", "no_checker_emails"} {
		m[k] = noEmail
	}
	for _, k := range []string{"snmp_socket", "enable_traps", "enable_snmp_vrrp", "enable_snmp_keepalived", "enable_snmp_rfc",
		"enable_snmp_rfcv2", "enable_snmp_rfcv3", "enable_snmp_checker", "enable_dbus", "dbus_service_name"} {
		m[k] = noSNMP
	}
	for _, k := range []string{"lvs_timeouts", "lvs_flush", "lvs_flush_on_stop", "lvs_flush_onstop",
		"lvs_notify_fifo", "lvs_notify_fifo_script", "nftables_ipvs", "nftables_ipvs_priority", "nftables_ipvs_start_fwmark",
		"lvs_netlink_cmd_rcv_bufs", "lvs_netlink_cmd_rcv_bufs_force", "lvs_netlink_monitor_rcv_bufs",
		"lvs_netlink_monitor_rcv_bufs_force", "checker_log_all_failures", "rs_init_notifies"} {
		m[k] = noIPVSFlag
	}
	for _, k := range []string{"process_names", "process_name", "vrrp_process_name", "checker_process_name",
		"lvs_process_name", "bfd_process_name", "startup_script", "startup_script_timeout", "shutdown_script",
		"shutdown_script_timeout", "max_auto_priority", "min_auto_priority_delay", "disable_local_igmp",
		"nftables_priority", "nftables_ifindex", "nftables_counters", "vrrp_priority", "vrrp_no_swap",
		"vrrp_rt_priority", "vrrp_cpu_affinity", "vrrp_rlimit_rttime", "vrrp_rlimit_rtime", "notify_fifo",
		"notify_fifo_script", "vrrp_notify_fifo", "vrrp_notify_fifo_script", "vrrp_notify_priority_changes",
		"fifo_write_vrrp_states_on_reload", "checker_priority", "checker_no_swap", "checker_rt_priority",
		"checker_cpu_affinity", "checker_rlimit_rttime", "checker_rlimit_rtime", "bfd_priority", "bfd_no_swap",
		"bfd_rt_priority", "bfd_cpu_affinity", "bfd_rlimit_rttime", "bfd_rlimit_rtime",
		"vrrp_netlink_cmd_rcv_bufs", "vrrp_netlink_cmd_rcv_bufs_force", "vrrp_netlink_monitor_rcv_bufs",
		"vrrp_netlink_monitor_rcv_bufs_force", "process_monitor_rcv_bufs", "process_monitor_rcv_bufs_force",
		"vrrp_rx_bufs_policy", "vrrp_rx_bufs_multiplier", "vrrp_startup_delay", "log_unknown_vrids", "umask",
		"random_seed", "reload_check_config", "reload_time_file", "reload_repeat", "reload_file", "include_check",
		"config_save_dir", "tmp_config_directory", "data_use_instance", "linkbeat_use_polling"} {
		m[k] = noEquivalent
	}
	return m
}()

var defaultMcastGroup4 = netip.MustParseAddr("224.0.0.18")

func (in *interp) global(n *Node) {
	g := &in.k.GARP
	switch n.Keyword {
	case "router_id":
		if v, ok := in.value(n); ok {
			in.k.RouterID = set(n, v)
		}
	case "vrrp_version":
		if v, ok := in.value(n); ok {
			if x, ok := parseUint(v, 2, 3); ok {
				in.k.VRRPVersion = set(n, int(x))
			} else {
				in.warnf(n, "%q is not 2 or 3; ignored (keepalived: vrrp_version invalid)", v)
			}
		}
	case "vrrp_garp_master_delay", "vrrp_garp_master_repeat", "vrrp_garp_master_refresh",
		"vrrp_garp_master_refresh_repeat", "vrrp_garp_lower_prio_delay", "vrrp_garp_lower_prio_repeat":
		in.garp(n, g, strings.TrimPrefix(n.Keyword, "vrrp_"))
	case "vrrp_garp_interval", "vrrp_gna_interval":
		if v, ok := in.value(n); ok {
			d, ok := parseTimer(v, time.Microsecond, 0)
			switch {
			case !ok:
				in.warnf(n, "%q is not a positive number of seconds; ignored", v)
			case n.Keyword == "vrrp_garp_interval":
				g.Interval = set(n, d)
			default:
				g.GNAInterval = set(n, d)
			}
		}
	case "vrrp_min_garp":
		in.noBlock(n)
		on := true
		if len(n.Args) > 0 {
			var ok bool
			if on, ok = parseBool(n.Args[0]); !ok {
				in.warnf(n, "%q is not a <BOOL>; ignored", n.Args[0])
				return
			}
		}
		in.k.MinGARP = set(n, on)
	case "vrrp_mcast_group4":
		if v, ok := in.value(n); ok {
			if a, err := netip.ParseAddr(v); err != nil || a != defaultMcastGroup4 {
				in.unmapped(n, "hacoord sends VRRP adverts to 224.0.0.18 (RFC 5798) only")
			}
		}
	case "vrrp_mcast_group6":
		if v, ok := in.value(n); ok && v != "ff02::12" {
			in.unmapped(n, "hacoord sends IPv6 VRRP adverts to ff02::12 (RFC 5798) only")
		}
	case "lvs_sync_daemon":
		in.syncDaemon(n)
	default:
		in.other(n, "global_defs", globalUnmapped)
	}
}

// garp handles the garp_master_* / garp_lower_prio_* keywords of global_defs and vrrp_instance.
// key is the keyword without the "vrrp_" prefix. keepalived reads whole seconds and counts.
func (in *interp) garp(n *Node, g *GARP, key string) {
	v, ok := in.value(n)
	if !ok {
		return
	}
	x, ok := parseUint(v, 0, 1<<32-1)
	if !ok {
		in.warnf(n, "%q is not a whole non-negative number; ignored (keepalived: %s invalid)", v, n.Keyword)
		return
	}
	secs := time.Duration(x) * time.Second
	switch key {
	case "garp_master_delay":
		g.Delay = set(n, secs)
	case "garp_master_refresh":
		g.Refresh = set(n, secs)
	case "garp_lower_prio_delay":
		g.LowerPrioDelay = set(n, secs)
	case "garp_lower_prio_repeat":
		g.LowerPrioRepeat = set(n, int(x))
	case "garp_master_repeat", "garp_master_refresh_repeat":
		if x == 0 {
			in.warnf(n, "must be greater than 0; set to 1 (as keepalived does)")
			x = 1
		}
		if key == "garp_master_repeat" {
			g.Repeat = set(n, int(x))
		} else {
			g.RefreshRepeat = set(n, int(x))
		}
	}
}

// --- vrrp_script ----------------------------------------------------------------------------

func (in *interp) script(n *Node) {
	if len(n.Args) == 0 {
		in.warnf(n, "needs a name; skipped")
		return
	}
	if !in.needBlock(n) {
		return
	}
	s := &Script{Name: n.Args[0], Pos: n.Pos}
	for _, c := range n.Block {
		switch c.Keyword {
		case "script":
			in.noBlock(c)
			argv, user, ok := splitScript(c)
			if !ok {
				in.warnf(c, "cannot read the command (missing, or an unterminated quote); ignored")
				continue
			}
			if len(user) > 0 {
				in.warnf(c, "extra words %q after the command are ignored (as keepalived does: quote a command with arguments)", strings.Join(user, " "))
			}
			s.Argv = set(c, argv)
		case "interval", "timeout":
			v, ok := in.value(c)
			if !ok {
				continue
			}
			x, ok := parseUint(v, 0, 1<<32-1)
			if !ok {
				in.warnf(c, "%q is not a whole number of seconds; ignored", v)
				continue
			}
			if x == 0 {
				in.warnf(c, "must be greater than 0; set to 1 (as keepalived does)")
				x = 1
			}
			if c.Keyword == "interval" {
				s.Interval = set(c, time.Duration(x)*time.Second)
			} else {
				s.Timeout = set(c, time.Duration(x)*time.Second)
			}
		case "weight":
			in.noBlock(c)
			if len(c.Args) == 0 {
				in.warnf(c, "missing value; ignored")
				continue
			}
			w, ok := parseInt(c.Args[0], -253, 253)
			if !ok {
				in.warnf(c, "%q must be in [-253, 253]; weight 0 (as keepalived does)", c.Args[0])
			}
			s.Weight = set(c, int(w))
			switch {
			case len(c.Args) >= 2 && c.Args[1] == "reverse":
				s.Reverse = true
			case len(c.Args) >= 2:
				in.warnf(c, "unknown weight option %q; ignored", c.Args[1])
			}
		case "rise", "fall":
			v, ok := in.value(c)
			if !ok {
				continue
			}
			x, ok := parseUint(v, 1, 1<<31-1)
			if !ok {
				in.warnf(c, "%q is not a whole number from 1; set to 1 (as keepalived does)", v)
				x = 1
			}
			if c.Keyword == "rise" {
				s.Rise = set(c, int(x))
			} else {
				s.Fall = set(c, int(x))
			}
		case "init_fail":
			in.noBlock(c)
			s.InitFail = set(c, true)
		case "user":
			in.unmapped(c, noScriptUser)
		default:
			in.other(c, "vrrp_script", nil)
		}
	}
	if !s.Argv.Set {
		in.warnf(n, "%s has no script; removed (keepalived: No script set for vrrp_script)", s.Name)
		return
	}
	if in.findScript(s.Name) != nil {
		in.warnf(n, "%s is defined twice; this one is ignored", s.Name)
		return
	}
	in.k.Scripts = append(in.k.Scripts, s)
}

func (in *interp) findScript(name string) *Script {
	for _, s := range in.k.Scripts {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// trackScripts reads a track_script block. keepalived looks each script up when it reads the
// block, so a vrrp_script defined further down the file is not found.
func (in *interp) trackScripts(n *Node, owner string, into *[]TrackScript) {
	if !in.needBlock(n) {
		return
	}
	for _, c := range n.Block {
		in.noBlock(c)
		s := in.findScript(c.Keyword)
		if s == nil {
			in.d.addf(c.Pos, "track_script", "(%s) script %s not found; ignored (keepalived: track script not found; define the vrrp_script before it is used)", owner, c.Keyword)
			continue
		}
		dup := false
		for _, t := range *into {
			dup = dup || t.Name == c.Keyword
		}
		if dup {
			in.d.addf(c.Pos, "track_script", "(%s) %s tracked twice; ignored", owner, c.Keyword)
			continue
		}
		t := TrackScript{Name: c.Keyword, Pos: c.Pos, script: s}
		if len(c.Args) > 0 {
			if c.Args[0] != "weight" {
				in.d.addf(c.Pos, "track_script", "(%s) unknown option %q; %s ignored (as keepalived does)", owner, c.Args[0], c.Keyword)
				continue
			}
			if len(c.Args) == 1 {
				in.d.addf(c.Pos, "track_script", "(%s) weight without a value; %s ignored (as keepalived does)", owner, c.Keyword)
				continue
			}
			w, ok := parseInt(c.Args[1], -254, 254)
			switch {
			case !ok:
				in.d.addf(c.Pos, "track_script", "(%s) weight %q must be in [-253, 253]; the script's weight is used (as keepalived does)", owner, c.Args[1])
			case w == 254 || w == -254:
				in.d.addf(c.Pos, "track_script", "(%s) weight cannot be +/-254; set to +/-253 (as keepalived does)", owner)
				w = w / 254 * 253
				fallthrough
			default:
				t.Weight = Opt[int]{V: int(w), Set: true, Pos: c.Pos, Keyword: "weight"}
			}
			if len(c.Args) >= 3 {
				switch c.Args[2] {
				case "reverse":
					t.Reverse = Opt[bool]{V: true, Set: true, Pos: c.Pos}
				case "noreverse", "no_reverse":
					t.Reverse = Opt[bool]{V: false, Set: true, Pos: c.Pos}
				default:
					in.d.addf(c.Pos, "track_script", "(%s) unknown weight option %q; ignored", owner, c.Args[2])
				}
			}
		}
		s.used = true
		*into = append(*into, t)
	}
}

// trackInterfaces reads a track_interface block.
func (in *interp) trackInterfaces(n *Node, owner string, into *[]TrackInterface) {
	if !in.needBlock(n) {
		return
	}
	for _, c := range n.Block {
		in.noBlock(c)
		dup := false
		for _, t := range *into {
			dup = dup || t.Name == c.Keyword
		}
		if dup {
			in.d.addf(c.Pos, "track_interface", "(%s) duplicate %s; ignored (as keepalived does)", owner, c.Keyword)
			continue
		}
		t := TrackInterface{Name: c.Keyword, Pos: c.Pos}
		if len(c.Args) > 0 {
			if c.Args[0] != "weight" {
				in.d.addf(c.Pos, "track_interface", "(%s) unknown option %q for %s; ignored (as keepalived does)", owner, c.Args[0], c.Keyword)
				continue
			}
			if len(c.Args) == 1 {
				in.d.addf(c.Pos, "track_interface", "(%s) weight without a value for %s; ignored (as keepalived does)", owner, c.Keyword)
				continue
			}
			w, ok := parseInt(c.Args[1], -254, 254)
			switch {
			case !ok:
				in.d.addf(c.Pos, "track_interface", "(%s) weight %q for %s must be in [-253, 253]; weight 0 (as keepalived does)", owner, c.Args[1], c.Keyword)
				w = 0
			case w == 254 || w == -254:
				in.d.addf(c.Pos, "track_interface", "(%s) weight for %s cannot be +/-254; set to +/-253 (as keepalived does)", owner, c.Keyword)
				w = w / 254 * 253
			}
			t.Weight = int(w)
			if len(c.Args) >= 3 {
				if c.Args[2] == "reverse" {
					t.Reverse = true
				} else {
					in.d.addf(c.Pos, "track_interface", "(%s) unknown weight option %q; ignored", owner, c.Args[2])
				}
			}
		}
		*into = append(*into, t)
	}
}

// hook reads a notify script keyword. keepalived keeps the first of each kind.
func (in *interp) hook(n *Node, owner string, into *[]Hook) {
	in.noBlock(n)
	for _, h := range *into {
		if h.Keyword == n.Keyword {
			in.warnf(n, "(%s) already given at line %d; ignored (as keepalived does)", owner, h.Pos.Line)
			return
		}
	}
	argv, user, ok := splitScript(n)
	if !ok {
		in.warnf(n, "(%s) cannot read the command (missing, or an unterminated quote); ignored", owner)
		return
	}
	*into = append(*into, Hook{Keyword: n.Keyword, Pos: n.Pos, Argv: argv, User: user})
}

// --- vrrp_sync_group --------------------------------------------------------------------------

var syncGroupUnmapped = map[string]string{
	"notify_master":           "hacoord's sync groups have no hooks of their own; the member instances' hooks run",
	"notify_backup":           "hacoord's sync groups have no hooks of their own; the member instances' hooks run",
	"notify_fault":            "hacoord's sync groups have no hooks of their own; the member instances' hooks run",
	"notify_stop":             "hacoord's sync groups have no hooks of their own; the member instances' hooks run",
	"notify_deleted":          "hacoord's sync groups have no hooks of their own; the member instances' hooks run",
	"notify":                  "hacoord's sync groups have no hooks of their own; the member instances' hooks run",
	"notify_priority_changes": noEquivalent,
	"smtp_alert":              noEmail,
	"global_tracking":         "deprecated in keepalived; use sync_group_tracking_weight",
	"track_file":              noTrackOther,
	"track_process":           noTrackOther,
	"track_bfd":               noTrackOther,
}

func (in *interp) syncGroup(n *Node) {
	if len(n.Args) == 0 {
		in.warnf(n, "needs a name; skipped")
		return
	}
	if !in.needBlock(n) {
		return
	}
	g := &SyncGroup{Name: n.Args[0], Pos: n.Pos}
	for _, c := range n.Block {
		switch c.Keyword {
		case "group":
			if !in.needBlock(c) {
				continue
			}
			for _, m := range c.Block {
				in.noBlock(m)
				for _, w := range m.Words() {
					g.memberNames = append(g.memberNames, Opt[string]{V: w, Set: true, Pos: m.Pos, Keyword: "group"})
				}
			}
		case "track_script":
			in.trackScripts(c, g.Name, &g.TrackScripts)
		case "track_interface":
			in.trackInterfaces(c, g.Name, &g.TrackIfaces)
		case "sync_group_tracking_weight":
			in.noBlock(c)
			g.TrackingWeight = true
		default:
			in.other(c, "vrrp_sync_group", syncGroupUnmapped)
		}
	}
	in.k.SyncGroups = append(in.k.SyncGroups, g)
}

// syncGroups resolves the members of every sync group once all instances are read (keepalived's
// vrrp_sync_set_group).
func (in *interp) syncGroups() {
	var kept []*SyncGroup
	for _, g := range in.k.SyncGroups {
		for _, m := range g.memberNames {
			var inst *Instance
			for _, i := range in.k.Instances {
				if i.Name == m.V {
					inst = i
					break
				}
			}
			switch {
			case inst == nil:
				in.d.addf(m.Pos, "group", "(%s) vrrp_instance %s does not exist; ignored (as keepalived does)", g.Name, m.V)
			case inst.Sync != nil:
				in.d.addf(m.Pos, "group", "(%s) %s is already in sync group %s; ignored (as keepalived does)", g.Name, m.V, inst.Sync.Name)
			default:
				inst.Sync = g
				g.Members = append(g.Members, inst)
			}
		}
		switch len(g.Members) {
		case 0:
			in.d.addf(g.Pos, "vrrp_sync_group", "%s has no existing member; removed (as keepalived does)", g.Name)
			continue
		case 1:
			in.d.addf(g.Pos, "vrrp_sync_group", "%s has only one member, %s (keepalived: this probably isn't what you want)", g.Name, g.Members[0].Name)
		}
		kept = append(kept, g)
	}
	in.k.SyncGroups = kept
}

func formatArgs(words []string) string { return fmt.Sprintf("%q", strings.Join(words, " ")) }
