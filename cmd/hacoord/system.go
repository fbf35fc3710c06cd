package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hacoord/hacoord/election/health"
)

// checkEtcdEndpoint checks the form of an etcd endpoint: http:// or https:// with host and port, or
// a bare host:port. (A rule for etcd.Config.Validate; here until that package checks it.)
func checkEtcdEndpoint(e string) error {
	hostport := e
	if strings.Contains(e, "://") {
		u, err := url.Parse(e)
		if err != nil {
			return fmt.Errorf("not a URL: %v", err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("scheme %q: etcd endpoints are http:// or https:// URLs", u.Scheme)
		}
		if u.Path != "" && u.Path != "/" {
			return fmt.Errorf("path %q: an etcd endpoint is scheme://host:port", u.Path)
		}
		hostport = u.Host
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("want http(s)://host:port or host:port: %v", err)
	}
	return checkHostPort(host, port)
}

// checkZKEndpoint checks a ZooKeeper connection string entry ("zk1:2181", "zk1:2181,zk2:2181/ha",
// "zk1" for port 2181): every port in 1..65535. (A rule for zk.Config.Validate; here until that
// package checks it. The zk package checks the rest of the form.)
func checkZKEndpoint(e string) error {
	for _, s := range strings.Split(e, ",") {
		s, _, _ = strings.Cut(strings.TrimSpace(s), "/")
		if s == "" {
			continue
		}
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			continue // a bare host: port 2181 (or a form the zk package refuses, naming it)
		}
		if err := checkHostPort(host, port); err != nil {
			return fmt.Errorf("server %s: %v", s, err)
		}
	}
	return nil
}

func checkHostPort(host, port string) error {
	if host == "" {
		return errors.New("no host")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q out of range 1-65535", port)
	}
	return nil
}

// checkSystem checks the plan against this machine, read-only and without privileges: every
// instance's interface exists; no VIP is an address the interface already has that hacoord did
// not bind (the node's own address); a VRRP unicast_src is the address adverts are sent from;
// tracked interfaces exist; hooks are executable programs. The daemon and check-config both run
// it, in the caller's network namespace.
func checkSystem(s settings, p *plan) error {
	b := &planner{s: s, seen: map[string]bool{}}
	for _, ip := range p.instances {
		b.checkInterface(ip)
		if m, err := health.New(ip.health, nil); err != nil {
			b.prefixed(ip.in, err)
		} else {
			m.Close()
		}
		for key, h := range ip.hooks {
			if _, err := exec.LookPath(h.Path); err != nil {
				b.fail(s.key(ip.in, key, ""), "%v", err)
			}
		}
	}
	if len(b.errs) > 0 {
		return configError{errors.Join(b.errs...)}
	}
	return nil
}

// checkInterface checks every device the instance's VIPs go on, and its VRRP source address.
func (b *planner) checkInterface(ip *instancePlan) {
	for _, set := range ip.vipSets {
		dev, key := set.cfg.Interface, "interface"
		if dev != ip.iface {
			key = fmt.Sprintf("vips[%d].dev", set.index[0])
		}
		if dev == "" {
			continue // buildPlan says so
		}
		addrs, err := linkAddrs(dev)
		if err != nil {
			b.fail(b.s.key(ip.in, key, dev), "%v", err)
			continue
		}
		for _, n := range set.index {
			v := ip.vips[n]
			if own, how := ownAddress(addrs, v); own {
				b.fail(b.s.key(ip.in, fmt.Sprintf("vips[%d]", n), v.String()),
					"%s is already an address of %s (%s), the interface's own, not a VIP hacoord bound: pick another VIP", v.Addr(), dev, how)
			}
		}
	}
	if !ip.src.IsValid() || ip.iface == "" {
		return
	}
	addrs, err := linkAddrs(ip.iface)
	if err != nil {
		return // said above
	}
	if primary := primaryIPv4(addrs, ip.vips); ip.src != primary {
		b.fail(b.s.key(ip.in, "vrrp.unicast_src", ""),
			"%s is not %s's primary IPv4 address (%v), which hacoord sends adverts from", ip.src, ip.iface, primary)
	}
}

// linkAddrs returns the addresses of the named link, or an error naming it.
func linkAddrs(name string) ([]netlink.Addr, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %v", name, err)
	}
	return addrs, nil
}

// ownAddress reports whether VIP v is already an address of the interface that is not hacoord's
// binding of it, and how that shows: the address with another prefix length; for IPv6, without
// IFA_F_NODAD (hacoord binds every VIP with it, vip/kernel.go; the kernel keeps it for IPv6 only);
// for IPv4, as the primary address of a subnet shorter than /32 (a VIP hacoord bound in a subnet
// the interface has an address in is a secondary address). A leftover VIP of a crashed hacoord,
// which start-up removes, is none of these — unless it was the only address of its subnet.
func ownAddress(addrs []netlink.Addr, v netip.Prefix) (bool, string) {
	for _, x := range addrs {
		xa, ok := netip.AddrFromSlice(x.IP)
		if !ok || xa.Unmap() != v.Addr() {
			continue
		}
		bits, _ := x.Mask.Size()
		switch {
		case bits != v.Bits():
			return true, fmt.Sprintf("as %s/%d", xa.Unmap(), bits)
		case v.Addr().Is6() && x.Flags&unix.IFA_F_NODAD == 0:
			return true, "bound without nodad"
		case v.Addr().Is4() && bits < 32 && x.Flags&unix.IFA_F_SECONDARY == 0:
			return true, fmt.Sprintf("its primary address in %s", v.Masked())
		}
	}
	return false, ""
}

// primaryIPv4 returns the first IPv4 address of the interface that is not a VIP: the source VRRP
// adverts are sent from (backend/vrrp's rule).
func primaryIPv4(addrs []netlink.Addr, vips []netip.Prefix) netip.Addr {
	for _, x := range addrs {
		a, ok := netip.AddrFromSlice(x.IP)
		a = a.Unmap()
		if !ok || !a.Is4() || slices.ContainsFunc(vips, func(v netip.Prefix) bool { return v.Addr() == a }) {
			continue
		}
		return a
	}
	return netip.Addr{}
}
