package main

import (
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/hacoord/hacoord/ipvs"
)

func newCheckConfigCommand(stdout io.Writer) *cobra.Command {
	fv := defaultFlagValues()
	var configPath string
	cmd := &cobra.Command{
		Use:   "check-config",
		Short: "Validate settings (file and flags) and print the effective configuration",
		Long: `check-config reads the same file and flags as the daemon and runs exactly the daemon's
validation, against this machine too (interfaces, their addresses, hooks), without touching the
network or needing privileges. It prints a summary of every instance (its VIPs, VRID or group,
virtual and real servers with their lb_algo and lb_kind) and the effective settings as YAML, in
the multi-instance form of docs/config.md. Exit status 2 lists every problem found, each naming
its flag or YAML key.`,
		Example: `  hacoord check-config --config /etc/hacoord/hacoord.yaml
  hacoord check-config --backend etcd --endpoints http://10.0.0.1:2379 --interface eth0 --vip 10.0.0.100/24`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, p, err := resolve(cmd, &fv, configPath)
			if err != nil {
				return err
			}
			b, err := marshalEffective(effective(s, p))
			if err != nil {
				return fmt.Errorf("check-config: %w", err)
			}
			_, err = fmt.Fprintf(stdout, "%s%s", summary(p), b)
			return err
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "YAML settings file")
	registerFlags(cmd.Flags(), &fv)
	return cmd
}

// summary describes the plan in YAML comments: per instance its backend, VIPs, VRID or group, and
// virtual and real servers with their effective lb_algo and lb_kind.
func summary(p *plan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# configuration OK: node %s, %d instance(s)\n", p.node, len(p.instances))
	for _, ip := range p.instances {
		where := "group " + ip.group
		if ip.backend == backendVRRP {
			where = fmt.Sprintf("vrid %d", ip.vrrp.VRID)
		}
		where += ", " + preemptSummary(ip.in.keys)
		fmt.Fprintf(&b, "# instance %s: %s on %s, %s\n", ip.name, ip.backend, ip.iface, where)
		fmt.Fprintf(&b, "#   vips %s\n", joinStringers(ip.in.keys.VIPs))
		for _, vs := range ip.ipvs.VirtualServers {
			fmt.Fprintf(&b, "#   virtual server %s: lb_algo %s, lb_kind %s\n", serviceKey(vs), orDefault(vs.LBAlgo, "wlc"), kind(vs.LBKind, ""))
			for _, rs := range vs.RealServers {
				port := rs.Port
				if port == 0 {
					port = vs.Port
				}
				w := uint32(1)
				if rs.Weight != nil {
					w = *rs.Weight
				}
				check := rs.Check.Kind()
				if check == "" {
					check = "no check"
				}
				fmt.Fprintf(&b, "#     real server %s: weight %d, lb_kind %s, %s\n", netip.AddrPortFrom(rs.Address, port), w, kind(rs.LBKind, vs.LBKind), check)
			}
		}
	}
	for _, sg := range p.syncGroups {
		names := make([]string, len(sg.members))
		for k, i := range sg.members {
			names[k] = p.instances[i].name
		}
		fmt.Fprintf(&b, "# sync group %s: %s (%s leads)\n", sg.name, strings.Join(names, ", "), names[0])
	}
	return b.String()
}

// preemptSummary is an instance's effective priority and preemption, as every backend applies
// them (priorityOf): "priority 150, preempt after 30s", "priority 100, nopreempt".
func preemptSummary(k instanceKeys) string {
	prio, noPreempt, delay := priorityOf(k)
	switch {
	case noPreempt:
		return fmt.Sprintf("priority %d, nopreempt", prio)
	case delay > 0:
		return fmt.Sprintf("priority %d, preempt after %v", prio, delay)
	}
	return fmt.Sprintf("priority %d, preempt", prio)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// kind returns the effective forwarding method: own, else the service's, else NAT.
func kind(own, service string) string {
	return strings.ToUpper(orDefault(own, orDefault(service, "NAT")))
}

func joinStringers[T fmt.Stringer](vs []T) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = v.String()
	}
	return strings.Join(s, " ")
}

// effectiveConfig is the YAML check-config prints: the multi-instance form, every instance with
// its keys resolved (group, status file, lb_algo and lb_kind filled in), secrets redacted. It is
// itself a valid configuration.
type effectiveConfig struct {
	daemonKeys `yaml:",inline"`
	Instances  []instanceEntry `yaml:"instances"`
	SyncGroups []syncGroupKeys `yaml:"sync_groups,omitempty"`
}

func effective(s settings, p *plan) effectiveConfig {
	out := effectiveConfig{daemonKeys: s.daemon, SyncGroups: s.syncGroups}
	out.Etcd.User, out.Etcd.Password = etcdUser(out.Etcd)
	redact(&out.Etcd.Password)
	if u, _, ok := strings.Cut(out.ZK.Auth, ":"); ok {
		out.ZK.Auth = u + ":<redacted>"
	}
	for _, ip := range p.instances {
		k := ip.in.keys
		k.Group, k.StatusFile = ip.group, ip.status
		redact(&k.VRRP.AuthPass)
		k.IPVS.VirtualServers = append([]ipvs.VirtualServer(nil), k.IPVS.VirtualServers...)
		for i := range k.IPVS.VirtualServers {
			vs := &k.IPVS.VirtualServers[i]
			vs.LBAlgo, vs.LBKind = orDefault(vs.LBAlgo, "wlc"), kind(vs.LBKind, "")
		}
		backend := ""
		if ip.backend != s.daemon.Backend {
			backend = ip.backend
		}
		out.Instances = append(out.Instances, instanceEntry{Name: ip.name, Backend: backend, instanceKeys: k})
	}
	return out
}

func redact(p *string) {
	if *p != "" {
		*p = "<redacted>"
	}
}

// marshalEffective writes e as YAML. A virtual server's address is written back in: ipvs tags it
// omitempty, which yaml.v3 applies to a netip.Addr (a struct of unexported fields) as "always
// empty".
func marshalEffective(e effectiveConfig) ([]byte, error) {
	b, err := yaml.Marshal(e)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	insts := mappingValue(doc.Content[0], "instances")
	for i, in := range e.Instances {
		vss := mappingValue(insts.Content[i], "virtual_servers")
		for j, vs := range in.IPVS.VirtualServers {
			if vs.Address.IsValid() && mappingValue(vss.Content[j], "address") == nil {
				m := vss.Content[j]
				k := &yaml.Node{Kind: yaml.ScalarNode, Value: "address"}
				v := &yaml.Node{Kind: yaml.ScalarNode, Value: vs.Address.String()}
				m.Content = append([]*yaml.Node{k, v}, m.Content...)
			}
		}
	}
	return yaml.Marshal(&doc)
}

// mappingValue returns the value of key in mapping node m, or nil.
func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}
