package etcd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/fencing"
)

// Config configures an Elector or an Observer. Only cmd reads files: TLS arrives as a *tls.Config.
type Config struct {
	// Endpoints are the etcd client endpoints (host:port or URLs). Required.
	Endpoints []string
	// DialTimeout bounds connecting, the lease grant and the observer's reads. Requests within a
	// lease's life are bounded by KeepaliveInterval instead.
	DialTimeout time.Duration
	// TLS, if set, is used for the client connections.
	TLS *tls.Config
	// Username and Password, if set, authenticate to etcd.
	Username, Password string
	// Client, if set, is the client the Elector or Observer uses, shared with others (see Client),
	// instead of one of its own to Endpoints; it does not close it. Endpoints must still be set
	// (the fence guard and the logs name them).
	Client *Client

	// Group names the election: keys live under /hacoord/<Group>/. Required; no '/'.
	Group string
	// Name is this candidate's node name, unique in the group. Required for an Elector.
	Name string
	// Record is the template of the master record this node publishes: Address and VIPs. The
	// backend fills Group, Node (= Name), Term and Since.
	Record election.Record

	// TTL is the lease TTL: a whole number of seconds, at least 1s. Default 2s.
	TTL time.Duration
	// Margin is taken off every deadline (see fencing.Deadline). 0 means fencing.DefaultMargin(TTL).
	Margin time.Duration
	// KeepaliveInterval is how often the elector renews its lease with a keepalive of its own. Each
	// attempt, and every other request within the lease's life (campaign reads, the master record,
	// resign, revoke), is bounded by it too: a member that does not answer within it is left for the
	// next endpoint. 0 means TTL/4. It must be below TTL-Margin.
	KeepaliveInterval time.Duration

	// StoreElectionTimeout is the store's election timeout (etcd's --election-timeout), if known. It
	// is used only to tell whether the TTL rides out a store leader change (see Timing); 0 infers an
	// upper bound from the shortest TTL the store grants.
	StoreElectionTimeout time.Duration

	// RetryMin and RetryMax bound the exponential backoff between attempts to reach etcd.
	RetryMin, RetryMax time.Duration

	// OnRTT, if set, is told the round trip of every answered lease keepalive (the metric
	// hacoord_store_rtt_seconds). It is called on the keepalive loop: it must be quick.
	OnRTT func(time.Duration)

	// Priority (1-254, higher wins; 0 means election.DefaultPriority), NoPreempt and PreemptDelay
	// are keepalived's priority, nopreempt and preempt_delay, published in the candidate value
	// (election.Candidate) and applied by every candidate's head rules (see planned.go).
	Priority     int
	NoPreempt    bool
	PreemptDelay time.Duration
}

// DefaultConfig returns the production defaults: TTL 2s (so Margin 200ms and keepalives every 500ms),
// DialTimeout 2s, retries from 100ms doubling to 5s. Endpoints, Group and Name must still be set.
func DefaultConfig() Config {
	return Config{
		DialTimeout: 2 * time.Second,
		TTL:         2 * time.Second,
		RetryMin:    100 * time.Millisecond,
		RetryMax:    5 * time.Second,
	}
}

// withDefaults fills the fields derived from TTL.
func (c Config) withDefaults() Config {
	if c.Margin == 0 {
		c.Margin = fencing.DefaultMargin(c.TTL)
	}
	if c.KeepaliveInterval == 0 {
		c.KeepaliveInterval = c.TTL / 4
	}
	return c
}

// validateObserver checks what an Observer needs.
func (c Config) validateObserver() error {
	var errs []error
	if len(c.Endpoints) == 0 {
		errs = append(errs, errors.New("no endpoints"))
	}
	if c.Group == "" || strings.Contains(c.Group, "/") {
		errs = append(errs, fmt.Errorf("group %q must be non-empty without '/'", c.Group))
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("dial timeout %v must be positive", c.DialTimeout))
	}
	if c.StoreElectionTimeout < 0 {
		errs = append(errs, fmt.Errorf("store election timeout %v must not be negative", c.StoreElectionTimeout))
	}
	if c.RetryMin <= 0 || c.RetryMax < c.RetryMin {
		errs = append(errs, fmt.Errorf("retry backoff %v..%v: need 0 < min <= max", c.RetryMin, c.RetryMax))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("etcd: config: %w", err)
	}
	return nil
}

// Validate checks c for an Elector, with the TTL-derived defaults applied.
func (c Config) Validate() error {
	var errs []error
	if err := c.validateObserver(); err != nil {
		errs = append(errs, err)
	}
	c = c.withDefaults()
	if c.Name == "" {
		errs = append(errs, errors.New("etcd: config: name is required"))
	}
	if c.Priority < 0 || c.Priority > 254 {
		errs = append(errs, fmt.Errorf("etcd: config: priority %d must be 1-254", c.Priority))
	}
	if c.PreemptDelay < 0 {
		errs = append(errs, fmt.Errorf("etcd: config: preempt delay %v must not be negative", c.PreemptDelay))
	}
	if c.Record.Node != "" && c.Record.Node != c.Name {
		errs = append(errs, fmt.Errorf("etcd: config: record node %q differs from name %q", c.Record.Node, c.Name))
	}
	if c.TTL < time.Second || c.TTL%time.Second != 0 {
		errs = append(errs, fmt.Errorf("etcd: config: ttl %v must be a whole number of seconds, at least 1s", c.TTL))
	} else {
		if err := fencing.CheckMargin(c.TTL, c.Margin); err != nil {
			errs = append(errs, fmt.Errorf("etcd: config: %w", err))
		}
		if c.KeepaliveInterval <= 0 || c.KeepaliveInterval >= c.TTL-c.Margin {
			errs = append(errs, fmt.Errorf("etcd: config: keepalive interval %v must be positive and below ttl-margin %v",
				c.KeepaliveInterval, c.TTL-c.Margin))
		}
	}
	return errors.Join(errs...)
}

// groupPrefix returns /hacoord/<group>.
func groupPrefix(group string) string { return "/hacoord/" + group }

// ElectionPrefix returns the prefix under which the candidates of group campaign
// (/hacoord/<group>/election, without the trailing slash concurrency.NewElection adds).
func ElectionPrefix(group string) string { return groupPrefix(group) + "/election" }

// LeaderKey returns the key holding the master record of group (/hacoord/<group>/leader).
func LeaderKey(group string) string { return groupPrefix(group) + "/leader" }

// TTLError is returned by Run when etcd grants a lease TTL other than the configured one, because
// the TTL is below the server's minimum (ceil(1.5 * its election timeout)). It is a configuration
// error: retrying does not help.
type TTLError struct {
	Requested, Granted time.Duration
}

func (e *TTLError) Error() string {
	return fmt.Sprintf("etcd: lease ttl %v requested but the server granted %v (its minimum lease TTL, "+
		"ceil(1.5 x election timeout)); configure ttl >= %v", e.Requested, e.Granted, e.Granted)
}
