package keepalivedconf

import (
	"bytes"
	"fmt"
	"net/netip"
	"time"

	"gopkg.in/yaml.v3"
)

// The structs below mirror hacoord.yaml as docs/config.md describes it, key for key, and the
// virtual_servers schema of the ipvs and ipvs/check packages. They are this package's own (cmd's
// Settings are not imported): a test decodes the output with the ipvs types to keep them in step.

// Config is a whole hacoord.yaml. With one instance and no sync group it uses the single-instance
// form (the instance's keys at the top level, named by its group); otherwise `instances:`.
type Config struct {
	Backend          string   `yaml:"backend"`
	Name             string   `yaml:"name,omitempty"`
	Endpoints        []string `yaml:"endpoints,omitempty"`
	InstanceSettings `yaml:",inline"`
	Instances        []InstanceOut  `yaml:"instances,omitempty"`
	SyncGroups       []SyncGroupOut `yaml:"sync_groups,omitempty"`
}

// InstanceOut is one entry of `instances:`.
type InstanceOut struct {
	Name             string `yaml:"name"`
	InstanceSettings `yaml:",inline"`
}

// InstanceSettings are the keys of one instance.
type InstanceSettings struct {
	Group           string             `yaml:"group,omitempty"`
	Interface       string             `yaml:"interface,omitempty"`
	VIPs            []VIPEntry         `yaml:"vips,omitempty"`
	VIPLabel        string             `yaml:"vip_label,omitempty"`
	VRRP            *VRRP              `yaml:"vrrp,omitempty"`
	Announce        *Announce          `yaml:"announce,omitempty"`
	Hooks           *Hooks             `yaml:"hooks,omitempty"`
	TrackScripts    []TrackScriptOut   `yaml:"track_scripts,omitempty"`
	TrackInterfaces []TrackIfaceOut    `yaml:"track_interfaces,omitempty"`
	VirtualServers  []VirtualServerOut `yaml:"virtual_servers,omitempty"`
	ProgramOnBackup *bool              `yaml:"program_on_backup,omitempty"`
	LVSSyncDaemon   *SyncDaemonOut     `yaml:"lvs_sync_daemon,omitempty"`
}

// VIPEntry is one entry of `vips`: "10.0.0.100/24", or, when the address goes on another device
// than the instance's interface or has a label of its own, {address, dev, label} (a form added
// to docs/config.md for import-keepalived).
type VIPEntry struct {
	Address netip.Prefix
	Dev     string
	Label   string
}

// MarshalYAML writes the short form when it can.
func (v VIPEntry) MarshalYAML() (any, error) {
	if v.Dev == "" && v.Label == "" {
		return v.Address.String(), nil
	}
	n := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
	add := func(k, val string) {
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, &yaml.Node{Kind: yaml.ScalarNode, Value: val})
	}
	add("address", v.Address.String())
	if v.Dev != "" {
		add("dev", v.Dev)
	}
	if v.Label != "" {
		add("label", v.Label)
	}
	return n, nil
}

// VRRP is an instance's `vrrp:` block.
type VRRP struct {
	VRID         int           `yaml:"vrid"`
	Priority     int           `yaml:"priority"`
	AdvertInt    time.Duration `yaml:"advert_int"`
	Version      int           `yaml:"version"`
	NoPreempt    bool          `yaml:"nopreempt"`
	PreemptDelay time.Duration `yaml:"preempt_delay"`
	AuthPass     string        `yaml:"auth_pass,omitempty"`
	UnicastSrc   string        `yaml:"unicast_src,omitempty"`
	UnicastPeers []string      `yaml:"unicast_peers,omitempty"`
}

// Announce is the gratuitous ARP / unsolicited NA schedule.
type Announce struct {
	Count    int           `yaml:"count"`
	Repeat   int           `yaml:"repeat"`
	Interval time.Duration `yaml:"interval"`
	Refresh  time.Duration `yaml:"refresh"`
}

// Hooks are an instance's programs run on transitions.
type Hooks struct {
	Notify       string `yaml:"notify,omitempty"`
	NotifyMaster string `yaml:"notify_master,omitempty"`
	NotifyBackup string `yaml:"notify_backup,omitempty"`
	NotifyFault  string `yaml:"notify_fault,omitempty"`
	NotifyStop   string `yaml:"notify_stop,omitempty"`
}

// TrackScriptOut is one entry of track_scripts.
type TrackScriptOut struct {
	Name     string        `yaml:"name"`
	Script   string        `yaml:"script"`
	Interval time.Duration `yaml:"interval"`
	Timeout  time.Duration `yaml:"timeout"`
	Weight   int           `yaml:"weight"`
	Rise     int           `yaml:"rise"`
	Fall     int           `yaml:"fall"`
}

