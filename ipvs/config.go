package ipvs

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hacoord/hacoord/ipvs/check"
)

// Config is the IPVS part of hacoord.yaml. Its fields sit at the top level of the file
// (`virtual_servers:`), so cmd can embed it inline.
type Config struct {
	// VirtualServers are keepalived's virtual_server blocks.
	VirtualServers []VirtualServer `yaml:"virtual_servers,omitempty"`

	// ProgramOnBackup keeps the table programmed on a backup too, so a takeover only moves the VIP.
	//
	// The default is true, as in keepalived, whose checker process programs LVS whatever the VRRP
	// state: packets for a VIP reach only the node holding it, so a backup's table is idle, and a
	// new master forwards from its first packet with warm checker state instead of programming
	// the table inside the failover window. Set it false when the directors are also real servers
	// of each other (LVS-DR "two-node" setups): a backup with a live table would forward the packets
	// the master sends it back into the pool, a loop. With false, Demote withdraws the table and
	// Promote programs it before the VIP is bound.
	ProgramOnBackup bool `yaml:"program_on_backup"`

	// ResyncInterval is how often the kernel table is re-read and drift repaired (someone ran
	// `ipvsadm -C`); zero disables it. Checker results are applied as they arrive regardless.
	ResyncInterval time.Duration `yaml:"resync_interval,omitempty"`

	// Check is the default schedule of the real servers' checkers; a checker's own fields and its
	// virtual server's delay_loop override it.
	Check check.Timing `yaml:"check_defaults,omitempty"`

	// SyncDaemon runs the kernel's IPVS connection synchronisation (keepalived's lvs_sync_daemon):
	// a backup daemon on every director, and a master daemon too on the one holding the VIPs, so
	// the director that takes over knows the connections and persistence templates of the one
	// that died. nil: none.
	SyncDaemon *SyncConfig `yaml:"lvs_sync_daemon,omitempty"`
}

// DefaultConfig returns the defaults, commented on each Config field: the table is programmed on
// backups too, resynced every 30s, checkers run every 6s with a 5s connect timeout and one retry.
func DefaultConfig() Config {
	return Config{
		ProgramOnBackup: true,
		ResyncInterval:  30 * time.Second,
		Check:           check.DefaultTiming(),
	}
}

// VirtualServer is one IPVS virtual service: an address, port and protocol, or a firewall mark,
// with its real servers (keepalived's virtual_server block).
type VirtualServer struct {
	// Name labels the service in logs and status; default "TCP 10.0.0.100:80" / "FWM 1".
	Name string `yaml:"name,omitempty"`

	// Address and Port make an address service (keepalived `virtual_server 10.0.0.100 80`).
	Address netip.Addr `yaml:"address,omitempty"`
	Port    uint16     `yaml:"port,omitempty"`
	// Protocol is TCP (default), UDP or SCTP; not used with fwmark.
	Protocol string `yaml:"protocol,omitempty"`
	// FWMark makes a firewall-mark service instead (keepalived `virtual_server fwmark 1`).
	FWMark uint32 `yaml:"fwmark,omitempty"`
	// Family is inet (default) or inet6 for a fwmark service (keepalived's ip_family).
	Family string `yaml:"ip_family,omitempty"`

	// LBAlgo is the IPVS scheduler: rr, wrr, lc, wlc (default, as ipvsadm), lblc, lblcr, dh, sh,
	// sed, nq, fo, ovf, mh, twos.
	LBAlgo string `yaml:"lb_algo,omitempty"`
	// LBKind is the forwarding method for the real servers: NAT (default, as keepalived), DR or TUN.
	LBKind string `yaml:"lb_kind,omitempty"`
	// PersistenceTimeout makes the service persistent (whole seconds; zero: not persistent).
	PersistenceTimeout time.Duration `yaml:"persistence_timeout,omitempty"`
	// OnePacket schedules each UDP datagram on its own (ipvsadm --ops).
	OnePacket bool `yaml:"ops,omitempty"`

	// DelayLoop is the default check interval of this service's real servers.
	DelayLoop time.Duration `yaml:"delay_loop,omitempty"`
	// Quorum is the minimum summed weight of the healthy real servers (default 1). Below it the
	// service has lost quorum: its status says so and, with a sorry server, only the sorry server
	// takes traffic.
	Quorum uint32 `yaml:"quorum,omitempty"`
	// Hysteresis keeps quorum from flapping: lost below quorum-hysteresis, regained at
	// quorum+hysteresis.
	Hysteresis uint32 `yaml:"hysteresis,omitempty"`
	// InhibitOnFailure is the default for the real servers' inhibit_on_failure.
	InhibitOnFailure bool `yaml:"inhibit_on_failure,omitempty"`
	// SorryServer takes the traffic while the service has no quorum.
	SorryServer *SorryServer `yaml:"sorry_server,omitempty"`

	RealServers []RealServer `yaml:"real_servers"`
}

