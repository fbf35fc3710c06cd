package ipvs

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hacoord/hacoord/ipvs/check"
)

// exampleYAML is the schema example given to the lead; keep it in step with the report.
const exampleYAML = `
program_on_backup: true
resync_interval: 30s
virtual_servers:
  - name: web
    address: 10.0.0.100
    port: 80
    protocol: TCP
    lb_algo: wrr
    lb_kind: DR
    persistence_timeout: 300s
    delay_loop: 6s
    quorum: 2
    hysteresis: 1
    sorry_server: {address: 10.0.0.99, port: 80}
    real_servers:
      - address: 10.0.0.11
        weight: 3
        inhibit_on_failure: true
        HTTP_GET:
          url:
            - path: /health
              status_code: 200
            - path: /index.html
              digest: 5d41402abc4b2a76b9719d911017c592
          connect_timeout: 3s
          retry: 3
          delay_before_retry: 2s
          rise: 2
          fall: 2
      - address: 10.0.0.12
        port: 80
        TCP_CHECK:
          connect_port: 8080
          connect_timeout: 3s
          retry: 0
      - address: 10.0.0.13
        MISC_CHECK:
          misc_path: /usr/local/bin/check-backend 10.0.0.13
          misc_timeout: 5s
          misc_dynamic: true
  - fwmark: 1
    ip_family: inet6
    lb_algo: sh
    lb_kind: TUN
    real_servers:
      - address: 2001:db8::11
`

