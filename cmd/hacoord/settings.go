package main

import (
	"net/netip"
	"os"
)

// Settings is one instance as the fence guard supervisor (guard.go) and the status file
// (status.go) know it: names, interface, VIPs, status file and the daemon's logging. The daemon
// fills it from the instance's plan, validated; `hacoord status` from its own flags.
type Settings struct {
	Instance   string
	Backend    string
	Group      string
	Name       string
	Interface  string
	VIPs       []string
	StatusFile string
	Log        LogSettings
}

// settingsOf returns the Settings of instance ip of node.
func settingsOf(ip *instancePlan, node string, log LogSettings) Settings {
	s := Settings{Instance: ip.name, Backend: ip.backend, Group: ip.group, Name: node, Interface: ip.iface,
		StatusFile: ip.status, Log: log}
	for _, v := range ip.vips {
		s.VIPs = append(s.VIPs, v.String())
	}
	return s
}

// defaultSettings are what `hacoord status` assumes without flags: group "default", this host.
func defaultSettings() Settings {
	host, _ := os.Hostname()
	return Settings{Group: defaultGroup, Name: host}
}

// normalize fills the default status file from the group and node name.
func (s *Settings) normalize() {
	if s.StatusFile == "" {
		s.StatusFile = defaultStatusFile(s.Group, s.Name)
	}
}

// vipPrefixes parses VIPs (the fence guard's --vip flags); a VIP listed twice is an error.
func (s Settings) vipPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	seen := map[netip.Addr]bool{}
	for _, v := range s.VIPs {
		p, err := parseVIP(v)
		if err != nil {
			return nil, configErrorf("--vip %v", err)
		}
		if seen[p.Addr()] {
			return nil, configErrorf("--vip %s: listed twice", p)
		}
		seen[p.Addr()] = true
		out = append(out, p)
	}
	return out, nil
}