// SorryServer is the real server used while a virtual service has lost quorum.
type SorryServer struct {
	Address netip.Addr `yaml:"address"`
	Port    uint16     `yaml:"port,omitempty"`
	// LBKind overrides the service's lb_kind (keepalived's sorry_server_lvs_method).
	LBKind string `yaml:"lvs_method,omitempty"`
}

// RealServer is one destination of a virtual service (keepalived's real_server block).
type RealServer struct {
	Address netip.Addr `yaml:"address"`
	// Port defaults to the virtual server's port.
	Port uint16 `yaml:"port,omitempty"`
	// Weight is the IPVS weight, 0..65535 (default 1). A MISC_CHECK with misc_dynamic replaces it.
	Weight *uint32 `yaml:"weight,omitempty"`
	// LBKind overrides the service's lb_kind (keepalived's lvs_method).
	LBKind string `yaml:"lvs_method,omitempty"`
	// InhibitOnFailure sets a failed server's weight to 0 instead of removing it, so its
	// established connections live on; default: the virtual server's.
	InhibitOnFailure *bool `yaml:"inhibit_on_failure,omitempty"`
	// Check is the health checker (TCP_CHECK, HTTP_GET or MISC_CHECK); none means always up.
	Check check.Config `yaml:",inline"`
}

// Schedulers are the lb_algo values the Linux IPVS schedulers implement.
var Schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}

const maxWeight = 65535

// Validate checks c. Each error names the field, e.g. "virtual_servers[0].real_servers[1].weight".
func (c Config) Validate() error {
	var errs []error
	if c.ResyncInterval < 0 {
		errs = append(errs, fmt.Errorf("resync_interval: %v is negative", c.ResyncInterval))
	}
	if c.SyncDaemon != nil {
		errs = append(errs, c.SyncDaemon.Validate())
	}
	seen := map[ServiceKey]int{}
	for i, vs := range c.VirtualServers {
		p := fmt.Sprintf("virtual_servers[%d].", i)
		errs = append(errs, vs.validate(p))
		if k, err := vs.key(); err == nil {
			if j, dup := seen[k]; dup {
				errs = append(errs, fmt.Errorf("%saddress: %s is also virtual_servers[%d]", p, k, j))
			}
			seen[k] = i
		}
	}
	return errors.Join(errs...)
}

