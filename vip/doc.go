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
// A master that is SIGKILLed, or stopped, cannot remove its VIPs. The daemon's fence guard (a
// watchdog process, see fencing.Guard) removes them for it within milliseconds of the death or the
// deadline. With Config.Lifetime (the default) the kernel is the last backstop, for when the guard
// is killed too (systemd killing the whole unit, the OOM killer): the VIPs are bound with valid_lft
// = preferred_lft = a lifetime the kernel is sure to have ended, and the address removed, by the
// deadline given to Acquire or Extend, and every Extend sets it again.
//
// What the kernel does (net/ipv4/devinet.c check_lifetime for IPv4, net/ipv6/addrconf.c
// addrconf_verify_rtnl for IPv6, the same rules; constants from include/net/addrconf.h): it stamps
// the address with jiffies when the lifetime is written and counts the lifetime in whole seconds
// from there. A per-namespace delayed work checks the addresses; it runs at once after an address
// is added or its lifetime changed, and then schedules itself for the earliest lifetime end among
// all the namespace's addresses (at most ADDR_CHECK_FREQUENCY, 120 s, ahead), rounded up to a
// whole second only if that costs less than ADDRCONF_TIMER_FUZZ (HZ/4, 250 ms), and never less
// than ADDRCONF_TIMER_FUZZ_MAX (HZ, 1 s) after the check itself. A check removes an address whose
// age, plus ADDRCONF_TIMER_FUZZ_MINUS (HZ/50, 20 ms), has reached its lifetime. So the kernel
// removes an address of lifetime L seconds
//
//   - at the earliest 20 ms before L has run out (harmless: early);
//   - at the latest 250 ms after, when the check was scheduled for this address's own end; or, when
//     an earlier check came less than 1 s before that end (an address of the namespace was added,
//     a lifetime changed, or another lifetime ended), just under 1 s after it (1 s - 20 ms);
//   - plus the timer wheel's granularity for the delayed work (a timer set d ahead fires up to
//     8/63 d late: 32 ms for the 1 s re-check at HZ 250, 80 ms at HZ 100) and the time the work
//     waits for a worker and for the RTNL lock.
//
// The Manager takes the worst case as kernelExpiryLateness(L) = 1.25 s + L/7 (1.25 s =
// ADDRCONF_TIMER_FUZZ_MAX + ADDRCONF_TIMER_FUZZ, which leaves about 0.19 s for the worker and the
// RTNL lock; L/7 covers the wheel's 8/63 for long lifetimes) and writes, at each bind and each
// Extend, the largest whole L with now + L + kernelExpiryLateness(L) <= deadline: floor((deadline -
// now - 1.25 s) * 7/8 / 1 s). Measured on a 6.18 kernel (HZ 250, in a namespace, 2 busy cores):
// an address alone is removed 0-68 ms after its lifetime ends; when another address of the
// namespace is added 100 ms before that end, 0.91-0.93 s after (TestLifetimeEndsBeforeTheDeadline;
// another hacoord group renewing its VIPs on the same host does the same). Two things the figure
// does not cover: the check is deferrable work (INIT_DEFERRABLE_WORK in current kernels), so a CPU
// that stays idle runs it only when something else wakes it; and a bind request that reaches the
// kernel late (the process stopped between computing the lifetime and sending it) stamps the
// address late by as much (the fence guard, a separate process, is not stopped with it).
//
// When the deadline is less than 1 s + kernelExpiryLateness(1), about 2.39 s, away, there is no
// such lifetime: a lifetime of 1 s could outlive the deadline, and 0 is the kernel's "permanent".
// The Manager then binds (or renews) the VIPs without a lifetime, logs it once, and the VIPs are
// guarded by the self-fencing timer of the daemon (the election Coordinator, at the deadline) and by
// the fence guard (a separate process, at the deadline or the moment the daemon dies); only if both
// processes are killed do the VIPs stay, until hacoord next starts on the node (its start-up
// Cleanup). It binds all the same: refusing would make every deadline that short unusable. With the
// defaults this is the common case: an etcd lease TTL of 2 s and a margin of 200 ms leave at most
// 1.8 s, and VRRP with 100 ms adverts 300 ms. A TTL of 3 s (2.7 s of validity at the default
// margin, less the keepalive's round trip) gets a 1 s lifetime per renewal, 5 s gets 2 s, 10 s gets
// 6 s; VRRP with 1 s adverts (3 s of validity from each advert) gets 1 s.
//
// Since the lifetime ends at least 1.25 s before the deadline, a renewal that comes more than L
// seconds after the previous one (a keepalive answered late, but within the deadline) can find the
// VIPs already removed by the kernel: the Manager sees the removal and binds them again at once
// (without a lifetime if the deadline is near by then), a loss of a few milliseconds.
//
// The lifetime ends by the deadline, which is earlier than the earliest instant another node can
// bind the VIPs. For etcd and ZooKeeper (fencing.Deadline) the deadline is S + TTL - margin, where
// S is when the master sent its last acknowledged keepalive; the store received it at R >= S and
// can expire the lease no sooner than R + TTL; another node then has to learn of the expiry, win
// and promote, at least one round trip e more. So another node binds at R + TTL + e >= deadline +
// margin + e. For VRRP the deadline is three advert intervals after the last advert sent, and a
// backup declares the master down no sooner than Master_Down_Interval (three intervals plus the
// skew time) after it received that advert. The lifetime does not count on this slack (margin + e,
// or the skew time): the Manager is told only the deadline, and the margin is the daemon's own
// allowance for its timer, GC pauses and the netlink round trip.
//
// A zero deadline binds permanently.
//
// # Conflict probe
//
// Before its first bind, Acquire asks the link whether another host still answers for the VIPs:
// for each IPv4 VIP an ARP probe (RFC 5227 section 2.1.1: a broadcast request from sender IP
// 0.0.0.0, so nobody's cache changes, for target the VIP), for each IPv6 VIP a duplicate address
// detection solicitation (RFC 4862 section 5.4.2: from ::, to the VIP's solicited-node group). It
// sends ConflictConfig.Probes rounds (default 3) Interval apart (20ms) and listens until Interval
// after the last round, or until every VIP is answered. An ARP packet whose sender is the VIP
// (the reply, or that host's own announcement) or a neighbour advertisement for the VIP is a
// conflict, logged as an error with the other host's MAC. The promote path is latency-critical:
// a probe nobody answers adds its window (60ms by default) to every failover, one that is
// answered ends within the round trip. The probe runs under Acquire's context and stops at the
// self-fencing deadline. Re-promoting while held (a new term) probes nothing: the VIPs on the
// interface are this node's. Another node's simultaneous probe is not taken for a conflict.
//
// What a conflict leads to is ConflictConfig.Policy:
//
//   - fence (the default): run the function given to OnConflict (hacoord: the fence hook, told
//     the VIP and MAC), then bind; if it fails, bind nothing and fail Acquire with ErrConflict, so
//     the node lets go and another may try. Without a fence hook it binds, and says so.
//   - bind: bind anyway, logging the conflict as an error.
//   - wait: bind the VIPs nobody else answers for, hold back the others (Manager.Conflicts, the
//     status file), probe them again every Retry (1s) and bind and announce each once nobody
//     answers. A held-back VIP is never announced.
//   - off: no probe.
//
// Why fence and not wait by default: the host still answering after a failover is, nearly always,
// the old master, alive but cut off from the store, whose kernel kept the VIPs (the daemon and its
// fence guard killed with the deadline too short for a kernel lifetime, or a box frozen
// mid-release). That is exactly when failing over matters and when fencing is the remedy; wait
// would leave the VIPs unserved until someone removes them by hand, and bind alone lets two hosts
// answer ARP for them until the old one is dealt with. With a fence hook (STONITH, a switch port,
// a hypervisor API) the operator gets that host fenced, by MAC, before the VIPs are taken; without
// one the failover proceeds and the error says which host to look at. Choose wait where an
// address collision is more likely a misconfiguration than a stale master (static addresses of
// other systems in the range), and off to save the window. Under VRRP preemption the old master
// can answer for a few milliseconds before it hears the new master's advert: expect a logged
// conflict there, and with wait a bind one Retry later.
//
// # An interface deleted and created again
//
// An interface that is deleted and created again under its name has a new index (a container's
// eth0 after `docker network disconnect` and `connect`); a Manager that kept the old index would
// fail every later bind with "no such device". None of the Manager's sockets is tied to the
// index: the packet sockets are bound to every interface of the namespace and name the interface
// in each send, and the netlink requests use the interface the last lookup by name found. The
// Manager looks it up again when a bind or delete fails with ENODEV (and tries once more), at
// every resync (subscription, refresh) and when the kernel reports a new link of that name; a new
// hardware address rebuilds the announcements. A VIP held meanwhile is bound on the new interface
// and announced as soon as it is up, and a fence guard that opened the old interface removes the
// VIPs from the new one.
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
