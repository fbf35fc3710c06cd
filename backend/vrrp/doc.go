// Package vrrp is hacoord's native VRRP backend: it decides who is master of a virtual router with
// the Virtual Router Redundancy Protocol, wire-compatible with keepalived, for sites without a
// coordination store. It has three layers:
//
//   - the packet codec (Packet, Marshal, Unmarshal) for VRRPv3 over IPv4 and IPv6 (RFC 5798) and
//     VRRPv2 (RFC 3768);
//   - the state machine (Machine), a pure value stepped with explicit time and events, which also
//     performs the receive checks, counts every dropped packet by reason and tells apart the
//     adverts of a router configured differently for the same VRID (Mismatch);
//   - the Conn (a raw IP protocol 112 socket bound to one interface, IPv4 or IPv6) and the Elector
//     that joins the two and reports election.States.
//
// The Elector only decides the role. Binding the VIPs and announcing them (package vip) is done by
// whoever consumes the States.
//
// VRRP has no quorum: if the path between the routers is cut, each side becomes master (split brain).
//
// # IPv6
//
// A virtual router whose VIPs are IPv6 (version 3 only) advertises to ff02::12 with Hop Limit 255
// from the interface's link-local address, which is also its primary address for the tie-break
// (RFC 5798 §5.1.2, §6.4.3); the kernel computes and verifies the checksum over the IPv6
// pseudo-header (RFC 5798 §5.2.8; IPV6_CHECKSUM). Run waits while that address is still in
// duplicate address detection. keepalived's equivalent is a vrrp_instance with `version 3`,
// `native_ipv6` and IPv6 `virtual_ipaddress`es. IPv4 and IPv6 VIPs cannot share one virtual router
// (run two), and unicast peers are IPv4 only. Package vip announces IPv6 VIPs with unsolicited
// neighbour advertisements.
//
// # Mismatched routers, status and metrics
//
// Routers that send adverts for this VRID but differ in version, VIP list, (v2) password or
// advert interval never join this virtual router: both sides may be master (a version 3 interval
// difference is the exception: accepted, RFC 5798 §6.4.2, but takeover times then depend on which
// router is master). This is the trap of a
// hacoord node (version 3 by default) next to a keepalived left at its default (version 2). The
// Elector logs each at warn level as soon as it hears it, naming the source, what it sent and
// what is expected, then at most once per MismatchWarnInterval per reason and source, and again
// when it becomes master while one was heard within that interval. For status and metrics:
//
//   - Elector.Mismatches lists them, one per reason and source, with the count and the first and
//     last time seen;
//   - Elector.Stats has the totals: Sent (adverts sent, priority-0 ones included; SendErrors of
//     them reached no destination), Received (VRRP packets read), Accepted, Own, Dropped by
//     DropReason, and Mismatched by
//     MismatchReason, whose values ("version", "vips", "auth", "advert-int") are the reason label
//     of hacoord_vrrp_mismatched_adverts_total.
//
// # Wire compatibility with keepalived
//
// Adverts are byte-identical to keepalived 2.2.7's for the same settings, IPv4 and IPv6 (see the
// captures in packet_test.go), and the receive checks follow keepalived's: TTL (Hop Limit) 255,
// length, type, checksum, VRID, version, (v2) auth type, password and interval, address count and
// list. A packet that fails one is
// dropped and counted in Stats. As in keepalived, a master answers a lower-priority advert with an
// immediate advert, a master stopping sends priority 0, and preempt_delay runs from startup and from
// first seeing a lower-priority master.
package vrrp
