package zk

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/fencing"
)

// Config configures an Elector (every field) or an Observer (Servers, SessionTimeout, Auth, Group,
// ConnectTimeout, Backoff).
type Config struct {
	// Servers is the ensemble: host:port entries. As in a ZooKeeper connection string, the last entry
	// may carry a chroot suffix ("zk3:2181/ha"): every path then lives under /ha. An entry may also be
	// a whole connection string ("zk1:2181,zk2:2181/ha"). A missing port means 2181.
	Servers []string
	// SessionTimeout is the session timeout asked of the server (--zk-session-timeout). The server
	// clamps it to its [minSessionTimeout, maxSessionTimeout] (by default 2 and 20 ticks); the
	// negotiated value is the one the self-fencing deadline uses. Default 4s.
	SessionTimeout time.Duration
	// Auth is "user:password" for ZooKeeper's digest scheme (--zk-auth), or empty. With it, the
	// znodes this backend creates carry an ACL that only this identity can change, and everyone can
	// read (see the package comment).
	Auth string
	// Group names the election; znodes live under /hacoord/<Group>. One path element.
	Group string
	// Name is this node's name, published in the master record. Required for an Elector.
	Name string
	// Record is the template of the master record this node publishes when it wins: Address and VIPs
	// are taken as they are; Group and Node default to Group and Name (and must match them when
	// set); Term and Since are filled in by the backend.
	Record election.Record
	// Margin is subtracted from the negotiated session timeout to give the self-fencing deadline
	// (fencing.Deadline). Zero means fencing.DefaultMargin(negotiated timeout). A margin that would
	// leave no validity for the negotiated timeout is replaced by the default, with a warning.
	Margin time.Duration
	// ConnectTimeout is how long a connection attempt may take to establish a session before the
	// node reports Fault and starts over. Default: SessionTimeout.
	ConnectTimeout time.Duration
	// ResignTimeout bounds the clean-up on stop (delete the candidate and master znodes, close the
	// session). Default 2s.
	ResignTimeout time.Duration
	// Backoff paces reconnects after a failed or lost session, retries after errors, and a yielded
	// master's return to the election.
	Backoff Backoff
	// OnRTT, if set, is told the round trip of every answered liveness Sync (the metric
	// hacoord_store_rtt_seconds). It is called on the session's loop: it must be quick.
	OnRTT func(time.Duration)

	// Priority is this node's configured priority (--priority), 1-254, higher wins; 0 means
	// election.DefaultPriority (100). Track-check weights move it at run time (SetPriority). It is
	// published in the candidate znode (election.Candidate).
	Priority int
	// NoPreempt is keepalived's nopreempt (--nopreempt): a lower-priority master keeps mastership
	// when this node joins; this node only wins an election that is held anyway.
	NoPreempt bool
	// PreemptDelay is keepalived's preempt_delay (--preempt-delay): a lower-priority master hands
	// over to this node only once it has been queued this long. 0-1000s; needs preemption.
	PreemptDelay time.Duration
	// TransferTimeout bounds a planned move (Resign, a preemption, SetMaintenance on a master):
	// other candidates hold back for the named target until then (Transfer takes its own timeout).
	// Default: twice the session timeout, so a target that dies meanwhile is gone from the queue
	// (its session expired) before the others give up waiting.
	TransferTimeout time.Duration
}

// MaxPreemptDelay bounds Config.PreemptDelay (keepalived's TIMER_MAX_SEC).
const MaxPreemptDelay = 1000 * time.Second

// Backoff is an exponential backoff: Initial, doubling up to Max, with jitter.
type Backoff struct {
	Initial, Max time.Duration
}

// DefaultConfig returns the production defaults: a 4s session (the daemon's --zk-session-timeout
// default), deadline margin derived from the negotiated timeout, reconnect backoff 250ms..5s.
func DefaultConfig() Config {
	return Config{
		SessionTimeout: 4 * time.Second,
		ConnectTimeout: 4 * time.Second,
		ResignTimeout:  2 * time.Second,
		Backoff:        Backoff{Initial: 250 * time.Millisecond, Max: 5 * time.Second},
	}
}

