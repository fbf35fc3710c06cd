package keepalivedconf

import (
	"net/netip"
	"time"
)

// Opt is a value a keyword set, with where it was set. The zero Opt is "not in the file".
type Opt[T any] struct {
	V       T
	Set     bool
	Pos     Pos
	Keyword string
}

func set[T any](n *Node, v T) Opt[T] { return Opt[T]{V: v, Set: true, Pos: n.Pos, Keyword: n.Keyword} }

// Or returns the value, or def when it was not set.
func (o Opt[T]) Or(def T) T {
	if o.Set {
		return o.V
	}
	return def
}

// Keepalived is what a keepalived.conf configures, as keepalived's parser reads it: the values
// the file gives (with their positions), keepalived's parse-time corrections applied (a priority
// out of range becomes 100, an unknown state BACKUP, ...). Defaults that keepalived derives when it
// completes the configuration are left to Convert, which writes them out explicitly.
type Keepalived struct {
	RouterID    Opt[string]
	VRRPVersion Opt[int]
	GARP        GARP // global_defs vrrp_garp_*: the default of every instance
	MinGARP     Opt[bool]
	SyncDaemon  *SyncDaemon // lvs_sync_daemon (global_defs) or lvs_sync_daemon_interface (vrrp_instance)

	Scripts        []*Script
	Instances      []*Instance
	SyncGroups     []*SyncGroup
	VirtualServers []*VirtualServer

	// Unmapped are the keywords keepalived knows that hacoord has no counterpart for, each with
	// the reason; Convert reports them as dropped.
	Unmapped []Diagnostic
}

// GARP is keepalived's gratuitous ARP schedule (vrrp_garp_* globally, garp_* per instance).
type GARP struct {
	Delay           Opt[time.Duration] // garp_master_delay: second set after becoming master; 0: none
	Repeat          Opt[int]           // garp_master_repeat: messages per set
	Refresh         Opt[time.Duration] // garp_master_refresh: period while master; 0: none
	RefreshRepeat   Opt[int]           // garp_master_refresh_repeat: messages per refresh
	Interval        Opt[time.Duration] // vrrp_garp_interval: gap between messages
	GNAInterval     Opt[time.Duration] // vrrp_gna_interval: same for IPv6 NA
	LowerPrioDelay  Opt[time.Duration] // garp_lower_prio_delay
	LowerPrioRepeat Opt[int]           // garp_lower_prio_repeat
}

// Script is a vrrp_script block.
type Script struct {
	Name     string
	Pos      Pos
	Argv     Opt[[]string] // script, split as keepalived runs it (no shell)
	Interval Opt[time.Duration]
	Timeout  Opt[time.Duration]
	Weight   Opt[int]
	Reverse  bool
	Rise     Opt[int]
	Fall     Opt[int]
	InitFail Opt[bool]
	used     bool
}

// TrackScript is one line of a track_script block.
type TrackScript struct {
	Name    string
	Pos     Pos
	Weight  Opt[int] // unset: the script's weight
	Reverse Opt[bool]
	script  *Script
}

// TrackInterface is one line of a track_interface block.
type TrackInterface struct {
	Name    string
	Pos     Pos
	Weight  int
	Reverse bool
}

// Hook is a notify script keyword (notify, notify_master, ...).
type Hook struct {
	Keyword string
	Pos     Pos
	Argv    []string
	User    []string // keepalived's optional username [groupname]
}

// VIP is one line of virtual_ipaddress (or virtual_ipaddress_excluded).
type VIP struct {
	Prefix   netip.Prefix
	Dev      string
	Label    string
	Pos      Pos
	Excluded bool
	// Options are the ip-address options hacoord has no counterpart for (brd, scope, ...).
	Options []string
}

// UnicastPeer is one line of unicast_peer.
type UnicastPeer struct {
	Addr netip.Addr
	Pos  Pos
	TTL  bool // min_ttl / max_ttl given
}