func TestExampleYAML(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ProgramOnBackup = false
	if err := yaml.Unmarshal([]byte(exampleYAML), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if !cfg.ProgramOnBackup || cfg.ResyncInterval != 30*time.Second || len(cfg.VirtualServers) != 2 {
		t.Fatalf("decoded %+v", cfg)
	}
	vs := cfg.VirtualServers[0]
	if vs.Address != netip.MustParseAddr("10.0.0.100") || vs.PersistenceTimeout != 300*time.Second || vs.SorryServer.Port != 80 {
		t.Errorf("virtual server %+v", vs)
	}
	rs := vs.RealServers[0]
	if *rs.Weight != 3 || !rs.inhibit(vs) || rs.port(vs) != 80 || rs.Check.Kind() != "HTTP_GET" ||
		*rs.Check.HTTP.Retry != 3 || rs.Check.HTTP.Rise != 2 || rs.Check.HTTP.URLs[1].Digest == "" {
		t.Errorf("real server 0 %+v %+v", rs, rs.Check.HTTP)
	}
	if c := vs.RealServers[1].Check; c.TCP == nil || c.TCP.ConnectPort != 8080 || c.TCP.Retry == nil || *c.TCP.Retry != 0 || vs.RealServers[1].weight() != 1 {
		t.Errorf("real server 1 %+v", c)
	}
	if c := vs.RealServers[2].Check; c.Script == nil || !c.Script.Dynamic || c.Script.Timeout != 5*time.Second {
		t.Errorf("real server 2 %+v", c)
	}
	k, _ := cfg.VirtualServers[1].key()
	if k != (ServiceKey{Family: INET6, FWMark: 1}) {
		t.Errorf("fwmark key %+v", k)
	}
	// Defaults survive decoding onto DefaultConfig().
	if d := check.DefaultTiming(); cfg.Check.Interval != d.Interval || *cfg.Check.Retry != *d.Retry {
		t.Errorf("check defaults %+v", cfg.Check)
	}
}

func TestValidate(t *testing.T) {
	ok := func() VirtualServer {
		return VirtualServer{
			Address: netip.MustParseAddr("10.0.0.100"), Port: 80, LBAlgo: "rr", LBKind: "DR",
			RealServers: []RealServer{{Address: netip.MustParseAddr("10.0.0.11")}},
		}
	}
	w := func(n uint32) *uint32 { return &n }
	tests := []struct {
		name string
		mod  func(*VirtualServer)
		want string // substring, "" for valid
	}{
		{"valid", func(*VirtualServer) {}, ""},
		{"fwmark", func(v *VirtualServer) { v.Address, v.Port, v.FWMark = netip.Addr{}, 0, 3 }, ""},
		{"no address", func(v *VirtualServer) { v.Address = netip.Addr{} }, "virtual_servers[0].address: required"},
		{"address and fwmark", func(v *VirtualServer) { v.FWMark = 1 }, "virtual_servers[0].fwmark: set either"},
		{"port 0 without persistence", func(v *VirtualServer) { v.Port = 0 }, "virtual_servers[0].port: 0"},
		{"port 0 with persistence", func(v *VirtualServer) { v.Port, v.PersistenceTimeout = 0, time.Minute }, ""},
		{"bad protocol", func(v *VirtualServer) { v.Protocol = "ICMP" }, "virtual_servers[0].protocol"},
		{"udp", func(v *VirtualServer) { v.Protocol = "udp"; v.OnePacket = true }, ""},
		{"ops on tcp", func(v *VirtualServer) { v.OnePacket = true }, "virtual_servers[0].ops"},
		{"bad lb_algo", func(v *VirtualServer) { v.LBAlgo = "fastest" }, "virtual_servers[0].lb_algo: \"fastest\""},
		{"bad lb_kind", func(v *VirtualServer) { v.LBKind = "FNAT" }, "virtual_servers[0].lb_kind"},
		{"fractional persistence", func(v *VirtualServer) { v.PersistenceTimeout = 1500 * time.Millisecond }, "virtual_servers[0].persistence_timeout"},
		{"bad ip_family", func(v *VirtualServer) { v.Address, v.Port, v.FWMark, v.Family = netip.Addr{}, 0, 3, "inet5" }, "virtual_servers[0].ip_family"},
		{"ip_family without fwmark", func(v *VirtualServer) { v.Family = "inet6" }, "virtual_servers[0].ip_family"},
		{"hysteresis not below quorum", func(v *VirtualServer) { v.Quorum, v.Hysteresis = 2, 2 }, "virtual_servers[0].hysteresis"},
		{"no real servers", func(v *VirtualServer) { v.RealServers = nil }, "virtual_servers[0].real_servers: at least one"},
		{"only a sorry server", func(v *VirtualServer) {
			v.RealServers = nil
			v.SorryServer = &SorryServer{Address: netip.MustParseAddr("10.0.0.99")}
		}, ""},
		{"sorry server family", func(v *VirtualServer) { v.SorryServer = &SorryServer{Address: netip.MustParseAddr("2001:db8::99")} }, "virtual_servers[0].sorry_server.address"},
		{"real server family", func(v *VirtualServer) { v.RealServers[0].Address = netip.MustParseAddr("2001:db8::11") }, "virtual_servers[0].real_servers[0].address"},
		{"mixed family with TUN", func(v *VirtualServer) {
			v.LBKind = "TUN"
			v.RealServers[0].Address = netip.MustParseAddr("2001:db8::11")
		}, ""},
		{"duplicate real server", func(v *VirtualServer) {
			v.RealServers = append(v.RealServers, RealServer{Address: netip.MustParseAddr("10.0.0.11"), Port: 80})
		}, "virtual_servers[0].real_servers[1].address: 10.0.0.11:80 is also real_servers[0]"},
		{"weight too big", func(v *VirtualServer) { v.RealServers[0].Weight = w(70000) }, "virtual_servers[0].real_servers[0].weight"},
		{"weight 0", func(v *VirtualServer) { v.RealServers[0].Weight = w(0) }, ""},
		{"bad lvs_method", func(v *VirtualServer) { v.RealServers[0].LBKind = "X" }, "virtual_servers[0].real_servers[0].lvs_method"},
		{"bad checker", func(v *VirtualServer) { v.RealServers[0].Check.HTTP = &check.HTTP{} }, "virtual_servers[0].real_servers[0].HTTP_GET.url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs := ok()
			tt.mod(&vs)
			err := Config{VirtualServers: []VirtualServer{vs}}.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.want)
			}
		})
	}
	t.Run("duplicate virtual server", func(t *testing.T) {
		err := Config{VirtualServers: []VirtualServer{ok(), ok()}}.Validate()
		if err == nil || !strings.Contains(err.Error(), "virtual_servers[1].address: TCP 10.0.0.100:80 is also virtual_servers[0]") {
			t.Fatalf("Validate() = %v", err)
		}
	})
	t.Run("durations must be strings", func(t *testing.T) {
		var cfg Config
		err := yaml.Unmarshal([]byte("virtual_servers: [{address: 10.0.0.1, port: 80, persistence_timeout: 300}]"), &cfg)
		if err == nil {
			t.Fatal("a bare number decoded as a duration")
		}
	})
}
