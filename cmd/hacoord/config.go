package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hacoord/hacoord/ipvs"
)

// Duration is a time.Duration that reads "2s" or "1500ms" from YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration like 2s: %w", n.Line, err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Settings is everything hacoord reads from its YAML file and flags. Flags override the file. cmd
// turns it into each package's own Config; no other package sees it.
type Settings struct {
	Backend   string   `yaml:"backend"`
	Group     string   `yaml:"group"`
	Name      string   `yaml:"name"`
	Interface string   `yaml:"interface"`
	Address   string   `yaml:"address,omitempty"`
	VIPs      []string `yaml:"vips"`
	VIPLabel  string   `yaml:"vip_label,omitempty"`
	// VIPLifetime puts a kernel lifetime on bound VIPs, renewed with every lease renewal, so a
	// SIGKILLed or stopped daemon's VIP is removed by the kernel shortly after its fencing deadline.
	VIPLifetime *bool `yaml:"vip_lifetime,omitempty"`
	// FenceGuard runs the fence guard, a watchdog process that removes the VIPs the moment the
	// daemon dies and when a stopped daemon's deadline passes (fencing.Guard). Default true.
	FenceGuard bool `yaml:"fence_guard"`

	// Endpoints are the store's servers: etcd URLs, or ZooKeeper host:port (optionally with a chroot
	// suffix on the last one, as ZooKeeper connection strings allow).
	Endpoints []string `yaml:"endpoints"`

	LeaseTTL    Duration `yaml:"lease_ttl"`
	FenceMargin Duration `yaml:"fence_margin,omitempty"`

	Etcd     EtcdSettings     `yaml:"etcd"`
	ZK       ZKSettings       `yaml:"zookeeper"`
	VRRP     VRRPSettings     `yaml:"vrrp"`
	Announce AnnounceSettings `yaml:"announce"`
	Hooks    HookSettings     `yaml:"hooks"`
	Log      LogSettings      `yaml:"log"`

	// TrackScripts and TrackInterfaces gate candidacy on this node's health (keepalived's
	// vrrp_script and track_interface). --track-script / --track-interface add to them.
	TrackScripts    []TrackScript    `yaml:"track_scripts,omitempty"`
	TrackInterfaces []TrackInterface `yaml:"track_interfaces,omitempty"`
	trackScriptArgs []string
	trackIfaceArgs  []string

	// IPVS holds keepalived's virtual_server blocks (virtual_servers: at the top level of the file).
	IPVS ipvs.Config `yaml:",inline"`

	// StatusFile is where the daemon keeps a JSON snapshot of its state for `hacoord status`;
	// default /run/hacoord/<group>.<name>.json.
	StatusFile string `yaml:"status_file,omitempty"`
}

// EtcdSettings are the etcd connection settings, spelled as etcdctl spells its flags.
type EtcdSettings struct {
	CACert   string `yaml:"cacert,omitempty"`
	Cert     string `yaml:"cert,omitempty"`
	Key      string `yaml:"key,omitempty"`
	User     string `yaml:"user,omitempty"`
	Password string `yaml:"password,omitempty"`
}

// ZKSettings are the ZooKeeper connection settings.
type ZKSettings struct {
	Auth           string   `yaml:"auth,omitempty"`
	SessionTimeout Duration `yaml:"session_timeout,omitempty"`
}

// VRRPSettings configure the native VRRP backend.
type VRRPSettings struct {
	VRID         int      `yaml:"vrid"`
	Priority     int      `yaml:"priority"`
	AdvertInt    Duration `yaml:"advert_int"`
	NoPreempt    bool     `yaml:"nopreempt,omitempty"`
	PreemptDelay Duration `yaml:"preempt_delay,omitempty"`
	UnicastPeers []string `yaml:"unicast_peers,omitempty"`
	Version      int      `yaml:"version"`
	AuthPass     string   `yaml:"auth_pass,omitempty"`
}

// AnnounceSettings configure gratuitous ARP / unsolicited NA.
type AnnounceSettings struct {
	Count    int      `yaml:"count"`
	Repeat   int      `yaml:"repeat"`
	Interval Duration `yaml:"interval"`
	Refresh  Duration `yaml:"refresh"`
}

// HookSettings name programs run on transitions.
type HookSettings struct {
	// Fence runs before the node binds anything as master; a non-zero exit refuses mastership.
	Fence string `yaml:"fence,omitempty"`
	// Notify runs after every transition (master, backup, fault), like keepalived's notify.
	Notify  string   `yaml:"notify,omitempty"`
	Timeout Duration `yaml:"timeout,omitempty"`
}

