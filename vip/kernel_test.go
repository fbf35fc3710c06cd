package vip

import (
	"net/netip"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

func delAddrMsg(family, index, bits int, attrs map[uint16][]byte) syscall.NetlinkMessage {
	msg := nl.NewIfAddrmsg(family)
	msg.Index, msg.Prefixlen = uint32(index), uint8(bits)
	data := msg.Serialize()
	for _, typ := range []uint16{unix.IFA_ADDRESS, unix.IFA_LOCAL} {
		if v, ok := attrs[typ]; ok {
			data = append(data, nl.NewRtAttr(int(typ), v).Serialize()...)
		}
	}
	return syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: unix.RTM_DELADDR}, Data: data}
}

func linkMsg(typ uint16, index int, flags uint32) syscall.NetlinkMessage {
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index, msg.Flags = int32(index), flags
	return syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: typ}, Data: msg.Serialize()}
}

func namedLinkMsg(typ uint16, index int, name string) syscall.NetlinkMessage {
	m := linkMsg(typ, index, unix.IFF_UP)
	m.Data = append(m.Data, nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)).Serialize()...)
	return m
}

func TestParseNotification(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.100").AsSlice()
	peer := netip.MustParseAddr("192.0.2.200").AsSlice()
	v6 := netip.MustParseAddr("2001:db8::100").AsSlice()
	for _, tc := range []struct {
		name string
		msg  syscall.NetlinkMessage
		want event
		ok   bool
	}{
		{"IPv4 removed", delAddrMsg(unix.AF_INET, 7, 24, map[uint16][]byte{unix.IFA_LOCAL: v4, unix.IFA_ADDRESS: v4}),
			event{kind: addrRemoved, addr: netip.MustParsePrefix("192.0.2.100/24")}, true},
		{"IPv4 point-to-point: IFA_LOCAL is ours", delAddrMsg(unix.AF_INET, 7, 32, map[uint16][]byte{unix.IFA_LOCAL: v4, unix.IFA_ADDRESS: peer}),
			event{kind: addrRemoved, addr: netip.MustParsePrefix("192.0.2.100/32")}, true},
		{"IPv6 removed", delAddrMsg(unix.AF_INET6, 7, 64, map[uint16][]byte{unix.IFA_ADDRESS: v6}),
			event{kind: addrRemoved, addr: netip.MustParsePrefix("2001:db8::100/64")}, true},
		{"other interface", delAddrMsg(unix.AF_INET, 8, 24, map[uint16][]byte{unix.IFA_LOCAL: v4}), event{}, false},
		{"address added", func() syscall.NetlinkMessage {
			m := delAddrMsg(unix.AF_INET, 7, 24, map[uint16][]byte{unix.IFA_LOCAL: v4})
			m.Header.Type = unix.RTM_NEWADDR
			return m
		}(), event{kind: addrAdded, addr: netip.MustParsePrefix("192.0.2.100/24")}, true},
		{"address added on another interface", func() syscall.NetlinkMessage {
			m := delAddrMsg(unix.AF_INET, 8, 24, map[uint16][]byte{unix.IFA_LOCAL: v4})
			m.Header.Type = unix.RTM_NEWADDR
			return m
		}(), event{}, false},
		{"truncated", syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: unix.RTM_DELADDR}, Data: []byte{2, 24}}, event{}, false},
		{"link up and running", linkMsg(unix.RTM_NEWLINK, 7, unix.IFF_UP|unix.IFF_RUNNING|unix.IFF_LOWER_UP), event{kind: linkChanged, up: true}, true},
		{"link up, no carrier", linkMsg(unix.RTM_NEWLINK, 7, unix.IFF_UP), event{kind: linkChanged, up: false}, true},
		{"link down", linkMsg(unix.RTM_NEWLINK, 7, 0), event{kind: linkChanged, up: false}, true},
		{"link deleted", linkMsg(unix.RTM_DELLINK, 7, unix.IFF_UP|unix.IFF_RUNNING), event{kind: linkChanged, up: false}, true},
		{"other link", linkMsg(unix.RTM_NEWLINK, 9, unix.IFF_UP|unix.IFF_RUNNING), event{}, false},
		{"our name on a new index: created again", namedLinkMsg(unix.RTM_NEWLINK, 12, "vip0"), event{kind: linkAppeared}, true},
		{"another name on a new index", namedLinkMsg(unix.RTM_NEWLINK, 12, "vip01"), event{}, false},
		{"our name, deleted from another index", namedLinkMsg(unix.RTM_DELLINK, 12, "vip0"), event{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseNotification(tc.msg, 7, "vip0")
			if ok != tc.ok || got != tc.want {
				t.Fatalf("parseNotification = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