func (vs VirtualServer) validate(p string) error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(p+format, a...)) }
	switch {
	case vs.FWMark != 0 && vs.Address.IsValid():
		add("fwmark: set either address or fwmark, not both")
	case vs.FWMark == 0 && !vs.Address.IsValid():
		add("address: required (or fwmark)")
	case vs.FWMark == 0:
		if vs.Address.Zone() != "" {
			add("address: %s: zones are not supported", vs.Address)
		}
		if vs.Port == 0 && vs.PersistenceTimeout == 0 {
			add("port: 0 (all ports) needs persistence_timeout")
		}
		if _, err := parseProtocol(vs.Protocol); err != nil {
			add("protocol: %v", err)
		}
		if vs.Family != "" {
			add("ip_family: only for fwmark services (the address gives the family)")
		}
	default:
		if vs.Port != 0 {
			add("port: not used with fwmark")
		}
		if vs.Protocol != "" {
			add("protocol: not used with fwmark")
		}
		if _, err := parseFamily(vs.Family); err != nil {
			add("ip_family: %v", err)
		}
	}
	if vs.LBAlgo != "" && !slices.Contains(Schedulers, vs.LBAlgo) {
		add("lb_algo: %q is not one of %s", vs.LBAlgo, strings.Join(Schedulers, ", "))
	}
	if _, err := parseKind(vs.LBKind); err != nil {
		add("lb_kind: %v", err)
	}
	if vs.PersistenceTimeout < 0 || vs.PersistenceTimeout%time.Second != 0 {
		add("persistence_timeout: %v must be whole, non-negative seconds", vs.PersistenceTimeout)
	}
	if vs.OnePacket && vs.FWMark == 0 && strings.ToUpper(vs.Protocol) != "UDP" {
		add("ops: one-packet scheduling is for UDP services")
	}
	if vs.DelayLoop < 0 {
		add("delay_loop: %v is negative", vs.DelayLoop)
	}
	quorum := vs.Quorum
	if quorum == 0 {
		quorum = 1
	}
	if vs.Hysteresis >= quorum {
		add("hysteresis: %d must be less than quorum %d", vs.Hysteresis, quorum)
	}
	fam := vs.family()
	if s := vs.SorryServer; s != nil {
		if !s.Address.IsValid() {
			add("sorry_server.address: required")
		} else if addrFamily(s.Address) != fam && kindOr(s.LBKind, vs.LBKind) != "TUN" {
			add("sorry_server.address: %s is not in the service's address family (only TUN mixes families)", s.Address)
		}
		if _, err := parseKind(s.LBKind); err != nil {
			add("sorry_server.lvs_method: %v", err)
		}
	}
	if len(vs.RealServers) == 0 && vs.SorryServer == nil {
		add("real_servers: at least one real server (or a sorry_server) is required")
	}
	seen := map[netip.AddrPort]int{}
	for j, rs := range vs.RealServers {
		rp := fmt.Sprintf("real_servers[%d].", j)
		if !rs.Address.IsValid() {
			add(rp + "address: required")
			continue
		}
		if addrFamily(rs.Address) != fam && kindOr(rs.LBKind, vs.LBKind) != "TUN" {
			add(rp+"address: %s is not in the service's address family (only TUN mixes families)", rs.Address)
		}
		ap := netip.AddrPortFrom(rs.Address, rs.port(vs))
		if k, dup := seen[ap]; dup {
			add(rp+"address: %s is also real_servers[%d]", ap, k)
		}
		seen[ap] = j
		if rs.Weight != nil && *rs.Weight > maxWeight {
			add(rp+"weight: %d is above %d", *rs.Weight, maxWeight)
		}
		if _, err := parseKind(rs.LBKind); err != nil {
			add(rp+"lvs_method: %v", err)
		}
		errs = append(errs, rs.Check.Validate(p+rp))
	}
	return errors.Join(errs...)
}

func kindOr(k, def string) string {
	if k != "" {
		return strings.ToUpper(k)
	}
	return strings.ToUpper(def)
}

// DisplayName returns Name or the service's key ("TCP 10.0.0.100:80", "FWM 1").
func (vs VirtualServer) DisplayName() string {
	if vs.Name != "" {
		return vs.Name
	}
	k, err := vs.key()
	if err != nil {
		return "invalid virtual server"
	}
	return k.String()
}

func (vs VirtualServer) family() AddressFamily {
	if vs.FWMark != 0 {
		f, _ := parseFamily(vs.Family)
		return f
	}
	return addrFamily(vs.Address)
}

func (vs VirtualServer) key() (ServiceKey, error) {
	if vs.FWMark != 0 {
		f, err := parseFamily(vs.Family)
		return ServiceKey{Family: f, FWMark: vs.FWMark}, err
	}
	p, err := parseProtocol(vs.Protocol)
	return ServiceKey{Family: addrFamily(vs.Address), Protocol: p, Address: vs.Address.Unmap(), Port: vs.Port}, err
}

func (rs RealServer) port(vs VirtualServer) uint16 {
	if rs.Port != 0 {
		return rs.Port
	}
	return vs.Port
}

func (rs RealServer) weight() uint32 {
	if rs.Weight == nil {
		return 1
	}
	return *rs.Weight
}

func (rs RealServer) inhibit(vs VirtualServer) bool {
	if rs.InhibitOnFailure != nil {
		return *rs.InhibitOnFailure
	}
	return vs.InhibitOnFailure
}

func addrFamily(a netip.Addr) AddressFamily {
	if a.Unmap().Is4() {
		return INET
	}
	return INET6
}

func parseProtocol(s string) (Protocol, error) {
	switch strings.ToUpper(s) {
	case "", "TCP":
		return TCP, nil
	case "UDP":
		return UDP, nil
	case "SCTP":
		return SCTP, nil
	}
	return 0, fmt.Errorf("%q is not TCP, UDP or SCTP", s)
}

func parseFamily(s string) (AddressFamily, error) {
	switch strings.ToLower(s) {
	case "", "inet":
		return INET, nil
	case "inet6":
		return INET6, nil
	}
	return 0, fmt.Errorf("%q is not inet or inet6", s)
}

func parseKind(s string) (ForwardType, error) {
	switch strings.ToUpper(s) {
	case "", "NAT":
		return Masquerade, nil
	case "DR":
		return DirectRoute, nil
	case "TUN":
		return Tunnel, nil
	}
	return 0, fmt.Errorf("%q is not NAT, DR or TUN", s)
}
