// Package vip binds virtual IP addresses (VIPs) to an interface with netlink and announces them with
// gratuitous ARP (IPv4) and unsolicited neighbour advertisements (IPv6), for whichever backend won
// the election. It is a leaf: it imports nothing of hacoord, and cmd adapts a Manager into an
// election.Action (Acquire on promote, Extend on renew, Release on demote).
//
// # Lifecycle
//
//	m, err := vip.New(cfg, log)   // validates, opens sockets; no goroutines
//	m.Cleanup(ctx)                // remove what a killed previous run left bound
//	go m.Run(ctx)                 // watcher and announcement schedule
//	m.Acquire(ctx, until)         // bind + burst; until = self-fencing deadline (zero: none)
//	m.Extend(ctx, until)          // on every lease renewal
//	m.Release(ctx)                // unbind, stop announcing
//	m.Close()                     // after Run returned
//
// # Binding
//
// IPv4 VIPs are bound with scope global and the optional label; IPv6 VIPs with IFA_F_NODAD, so they
// are usable at once instead of after duplicate address detection. Binding uses RTM_NEWADDR with
// NLM_F_REPLACE, so binding twice leaves one address, and re-binding only updates the flags and
// lifetime of the present address.
//
// # Announce schedule
//
// A round is, for each IPv4 VIP, a broadcast gratuitous ARP in request form (target hardware address
// zero, RFC 5227 section 3) and one in reply form (RFC 5944 section 4.6) — hosts and switches differ
// in which they honour — and for each IPv6 VIP an unsolicited neighbour advertisement to ff02::1 with
// the Override flag and a Target Link-Layer Address option (RFC 4861 section 7.2.6). Frames are built
// whole and sent on AF_PACKET sockets with the interface's own MAC as the Ethernet and ARP sender.
//
// Acquire sends AnnounceConfig.Count rounds at once, then Run sends Repeat more, RepeatInterval
// apart. The interval must exceed 1s: a Linux host ignores a second update of a neighbour entry
// within its locktime (1s), so closer rounds are wasted. While the VIPs are held, Run re-announces
// every Refresh, and starts a new burst when the interface comes back up after being down (switches
// forget MAC locations on link loss, and clients kept sending to the old master for tens of seconds
// when this was not done). A VIP that someone removes (ip addr del) is bound again and announced.
//
// Fencing: the Manager never binds and never sends a frame once time.Now() has reached the deadline
// given to Acquire or Extend, nor after Release; it checks right before every bind and every frame,
// under the same mutex that Release takes. So a process that was stopped (SIGSTOP) while master and
// continued after another node took over does not announce an address it no longer owns, even if a
// refresh timer was pending.
//
// # Lifetime backstop
//
// A master that is SIGKILLed, or stopped, cannot remove its VIPs. With Config.Lifetime (the default)
// the VIPs are bound with valid_lft = preferred_lft = the time left until the deadline, rounded up to
// whole seconds (at least 1), and every Extend sets it again. If the process stops extending, the
// kernel deletes the addresses by itself: within about a second of the lifetime's end (the kernel's
// address expiry work is rounded to whole seconds), so at most about two seconds after the deadline.
// The backstop is for a dead or frozen process; a live one releases at the deadline itself. The
// daemon's fence guard (a watchdog process, see fencing.Guard) acts first, within milliseconds of
// the death or the deadline; the lifetime covers the case where the guard is killed too. A zero
// deadline binds permanently.
//
// # Network namespaces
//
// New opens every socket (netlink handle, netlink notification socket, AF_PACKET sockets) in the
// network namespace of the calling OS thread, and the Manager never switches namespace afterwards,
// so it needs CAP_NET_ADMIN and CAP_NET_RAW but not CAP_SYS_ADMIN. In production that is the
// daemon's own namespace. Tests create a Manager inside netnstest.NS.Do and then use it from any
// goroutine.
//
// # Timing notes
//
// "Up" means IFF_UP and IFF_RUNNING (operationally up). The kernel reports a carrier change through
// its link-watch work, batched about once a second, so the burst after a link comes back typically
// leaves about 1s after `ip link set up`; announcing earlier would go out before the link carries
// traffic. When an interface goes down the kernel leaves a stale ENETDOWN on packet sockets, which
// the Manager absorbs by retrying that one send.
package vip