// LogSettings configure the logger.
type LogSettings struct {
	Format string `yaml:"format"`
	Level  string `yaml:"level"`
}

// defaultSettings are the values used where neither file nor flag says otherwise.
func defaultSettings() Settings {
	host, _ := os.Hostname()
	return Settings{
		Backend:    "etcd",
		FenceGuard: true,
		Group:      "default",
		Name:       host,
		LeaseTTL:   Duration(2 * time.Second),
		ZK:         ZKSettings{SessionTimeout: Duration(4 * time.Second)},
		VRRP:       VRRPSettings{Priority: 100, AdvertInt: Duration(time.Second), Version: 3},
		Announce:   AnnounceSettings{Count: 3, Repeat: 3, Interval: Duration(1100 * time.Millisecond), Refresh: Duration(10 * time.Second)},
		Hooks:      HookSettings{Timeout: Duration(5 * time.Second)},
		Log:        LogSettings{Format: "console", Level: "info"},
		IPVS:       ipvs.DefaultConfig(),
	}
}

// loadFile reads a YAML settings file over s. Unknown keys are errors: a typo must not silently
// leave a default in place.
func loadFile(path string, s *Settings) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(s); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %s", path, nameKeys(b, err.Error()))
	}
	return nil
}

var lineRef = regexp.MustCompile(`line (\d+)`)

// nameKeys adds to every "line N" in msg the YAML key at that line of doc ("line 4 (lease_ttl)"), so
// an error names the setting, not only where it is.
func nameKeys(doc []byte, msg string) string {
	var root yaml.Node
	if yaml.Unmarshal(doc, &root) != nil {
		return msg
	}
	return lineRef.ReplaceAllStringFunc(msg, func(m string) string {
		n, _ := strconv.Atoi(m[len("line "):])
		if k := keyAt(&root, n, ""); k != "" {
			return m + " (" + k + ")"
		}
		return m
	})
}

// keyAt returns the dotted path of the mapping key on line (or whose value starts there) under n.
func keyAt(n *yaml.Node, line int, prefix string) string {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for i, c := range n.Content {
			p := prefix
			if n.Kind == yaml.SequenceNode {
				p = fmt.Sprintf("%s[%d]", prefix, i)
			}
			if k := keyAt(c, line, p); k != "" {
				return k
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := k.Value
			if prefix != "" {
				path = prefix + "." + k.Value
			}
			if sub := keyAt(v, line, path); sub != "" {
				return sub
			}
			if k.Line == line || v.Line == line {
				return path
			}
		}
	}
	return ""
}

// configError is a usage or configuration error: the process exits with status 2.
type configError struct{ error }

func configErrorf(format string, args ...any) error {
	return configError{fmt.Errorf(format, args...)}
}

// vipPrefixes parses the configured VIPs.
func (s Settings) vipPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	seen := map[netip.Addr]bool{}
	for _, v := range s.VIPs {
		p, err := netip.ParsePrefix(strings.TrimSpace(v))
		if err != nil {
			if a, aerr := netip.ParseAddr(strings.TrimSpace(v)); aerr == nil {
				p = netip.PrefixFrom(a, a.BitLen()) // a bare address is a host route, as keepalived does
			} else {
				return nil, configErrorf("--vip %q: want an address with a prefix length, like 10.0.0.100/24", v)
			}
		}
		if seen[p.Addr()] {
			return nil, configErrorf("--vip %s: listed twice", p)
		}
		seen[p.Addr()] = true
		out = append(out, p)
	}
	return out, nil
}

// validate checks what can be checked without touching the system or the network.
func (s Settings) validate() error {
	if s.Name == "" {
		return configErrorf("--name: empty (and the host name is unknown)")
	}
	if err := s.validateStore(); err != nil {
		return err
	}
	if s.Interface == "" {
		return configErrorf("--interface: required (the interface that carries the VIPs)")
	}
	if len(s.VIPs) == 0 {
		return configErrorf("--vip: at least one VIP is required")
	}
	if _, err := s.vipPrefixes(); err != nil {
		return err
	}
	if s.Address != "" {
		if _, err := netip.ParseAddr(s.Address); err != nil {
			return configErrorf("--address %q: not an IP address", s.Address)
		}
	}
	if s.Backend != "vrrp" {
		if s.LeaseTTL < Duration(time.Second) {
			return configErrorf("--lease-ttl %v: at least 1s (etcd grants leases in whole seconds)", time.Duration(s.LeaseTTL))
		}
		if s.Backend == "etcd" && time.Duration(s.LeaseTTL)%time.Second != 0 {
			return configErrorf("--lease-ttl %v: etcd grants leases in whole seconds", time.Duration(s.LeaseTTL))
		}
	}
	if s.Announce.Count < 1 {
		return configErrorf("--garp-count %d: at least 1", s.Announce.Count)
	}
	if s.Announce.Repeat < 0 {
		return configErrorf("--garp-repeat %d: not negative", s.Announce.Repeat)
	}
	if s.Announce.Repeat > 0 && s.Announce.Interval <= Duration(time.Second) {
		return configErrorf("--garp-interval %v: must be more than 1s (Linux ignores a second ARP update within its 1s locktime)", time.Duration(s.Announce.Interval))
	}
	if s.Announce.Refresh < 0 {
		return configErrorf("--garp-refresh %v: not negative (0 turns it off)", time.Duration(s.Announce.Refresh))
	}
	if err := s.validateTracks(); err != nil {
		return err
	}
	if err := s.IPVS.Validate(); err != nil {
		return configError{err}
	}
	return nil
}