// Instance is a vrrp_instance block.
type Instance struct {
	Name string
	Pos  Pos
	// IPv6 is the instance's address family, as keepalived deduces it: from its first unicast
	// peer or, without one, its first VIP (virtual_ipaddress only).
	IPv6      bool
	familySet bool

	State        Opt[string] // MASTER or BACKUP
	Interface    Opt[string]
	VRID         Opt[int]
	Priority     Opt[int]
	AdvertInt    Opt[time.Duration]
	Version      Opt[int]
	NoPreempt    Opt[bool]
	PreemptDelay Opt[time.Duration]
	Auth         Opt[bool] // the authentication block
	AuthType     Opt[string]
	AuthPass     Opt[string]
	UnicastSrc   Opt[netip.Addr]
	UnicastPeer  Opt[bool] // the unicast_peer block
	UnicastPeers []UnicastPeer
	VIPs         []VIP // virtual_ipaddress then virtual_ipaddress_excluded, in file order
	TrackScripts []TrackScript
	TrackIfaces  []TrackInterface
	// DontTrackPrimary is dont_track_primary: without it keepalived tracks the instance's own
	// interface (down: FAULT).
	DontTrackPrimary Opt[bool]
	Hooks            []Hook
	GARP             GARP

	Sync *SyncGroup
}

// SyncGroup is a vrrp_sync_group block.
type SyncGroup struct {
	Name           string
	Pos            Pos
	Members        []*Instance // the members that exist, each in one group only
	TrackScripts   []TrackScript
	TrackIfaces    []TrackInterface
	TrackingWeight bool // sync_group_tracking_weight
	memberNames    []Opt[string]
}

// CheckSettings are the checker settings a virtual server and a real server give their checkers
// as defaults (keepalived: "the virtual server setting is the default for real servers, and the
// real server setting is the default for checkers").
type CheckSettings struct {
	ConnectTimeout   Opt[time.Duration]
	Retry            Opt[int]
	DelayBeforeRetry Opt[time.Duration]
	DelayLoop        Opt[time.Duration]
	Warmup           Opt[time.Duration]
	Alpha            Opt[bool]
	VirtualHost      Opt[string]
}

// VirtualServer is a virtual_server block.
type VirtualServer struct {
	Pos    Pos
	Addr   netip.Addr // address service
	Port   uint16
	FWMark Opt[uint32] // firewall-mark service

	Protocol    Opt[string]
	LBAlgo      Opt[string]
	LBKind      Opt[string]
	Persistence Opt[time.Duration]
	Ops         Opt[bool]
	IPFamily    Opt[string]
	Quorum      Opt[uint32]
	Hysteresis  Opt[uint32]
	Inhibit     Opt[bool]
	Weight      Opt[uint32] // default real server weight
	Check       CheckSettings
	Sorry       *SorryServer
	RealServers []*RealServer
}

// SorryServer is the sorry_server line and its companions.
type SorryServer struct {
	Pos    Pos
	Addr   netip.Addr
	Port   uint16
	LBKind Opt[string]
}

// RealServer is a real_server block.
type RealServer struct {
	Pos      Pos
	Addr     netip.Addr
	Port     uint16
	Weight   Opt[uint32]
	LBKind   Opt[string]
	Inhibit  Opt[bool]
	Check    CheckSettings
	Checkers []*Checker
}

// Checker is a TCP_CHECK, HTTP_GET, SSL_GET or MISC_CHECK block.
type Checker struct {
	Kind        string
	Pos         Pos
	ConnectIP   Opt[netip.Addr]
	ConnectPort Opt[uint16]
	Check       CheckSettings
	URLs        []URL
	MiscPath    Opt[[]string]
	MiscTimeout Opt[time.Duration]
	MiscDynamic Opt[bool]
}

// URL is a url block of HTTP_GET / SSL_GET.
type URL struct {
	Pos         Pos
	Path        Opt[string]
	Digest      Opt[string]
	Status      Opt[[]statusRange] // unset: 200-299
	VirtualHost Opt[string]
}

type statusRange struct{ lo, hi int }