// LocalConfig is DefaultConfig for a ZooKeeper on loopback with a short tick (internal/zktest): a 1s
// session, so expiry and failover tests take about a second; backoff 50ms..1s.
func LocalConfig() Config {
	c := DefaultConfig()
	c.SessionTimeout = time.Second
	c.ConnectTimeout = 2 * time.Second
	c.ResignTimeout = time.Second
	c.Backoff = Backoff{Initial: 50 * time.Millisecond, Max: time.Second}
	return c
}

// withDefaults fills zero durations from DefaultConfig (ConnectTimeout from SessionTimeout).
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.SessionTimeout == 0 {
		c.SessionTimeout = d.SessionTimeout
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = c.SessionTimeout
	}
	if c.ResignTimeout == 0 {
		c.ResignTimeout = d.ResignTimeout
	}
	if c.Backoff.Initial == 0 {
		c.Backoff.Initial = d.Backoff.Initial
	}
	if c.Backoff.Max == 0 {
		c.Backoff.Max = max(d.Backoff.Max, c.Backoff.Initial)
	}
	if c.Priority == 0 {
		c.Priority = election.DefaultPriority
	}
	if c.TransferTimeout == 0 {
		c.TransferTimeout = 2 * c.SessionTimeout
	}
	return c
}

// Validate reports the first problem that makes c unusable for an Elector.
func (c Config) Validate() error {
	if err := c.validateConn(); err != nil {
		return err
	}
	if c.Name == "" {
		return errors.New("zk: config: Name is required")
	}
	if c.Record.Group != "" && c.Record.Group != c.Group {
		return fmt.Errorf("zk: config: Record.Group %q differs from Group %q", c.Record.Group, c.Group)
	}
	if c.Record.Node != "" && c.Record.Node != c.Name {
		return fmt.Errorf("zk: config: Record.Node %q differs from Name %q", c.Record.Node, c.Name)
	}
	if c.Priority < 0 || c.Priority > 254 { // 0: election.DefaultPriority
		return fmt.Errorf("zk: config: Priority %d out of range 1-254", c.Priority)
	}
	if c.PreemptDelay < 0 || c.PreemptDelay > MaxPreemptDelay {
		return fmt.Errorf("zk: config: PreemptDelay %v out of range 0-%v", c.PreemptDelay, MaxPreemptDelay)
	}
	if c.PreemptDelay > 0 && c.NoPreempt {
		return fmt.Errorf("zk: config: PreemptDelay %v needs preemption (NoPreempt is set)", c.PreemptDelay)
	}
	if c.TransferTimeout < 0 {
		return fmt.Errorf("zk: config: TransferTimeout %v is negative", c.TransferTimeout)
	}
	if c.Margin < 0 {
		return fmt.Errorf("zk: config: Margin %v is negative", c.Margin)
	}
	if c.Margin > 0 {
		if err := fencing.CheckMargin(c.SessionTimeout, c.Margin); err != nil {
			return fmt.Errorf("zk: config: %w", err)
		}
	}
	return nil
}

// validateConn checks what an Observer needs too.
func (c Config) validateConn() error {
	if _, _, err := parseServers(c.Servers); err != nil {
		return err
	}
	if c.SessionTimeout <= 0 {
		return fmt.Errorf("zk: config: SessionTimeout %v must be positive", c.SessionTimeout)
	}
	if c.SessionTimeout < 10*time.Millisecond || c.SessionTimeout > 24*time.Hour {
		return fmt.Errorf("zk: config: SessionTimeout %v out of range", c.SessionTimeout)
	}
	if c.Auth != "" {
		if u, p, ok := strings.Cut(c.Auth, ":"); !ok || u == "" || p == "" {
			return errors.New("zk: config: Auth: want user:password")
		}
	}
	if err := checkGroup(c.Group); err != nil {
		return err
	}
	if c.ConnectTimeout < 0 || c.ResignTimeout < 0 || c.Backoff.Initial < 0 || c.Backoff.Max < 0 {
		return errors.New("zk: config: negative timeout or backoff")
	}
	if c.Backoff.Max != 0 && c.Backoff.Max < c.Backoff.Initial {
		return fmt.Errorf("zk: config: Backoff.Max %v below Backoff.Initial %v", c.Backoff.Max, c.Backoff.Initial)
	}
	return nil
}

