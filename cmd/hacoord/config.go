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

	"github.com/hacoord/hacoord/election/health"
	"github.com/hacoord/hacoord/ipvs"
)

// The configuration as read from hacoord.yaml and the flags: typed values, decoded once, with each
// key's documented default. docs/config.md is the schema. Nothing here is validated: plan.go maps
// these values onto each package's Config, whose Validate is the rule book.

// daemonKeys are the daemon-wide settings: this node, the store, logging and the fence guard.
type daemonKeys struct {
	// Backend is every instance's backend unless the instance names its own.
	Backend     string        `yaml:"backend"`
	Name        string        `yaml:"name"`
	Endpoints   []string      `yaml:"endpoints,omitempty"`
	LeaseTTL    time.Duration `yaml:"lease_ttl"`
	FenceMargin time.Duration `yaml:"fence_margin,omitempty"`
	Etcd        etcdKeys      `yaml:"etcd,omitempty"`
	ZK          zkKeys        `yaml:"zookeeper,omitempty"`
	// FenceGuard runs the fence guard, a watchdog process that removes the VIPs the moment the
	// daemon dies and when a stopped daemon's deadline passes (fencing.Guard).
	FenceGuard bool        `yaml:"fence_guard"`
	Log        LogSettings `yaml:"log"`

	// MetricsAddress is where the daemon serves Prometheus /metrics and /healthz; empty turns it
	// off. Default 127.0.0.1:9732.
	MetricsAddress string `yaml:"metrics_address"`
	// ControlSocket is the daemon's control socket (hacoord resign, transfer, maintenance);
	// default /run/hacoord/<name>.sock.
	ControlSocket string `yaml:"control_socket,omitempty"`
	// StateDir keeps what survives a restart (maintenance); default /var/lib/hacoord.
	StateDir string `yaml:"state_dir,omitempty"`
}

// etcdKeys are the etcd connection settings, spelled as etcdctl spells its flags.
type etcdKeys struct {
	CACert   string `yaml:"cacert,omitempty"`
	Cert     string `yaml:"cert,omitempty"`
	Key      string `yaml:"key,omitempty"`
	User     string `yaml:"user,omitempty"`
	Password string `yaml:"password,omitempty"`
	// PasswordFile holds the password (its first line), so it shows neither in `ps` nor in the
	// configuration file (secrets.go).
	PasswordFile string `yaml:"password_file,omitempty"`
}

// zkKeys are the ZooKeeper connection settings.
type zkKeys struct {
	Auth           string        `yaml:"auth,omitempty"`
	AuthFile       string        `yaml:"auth_file,omitempty"` // holds auth (secrets.go)
	SessionTimeout time.Duration `yaml:"session_timeout,omitempty"`
}

// LogSettings configure the logger (daemon-wide; the fence guard gets them as flags).
type LogSettings struct {
	Format string `yaml:"format"`
	Level  string `yaml:"level"`
}

// instanceKeys are one instance's settings. At the top level of the file they define the single
// instance, or, with an instances: list, the defaults of every instance.
type instanceKeys struct {
	Group     string    `yaml:"group,omitempty"`
	Interface string    `yaml:"interface,omitempty"`
	Address   addrValue `yaml:"address,omitempty"`
	VIPs      vipList   `yaml:"vips,omitempty"`
	VIPLabel  string    `yaml:"vip_label,omitempty"`
	// VIPLifetime puts a kernel lifetime on bound VIPs, renewed with every lease renewal, so a
	// SIGKILLed or stopped daemon's VIP is removed by the kernel shortly after its fencing deadline.
	VIPLifetime bool          `yaml:"vip_lifetime"`
	VRRP        vrrpKeys      `yaml:"vrrp,omitempty"`
	Announce    announceKeys  `yaml:"announce"`
	Hooks       hookKeys      `yaml:"hooks,omitempty"`
	Health      health.Config `yaml:",inline"`
	IPVS        ipvs.Config   `yaml:",inline"`
	// StatusFile is where the daemon keeps this instance's JSON snapshot for `hacoord status`;
	// default /run/hacoord/<group>.<name>.json.
	StatusFile string `yaml:"status_file,omitempty"`
	// Conflict is what binding does when another host answers the probe for a VIP: fence (the
	// default), bind, wait or off (vip.ConflictPolicy).
	Conflict string `yaml:"conflict,omitempty"`
	// Priority, NoPreempt and PreemptDelay are keepalived's priority, nopreempt and preempt_delay
	// for every backend; unset, VRRP's own vrrp.priority, vrrp.nopreempt and vrrp.preempt_delay
	// apply (their default priority is 100).
	Priority     int           `yaml:"priority,omitempty"`
	NoPreempt    bool          `yaml:"nopreempt,omitempty"`
	PreemptDelay time.Duration `yaml:"preempt_delay,omitempty"`
}