// validateStore checks the settings that say which store to reach (the daemon's and watch's).
func (s Settings) validateStore() error {
	if s.Group == "" || strings.ContainsAny(s.Group, "/ \t\n") {
		return configErrorf("--group %q: want a non-empty name without '/' or spaces", s.Group)
	}
	switch s.Backend {
	case "etcd":
		if len(s.Endpoints) == 0 {
			return configErrorf("--endpoints: required with --backend etcd (e.g. http://10.0.0.1:2379)")
		}
		for _, e := range s.Endpoints {
			if !strings.Contains(e, "://") && !strings.Contains(e, ":") {
				return configErrorf("--endpoints %q: want scheme://host:port or host:port", e)
			}
		}
		if (s.Etcd.Cert == "") != (s.Etcd.Key == "") {
			return configErrorf("--cert and --key go together")
		}
		if s.Etcd.Password != "" && s.Etcd.User == "" {
			return configErrorf("--password needs --user")
		}
	case "zk":
		if len(s.Endpoints) == 0 {
			return configErrorf("--endpoints: required with --backend zk (e.g. zk1:2181,zk2:2181)")
		}
		if s.ZK.Auth != "" && !strings.Contains(s.ZK.Auth, ":") {
			return configErrorf("--zk-auth: want user:password")
		}
		if s.ZK.SessionTimeout <= 0 {
			return configErrorf("--zk-session-timeout %v: must be positive", time.Duration(s.ZK.SessionTimeout))
		}
	case "vrrp":
		// The vrrp package validates its own settings.
	default:
		return configErrorf("--backend %q: want etcd, zk or vrrp", s.Backend)
	}
	switch s.Log.Format {
	case "console", "json":
	default:
		return configErrorf("--log-format %q: want console or json", s.Log.Format)
	}
	switch s.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return configErrorf("--log-level %q: want debug, info, warn or error", s.Log.Level)
	}
	return nil
}

// normalize fills derived values: etcdctl's --user user:password form, trimmed lists.
func (s *Settings) normalize() {
	if u, p, ok := strings.Cut(s.Etcd.User, ":"); ok && s.Etcd.Password == "" {
		s.Etcd.User, s.Etcd.Password = u, p
	}
	trim := func(in []string) []string {
		var out []string
		for _, v := range in {
			if v = strings.TrimSpace(v); v != "" {
				out = append(out, v)
			}
		}
		return out
	}
	s.Endpoints, s.VIPs, s.VRRP.UnicastPeers = trim(s.Endpoints), trim(s.VIPs), trim(s.VRRP.UnicastPeers)
	for i, a := range trim(s.trackScriptArgs) {
		s.TrackScripts = append(s.TrackScripts, TrackScript{Name: fmt.Sprintf("script-%d", i+1), Script: a})
	}
	for _, a := range trim(s.trackIfaceArgs) {
		s.TrackInterfaces = append(s.TrackInterfaces, TrackInterface{Name: a})
	}
	s.trackScriptArgs, s.trackIfaceArgs = nil, nil
	if s.StatusFile == "" {
		s.StatusFile = fmt.Sprintf("/run/hacoord/%s.%s.json", s.Group, s.Name)
	}
}

// redact hides secrets before settings are printed.
func (s *Settings) redact() {
	for _, p := range []*string{&s.Etcd.Password, &s.VRRP.AuthPass} {
		if *p != "" {
			*p = "<redacted>"
		}
	}
	if u, _, ok := strings.Cut(s.ZK.Auth, ":"); ok {
		s.ZK.Auth = u + ":<redacted>"
	}
}