func checkGroup(g string) error {
	switch {
	case g == "":
		return errors.New("zk: config: Group is required")
	case g == "." || g == ".." || g == "zookeeper":
		return fmt.Errorf("zk: config: Group %q is reserved", g)
	case strings.ContainsAny(g, "/\x00"):
		return fmt.Errorf("zk: config: Group %q: must be one path element (no '/')", g)
	}
	for _, r := range g {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("zk: config: Group %q: control character", g)
		}
	}
	return nil
}

// parseServers splits the connection string(s) into host:port addresses and the chroot ("" for
// none). Only the last entry may carry the chroot, as in ZooKeeper's own clients.
func parseServers(entries []string) (servers []string, chroot string, err error) {
	var all []string
	for _, e := range entries {
		for _, s := range strings.Split(e, ",") {
			if s = strings.TrimSpace(s); s != "" {
				all = append(all, s)
			}
		}
	}
	if len(all) == 0 {
		return nil, "", errors.New("zk: config: Servers is empty")
	}
	for i, s := range all {
		hostport, root, hasRoot := strings.Cut(s, "/")
		if hasRoot {
			if i != len(all)-1 {
				return nil, "", fmt.Errorf("zk: config: server %q: only the last server may carry a chroot", s)
			}
			chroot, err = cleanChroot("/" + root)
			if err != nil {
				return nil, "", err
			}
		}
		if hostport == "" {
			return nil, "", fmt.Errorf("zk: config: server %q: missing host", s)
		}
		if _, _, err := net.SplitHostPort(hostport); err != nil {
			// A bare host (or bracketed IPv6 address) gets the default port.
			h := strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
			if strings.ContainsAny(h, "[]") || (strings.Contains(h, ":") && !strings.HasPrefix(hostport, "[")) {
				return nil, "", fmt.Errorf("zk: config: server %q: %v", s, err)
			}
			hostport = net.JoinHostPort(h, "2181")
		}
		servers = append(servers, hostport)
	}
	return servers, chroot, nil
}

func cleanChroot(p string) (string, error) {
	if p == "/" {
		return "", nil
	}
	if strings.HasSuffix(p, "/") || strings.Contains(p, "//") {
		return "", fmt.Errorf("zk: config: chroot %q: want /path without a trailing or double slash", p)
	}
	for _, el := range strings.Split(p[1:], "/") {
		if el == "." || el == ".." {
			return "", fmt.Errorf("zk: config: chroot %q: bad element %q", p, el)
		}
	}
	return p, nil
}

// paths are the znodes of one group (chroot applied).
type paths struct {
	chroot   string // "" or /path
	root     string // <chroot>/hacoord
	group    string // <root>/<group>
	election string // <group>/election: candidates, ephemeral sequential
	leader   string // <group>/leader: the master record, ephemeral
	transfer string // <group>/transfer: a planned move's election.Transfer, ephemeral
	released string // <group>/released: left by a master that gave up after demoting, ephemeral
	maint    string // <group>/maintenance: one ephemeral child per node in maintenance
}

func newPaths(chroot, group string) paths {
	root := chroot + "/hacoord"
	g := root + "/" + group
	return paths{chroot: chroot, root: root, group: g, election: g + "/election", leader: g + "/leader",
		transfer: g + "/transfer", released: g + "/released", maint: g + "/maintenance"}
}

// acls are the ACLs put on created znodes.
type acls struct {
	shared []zk.ACL // chroot elements and /hacoord, shared by groups
	group  []zk.ACL // the group's znodes
}

// newACLs: without Auth everything is open (world:anyone all). With Auth, the group's znodes can be
// changed only by that digest identity and read by anyone; the shared parents also let anyone create
// children, so groups with other identities can live beside ours.
func newACLs(auth string) acls {
	if auth == "" {
		open := zk.WorldACL(zk.PermAll)
		return acls{shared: open, group: open}
	}
	user, pass, _ := strings.Cut(auth, ":")
	mine := zk.DigestACL(zk.PermAll, user, pass)
	return acls{
		shared: append(append([]zk.ACL{}, mine...), zk.WorldACL(zk.PermRead|zk.PermCreate)...),
		group:  append(append([]zk.ACL{}, mine...), zk.WorldACL(zk.PermRead)...),
	}
}

// authUser returns the user part of auth, for messages ("" when none).
func authUser(auth string) string {
	u, _, _ := strings.Cut(auth, ":")
	return u
}