// vrrpKeys configure the native VRRP backend (keepalived's vrrp_instance keywords).
type vrrpKeys struct {
	VRID         int           `yaml:"vrid,omitempty"`
	Priority     int           `yaml:"priority"`
	AdvertInt    time.Duration `yaml:"advert_int"`
	Version      int           `yaml:"version"`
	NoPreempt    bool          `yaml:"nopreempt,omitempty"`
	PreemptDelay time.Duration `yaml:"preempt_delay,omitempty"`
	AuthPass     string        `yaml:"auth_pass,omitempty"`
	AuthPassFile string        `yaml:"auth_pass_file,omitempty"` // holds auth_pass (secrets.go)
	// UnicastSrc is keepalived's unicast_src_ip. hacoord sends from the interface's primary IPv4
	// address; a unicast_src must be that address.
	UnicastSrc   addrValue `yaml:"unicast_src,omitempty"`
	UnicastPeers addrList  `yaml:"unicast_peers,omitempty"`
}

// announceKeys configure gratuitous ARP / unsolicited NA (vip.AnnounceConfig).
type announceKeys struct {
	Count    int           `yaml:"count"`
	Repeat   int           `yaml:"repeat"`
	Interval time.Duration `yaml:"interval"`
	Refresh  time.Duration `yaml:"refresh"`
}

// hookKeys name programs run on transitions (fencing.Hook).
type hookKeys struct {
	// Fence runs before the node binds anything as master; a non-zero exit refuses mastership.
	Fence string `yaml:"fence,omitempty"`
	// Notify runs after every transition to master or backup.
	Notify string `yaml:"notify,omitempty"`
	// NotifyMaster, NotifyBackup, NotifyFault and NotifyStop run, as keepalived's notify_*, when
	// the instance becomes master, leaves master, enters fault, or stops.
	NotifyMaster string        `yaml:"notify_master,omitempty"`
	NotifyBackup string        `yaml:"notify_backup,omitempty"`
	NotifyFault  string        `yaml:"notify_fault,omitempty"`
	NotifyStop   string        `yaml:"notify_stop,omitempty"`
	Timeout      time.Duration `yaml:"timeout,omitempty"`
	// FenceRetries is how many times a failed or timed-out fence hook runs again,
	// FenceRetryInterval apart, before the node gives up its candidacy (fencehook.go).
	FenceRetries       int           `yaml:"fence_retries"`
	FenceRetryInterval time.Duration `yaml:"fence_retry_interval"`
}

// instanceEntry is one element of the instances: list.
type instanceEntry struct {
	Name         string `yaml:"name"`
	Backend      string `yaml:"backend,omitempty"`
	instanceKeys `yaml:",inline"`
}

// syncGroupKeys is one element of sync_groups: (keepalived's vrrp_sync_group).
type syncGroupKeys struct {
	Name      string   `yaml:"name"`
	Instances []string `yaml:"instances,flow"`
}

// fileConfig is the whole file.
type fileConfig struct {
	daemonKeys   `yaml:",inline"`
	instanceKeys `yaml:",inline"`
	Instances    []instanceEntry `yaml:"instances,omitempty"`
	SyncGroups   []syncGroupKeys `yaml:"sync_groups,omitempty"`
}

// Defaults of what no file and no flag sets.
const (
	defaultGroup     = "default"
	defaultStatusDir = "/run/hacoord"
)

