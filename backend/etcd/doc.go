// Package etcd is an election.Elector over etcd's client/v3 (a lease, an election queue in the
// layout of concurrency.Election, a guarded master record), and an election.Observer of that record.
//
// # Key layout
//
// For a group G (Config.Group) the backend uses, under the fixed prefix /hacoord/G/:
//
//	/hacoord/G/election/<lease-id-hex>  one key per candidate, put under the candidate's lease (the
//	                                    layout of concurrency.Election, so etcdctl elect sees the
//	                                    same queue); value: election.Candidate as JSON (node,
//	                                    priority, preempt, preempt_delay, since; an older hacoord
//	                                    wrote the bare node name, which ParseCandidate still reads).
//	                                    The key with the lowest create revision is master, subject
//	                                    to the head rules (planned.go).
//	/hacoord/G/leader                   the master record: election.Record as JSON (Record.Marshal),
//	                                    written by the master under its own lease, in a transaction
//	                                    guarded by CreateRevision(its election key) == its term, so it
//	                                    is written only by the rightful master and disappears with the
//	                                    master's lease (resign, revoke, expiry).
//	/hacoord/G/transfer                 election.Transfer as JSON: written by a master that hands
//	                                    over (hacoord transfer, a preemption) in the transaction
//	                                    that ends its term, under its lease; until its Until only
//	                                    its To may take over. Deleted by the next master's claim.
//	/hacoord/G/released                 {"node","term"}: written, under its lease, by a master that
//	                                    gave up on purpose after demoting, in the transaction that
//	                                    ends its term; deleted by the next master's claim, which
//	                                    then knows the move was planned (State.Handover: no probe).
//	/hacoord/G/maintenance/<node>       election.Candidate with maintenance set, under the lease of
//	                                    a node taken out by hacoord maintenance on (not queued).
//
// Term, the fencing token, is the create revision of the master's election key: etcd revisions only
// grow, so every new master has a larger term.
//
// # Priorities and planned moves
//
// A candidate first in line becomes master only if no other queued node has a higher priority
// and no active transfer names another node; otherwise it defers (deletes its key and queues
// again at the back) or, for a transfer to a node not queued, holds back until the record's Until.
// A master hands over to a higher-priority node with preempt set once that node has been queued
// for its preempt delay. Resign, Transfer, SetMaintenance and preemption all demote first, then
// end the term in one transaction: one store round trip later the next candidate's watch fires,
// it reads the queue and writes its master record (two more), and binds without the conflict
// probe, since the released marker says nobody else holds the VIPs. planned.go has the details.
//
// # Store faults are not failovers
//
// One lease carries a node's candidacy for as long as etcd keeps it. What etcd does when its leader
// dies, a member goes silent or the quorum is lost for a while, is delay the answers; the lease
// lives on (a new leader extends every lease by its election timeout). So:
//
//   - A master whose deadline passes without an acknowledged renewal offers Fault (the VIPs go; the
//     Coordinator also fences on its own timer) but keeps its lease and its election key, and goes on
//     renewing. When a keepalive is answered again and a read shows its key still first under the
//     prefix (not a cached view), it offers Master again with the same term.
//   - Only the store's answer that the lease is gone (a keepalive answered with lease-not-found or
//     TTL <= 0) starts a new campaign, with a new lease.
//   - Only giving up on purpose resigns (Yield, SetEligible(false): after the consumer has acted on
//     the non-Master State, and retried until it succeeds) or revokes (Run's end: retried for at most
//     one TTL, after which the lease expires anyway).
//   - The client talks to one endpoint at a time and moves to the next after a request fails for
//     want of a working member (each is bounded by KeepaliveInterval) or the connection breaks, so a
//     renewal reaches a live member within one keepalive interval of a failed attempt; every watch
//     starts again on the new member.
//   - A broken watch (ErrCompacted after a reconnect, a move, a member restart, no leader) deposes no
//     one: it is followed by a read and a new watch from the read's revision. A waiting candidate
//     keeps its key and so its place in the queue (see campaign.go for why the elector runs its own
//     campaign rather than concurrency.Election's).
//
// # Timing
//
// The lease TTL is a whole number of seconds (etcd's unit) and etcd grants at least its own minimum,
// ceil(1.5 * election timeout); Run fails with a *TTLError when Config.TTL is below that minimum
// or the server grants another TTL than asked. A TTL under 3s is asked for with a second of
// headroom (expiry.go): the master's deadline follows Config.TTL, and a backup ends a dead master's
// term once the store shows it unrenewed for that long.
//
// The elector sends its own keepalive every KeepaliveInterval, one at a time on one long-lived LeaseKeepAlive stream (a stream per renewal cost most of an idle daemon's CPU), and,
// on every acknowledgement, moves the self-fencing deadline (State.ValidUntil) to
// fencing.Deadline(send time, Config.TTL, Margin): counted from the send time, so it always falls
// before the store can expire the lease. fencing.Deadline documents the worst-case timeline. With
// the defaults (TTL 2s, Margin 200ms, keepalive every 500ms) a master that loses etcd reports Fault
// at most 1.8s after its last acknowledged keepalive was sent, and a new master is elected no earlier
// than 2s after that keepalive reached the server (plus up to 500ms, the server's expiry scan).
//
// Two things shorten that wait without shortening the master's validity. The candidate first in
// line follows the master's lease and ends it itself, a few tens of milliseconds after the master's
// validity ran out instead of at the store's next scan: with a TTL of 3s or more once the store
// shows the lease expired, below 3s once it shows the lease's headroom reached (expiry.go says how,
// and what makes it safe: the store reports the remaining time in whole seconds). And when a daemon
// dies, its fence guard, told of every lease (Elector.OnLease), revokes it once the VIPs are gone
// (RevokeLease, through the JSON gateway): the next candidate takes over at once.
//
// A store leader change leaves renewals unanswered for up to two election timeouts; the master rides
// it out without letting go when TTL - Margin - KeepaliveInterval exceeds that (Timing.RidesOut).
// At start-up the elector learns the store's minimum TTL (LearnTiming), and warns once, naming the
// TTL that would (Timing.RideOutTTL), when its own cannot: with etcd's defaults (election timeout
// 1s) that is 4s, or 5s when the timeout is only inferred.
package etcd
