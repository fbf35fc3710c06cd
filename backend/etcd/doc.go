// Package etcd is an election.Elector over etcd's client/v3 concurrency Session and Election, and an
// election.Observer of the master record it publishes.
//
// # Key layout
//
// For a group G (Config.Group) the backend uses, under the fixed prefix /hacoord/G/:
//
//	/hacoord/G/election/<lease-id-hex>  one key per candidate, created by concurrency.Election.Campaign
//	                                    under the candidate's lease; value: the candidate's name. The
//	                                    key with the lowest create revision is master.
//	/hacoord/G/leader                   the master record: election.Record as JSON (Record.Marshal),
//	                                    written by the master under its own lease, in a transaction
//	                                    guarded by CreateRevision(its election key) == its term, so it
//	                                    is written only by the rightful master and disappears with the
//	                                    master's lease (resign, revoke, expiry).
//
// Term, the fencing token, is the create revision of the master's election key (Election.Rev): etcd
// revisions only grow, so every new master has a larger term.
//
// # Timing
//
// The lease TTL is a whole number of seconds (etcd's unit) and etcd grants at least its own minimum,
// ceil(1.5 * election timeout); Run fails with a *TTLError when the server grants a TTL other than
// Config.TTL. The elector sends its own KeepAliveOnce every KeepaliveInterval and, on every
// acknowledgement, moves the self-fencing deadline (State.ValidUntil) to
// fencing.Deadline(send time, granted TTL, Margin): counted from the send time, so it always falls
// before the store can expire the lease. fencing.Deadline documents the worst-case timeline. With
// the defaults (TTL 2s, Margin 200ms, keepalive every 500ms) a master that loses etcd reports Fault
// at most 1.8s after its last acknowledged keepalive was sent, and a new master is elected no earlier
// than 2s after that keepalive reached the server (plus up to 500ms, the server's expiry scan).
//
// A master that resigns (Run's ctx cancelled, Yield, SetEligible(false)) deletes its election key,
// so the next candidate is elected at once, not after a TTL.
package etcd