// defaultDaemon returns the daemon-wide defaults.
func defaultDaemon() daemonKeys {
	host, _ := os.Hostname()
	return daemonKeys{
		Backend:    "etcd",
		Name:       host,
		LeaseTTL:   2 * time.Second,
		ZK:         zkKeys{SessionTimeout: 4 * time.Second},
		FenceGuard: true,
		Log:        LogSettings{Format: "console", Level: "info"},

		MetricsAddress: defaultMetricsAddress,
	}
}

// defaultInstance returns an instance's defaults, freshly allocated.
func defaultInstance() instanceKeys {
	return instanceKeys{
		VIPLifetime: true,
		VRRP:        vrrpKeys{Priority: 100, AdvertInt: time.Second, Version: 3},
		Announce:    announceKeys{Count: 3, Repeat: 3, Interval: 1100 * time.Millisecond, Refresh: 10 * time.Second},
		Hooks:       hookKeys{Timeout: 5 * time.Second, FenceRetries: 2, FenceRetryInterval: time.Second},
		IPVS:        ipvs.DefaultConfig(),
	}
}

// defaultStatusFile is an instance's status file unless it names one.
func defaultStatusFile(group, node string) string {
	return fmt.Sprintf("%s/%s.%s.json", defaultStatusDir, group, node)
}

// readFile decodes path strictly (an unknown key is an error: a typo must not leave a default in
// place) over fc, and returns the document's nodes for the instances' second pass. Every decoding
// error is reported, each naming its line and key.
func readFile(path string, fc *fileConfig) (*yaml.Node, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("config %s: %s", path, nameKeys(b, err.Error()))
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(fc); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			errs := make([]error, len(te.Errors))
			for i, e := range te.Errors {
				errs[i] = fmt.Errorf("config %s: %s", path, nameKeys(b, e))
			}
			return nil, errors.Join(errs...)
		}
		return nil, fmt.Errorf("config %s: %s", path, nameKeys(b, err.Error()))
	}
	if len(doc.Content) == 0 {
		return nil, nil // an empty file
	}
	return doc.Content[0], nil
}

// instanceNodes returns the elements of the document's instances: list.
func instanceNodes(top *yaml.Node) []*yaml.Node {
	if top == nil || top.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == "instances" && top.Content[i+1].Kind == yaml.SequenceNode {
			return top.Content[i+1].Content
		}
	}
	return nil
}