// TrackIfaceOut is one entry of track_interfaces.
type TrackIfaceOut struct {
	Name   string `yaml:"name"`
	Weight int    `yaml:"weight"`
}

// SyncGroupOut is one entry of sync_groups.
type SyncGroupOut struct {
	Name      string   `yaml:"name"`
	Instances []string `yaml:"instances"`
}

// VirtualServerOut mirrors ipvs.VirtualServer's YAML.
type VirtualServerOut struct {
	Address            string          `yaml:"address,omitempty"`
	Port               uint16          `yaml:"port,omitempty"`
	Protocol           string          `yaml:"protocol,omitempty"`
	FWMark             uint32          `yaml:"fwmark,omitempty"`
	Family             string          `yaml:"ip_family,omitempty"`
	LBAlgo             string          `yaml:"lb_algo,omitempty"`
	LBKind             string          `yaml:"lb_kind,omitempty"`
	PersistenceTimeout time.Duration   `yaml:"persistence_timeout,omitempty"`
	OnePacket          bool            `yaml:"ops,omitempty"`
	DelayLoop          time.Duration   `yaml:"delay_loop,omitempty"`
	Quorum             uint32          `yaml:"quorum,omitempty"`
	Hysteresis         uint32          `yaml:"hysteresis,omitempty"`
	InhibitOnFailure   bool            `yaml:"inhibit_on_failure,omitempty"`
	SorryServer        *SorryOut       `yaml:"sorry_server,omitempty"`
	RealServers        []RealServerOut `yaml:"real_servers"`
}

// SorryOut mirrors ipvs.SorryServer.
type SorryOut struct {
	Address string `yaml:"address"`
	Port    uint16 `yaml:"port,omitempty"`
	LBKind  string `yaml:"lvs_method,omitempty"`
}

// RealServerOut mirrors ipvs.RealServer (its checker inline).
type RealServerOut struct {
	Address          string     `yaml:"address"`
	Port             uint16     `yaml:"port,omitempty"`
	Weight           *uint32    `yaml:"weight,omitempty"`
	LBKind           string     `yaml:"lvs_method,omitempty"`
	InhibitOnFailure *bool      `yaml:"inhibit_on_failure,omitempty"`
	TCP              *TCPOut    `yaml:"TCP_CHECK,omitempty"`
	HTTP             *HTTPOut   `yaml:"HTTP_GET,omitempty"`
	Script           *ScriptOut `yaml:"MISC_CHECK,omitempty"`
}

// TimingOut mirrors check.Timing.
type TimingOut struct {
	Interval         time.Duration `yaml:"delay_loop,omitempty"`
	ConnectTimeout   time.Duration `yaml:"connect_timeout,omitempty"`
	Retry            *int          `yaml:"retry,omitempty"`
	DelayBeforeRetry time.Duration `yaml:"delay_before_retry,omitempty"`
	Alpha            bool          `yaml:"alpha,omitempty"`
}

// TCPOut mirrors check.TCP.
type TCPOut struct {
	TimingOut   `yaml:",inline"`
	ConnectIP   string `yaml:"connect_ip,omitempty"`
	ConnectPort uint16 `yaml:"connect_port,omitempty"`
}

// HTTPOut mirrors check.HTTP.
type HTTPOut struct {
	TimingOut   `yaml:",inline"`
	ConnectIP   string   `yaml:"connect_ip,omitempty"`
	ConnectPort uint16   `yaml:"connect_port,omitempty"`
	VirtualHost string   `yaml:"virtualhost,omitempty"`
	URLs        []URLOut `yaml:"url"`
}

// URLOut mirrors check.URL.
type URLOut struct {
	Path       string `yaml:"path"`
	StatusCode int    `yaml:"status_code,omitempty"`
	Digest     string `yaml:"digest,omitempty"`
}

// ScriptOut mirrors check.Script.
type ScriptOut struct {
	TimingOut `yaml:",inline"`
	Path      string        `yaml:"misc_path"`
	Timeout   time.Duration `yaml:"misc_timeout,omitempty"`
	Dynamic   bool          `yaml:"misc_dynamic,omitempty"`
}

// YAML returns c as hacoord.yaml, after a comment naming source.
func (c *Config) YAML(source string) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# hacoord configuration imported from %s by hacoord import-keepalived.\n", source)
	fmt.Fprintf(&b, "# keepalived's defaults are written out; see the import's warnings for what did not map.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
