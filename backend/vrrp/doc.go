// Package vrrp is hacoord's native VRRP backend: it decides who is master of a virtual router with
// the Virtual Router Redundancy Protocol, wire-compatible with keepalived, for sites without a
// coordination store. It has three layers:
//
//   - the packet codec (Packet, Marshal, Unmarshal) for VRRPv3 over IPv4 (RFC 5798) and VRRPv2
//     (RFC 3768);
//   - the state machine (Machine), a pure value stepped with explicit time and events, which also
//     performs the receive checks and counts every dropped packet by reason;
//   - the Conn (a raw IP protocol 112 socket bound to one interface) and the Elector that joins the
//     two and reports election.States.
//
// The Elector only decides the role. Binding the VIPs and announcing them (package vip) is done by
// whoever consumes the States.
//
// VRRP has no quorum: if the path between the routers is cut, each side becomes master (split brain).
//
// # Wire compatibility with keepalived
//
// Adverts are byte-identical to keepalived 2.2.7's for the same settings (see the captures in
// packet_test.go), and the receive checks follow keepalived's: TTL 255, version, type, checksum,
// VRID, (v2) auth type, password and interval, address count and list. A packet that fails one is
// dropped and counted in Stats. As in keepalived, a master answers a lower-priority advert with an
// immediate advert, a master stopping sends priority 0, and preempt_delay runs from startup and from
// first seeing a lower-priority master.
package vrrp