// entryFrom returns instance n of the file: the defaults, then the file's top-level instance keys,
// then the keys n sets (a key n sets replaces the top-level one; lists replace; nested mappings
// merge key by key). The document has been decoded strictly already, so this pass may ignore the
// keys that are not an instance's.
func entryFrom(top, n *yaml.Node) (instanceEntry, error) {
	e := instanceEntry{instanceKeys: defaultInstance()}
	if err := top.Decode(&e.instanceKeys); err != nil {
		return e, err
	}
	if err := n.Decode(&e); err != nil {
		return e, err
	}
	return e, nil
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

// keyAt returns the path of the mapping key or sequence element on line under n
// (instances[1].vips[0]).
func keyAt(n *yaml.Node, line int, prefix string) string {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if k := keyAt(c, line, prefix); k != "" {
				return k
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", prefix, i)
			if k := keyAt(c, line, p); k != "" {
				return k
			}
			if c.Kind == yaml.ScalarNode && c.Line == line && n.Line != line {
				return p
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

// Unwrap returns the error itself, so errors.Join's list stays reachable.
func (e configError) Unwrap() error { return e.error }

// parseVIP parses a VIP: an address with its prefix length, or a bare address (a host route, as
// keepalived takes it).
func parseVIP(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%q: want an address with a prefix length, like 10.0.0.100/24", s)
}

// vipEntry is one element of vips: a VIP, and the device and label it goes on when they are not the
// instance's interface and vip_label (empty: the instance's).
type vipEntry struct {
	Prefix netip.Prefix
	Dev    string
	Label  string
}

// String returns the VIP, with its device and label when it has its own.
func (e vipEntry) String() string {
	var own []string
	if e.Dev != "" {
		own = append(own, "dev "+e.Dev)
	}
	if e.Label != "" {
		own = append(own, "label "+e.Label)
	}
	if len(own) == 0 {
		return e.Prefix.String()
	}
	return e.Prefix.String() + " (" + strings.Join(own, ", ") + ")"
}

// MarshalYAML writes the short form (the prefix) unless the entry has a device or label of its own.
func (e vipEntry) MarshalYAML() (any, error) {
	if e.Dev == "" && e.Label == "" {
		return e.Prefix.String(), nil
	}
	m := []*yaml.Node{{Kind: yaml.ScalarNode, Value: "address"}, {Kind: yaml.ScalarNode, Value: e.Prefix.String()}}
	for _, kv := range [][2]string{{"dev", e.Dev}, {"label", e.Label}} {
		if kv[1] != "" {
			m = append(m, &yaml.Node{Kind: yaml.ScalarNode, Value: kv[0]}, &yaml.Node{Kind: yaml.ScalarNode, Value: kv[1]})
		}
	}
	return &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle, Content: m}, nil
}

// vipList is the vips: list. An element is an address with its prefix length, a bare address (a
// host route, as keepalived takes it), or the long form {address, dev, label} (docs/config.md).
type vipList []vipEntry

// prefixes returns the VIPs' prefixes.
func (l vipList) prefixes() []netip.Prefix {
	out := make([]netip.Prefix, len(l))
	for i, e := range l {
		out[i] = e.Prefix
	}
	return out
}

// UnmarshalYAML decodes the list; every bad element is reported with its line, and decoding goes
// on.
func (l *vipList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: vips: want a list", n.Line)}}
	}
	out, te := vipList{}, &yaml.TypeError{}
	for _, c := range n.Content {
		e, err := decodeVIP(c)
		if err != nil {
			te.Errors = append(te.Errors, fmt.Sprintf("line %d: %v", c.Line, err))
			continue
		}
		out = append(out, e)
	}
	*l = out
	if len(te.Errors) > 0 {
		return te
	}
	return nil
}

// decodeVIP decodes one element of vips, short or long.
func decodeVIP(n *yaml.Node) (vipEntry, error) {
	if n.Kind == yaml.ScalarNode {
		p, err := parseVIP(n.Value)
		return vipEntry{Prefix: p}, err
	}
	if n.Kind != yaml.MappingNode {
		return vipEntry{}, errors.New("want an address or {address, dev, label}")
	}
	var e vipEntry
	var addr string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i].Value, n.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			return vipEntry{}, fmt.Errorf("%s: want a string", k)
		}
		switch k {
		case "address":
			addr = v.Value
		case "dev":
			e.Dev = v.Value
		case "label":
			e.Label = v.Value
		default:
			return vipEntry{}, fmt.Errorf("field %s not found in a VIP (address, dev, label)", k)
		}
	}
	if addr == "" {
		return vipEntry{}, errors.New("address: required")
	}
	p, err := parseVIP(addr)
	e.Prefix = p
	return e, err
}

// addrValue is an IP address read from YAML or a flag; the zero value means unset.
type addrValue struct{ netip.Addr }

// UnmarshalYAML decodes an address, reporting a bad one with its line.
func (a *addrValue) UnmarshalYAML(n *yaml.Node) error {
	v, err := netip.ParseAddr(strings.TrimSpace(n.Value))
	if n.Kind != yaml.ScalarNode || err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not an IP address", n.Line, n.Value)}}
	}
	a.Addr = v
	return nil
}

// MarshalYAML writes the address as text.
func (a addrValue) MarshalYAML() (any, error) { return a.String(), nil }

// IsZero reports whether the address is unset (for omitempty).
func (a addrValue) IsZero() bool { return !a.IsValid() }

// addrList is a list of IP addresses read from YAML.
type addrList []netip.Addr

// UnmarshalYAML decodes a sequence of addresses; every bad element is reported with its line.
func (l *addrList) UnmarshalYAML(n *yaml.Node) error {
	var ss []string
	if err := n.Decode(&ss); err != nil {
		return err
	}
	out, te := addrList{}, &yaml.TypeError{}
	for i, s := range ss {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			te.Errors = append(te.Errors, fmt.Sprintf("line %d: %q is not an IP address", n.Content[i].Line, s))
			continue
		}
		out = append(out, a)
	}
	*l = out
	if len(te.Errors) > 0 {
		return te
	}
	return nil
}
