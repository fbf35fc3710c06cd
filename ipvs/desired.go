package ipvs

import (
	"net/netip"
	"time"

	"github.com/hacoord/hacoord/ipvs/check"
)

// DefaultScheduler is the lb_algo of a virtual server that sets none (ipvsadm's default).
const DefaultScheduler = "wlc"

// ServiceStatus is the state of one configured virtual service.
type ServiceStatus struct {
	Name    string `json:"name"`
	Service string `json:"service"`
	// Quorum reports whether the healthy real servers' weights reach the configured quorum.
	Quorum bool `json:"quorum"`
	// AliveWeight is the summed weight of the healthy real servers.
	AliveWeight uint32 `json:"alive_weight"`
	// Sorry reports whether the sorry server has taken over.
	Sorry       bool               `json:"sorry"`
	RealServers []RealServerStatus `json:"real_servers"`
}

// RealServerStatus is the checker state of one real server.
type RealServerStatus struct {
	Address netip.AddrPort `json:"address"`
	Up      bool           `json:"up"`
	// Weight is the weight the server gets while up (configured, or dynamic from misc_dynamic).
	Weight uint32 `json:"weight"`
	// Error is why the last probe failed.
	Error string `json:"error,omitempty"`
}

// desiredTable computes the table the configuration asks for given the checkers' states
// (health[i][j] for virtual server i, real server j) and each service's previous quorum state
// (nil: none yet, decided without hysteresis). Following keepalived: a down real server is removed,
// or kept at weight 0 with inhibit_on_failure; a service below quorum with a sorry server has only
// the sorry server. It is pure.
func desiredTable(cfg Config, health [][]check.Status, prevQuorum []bool) (Table, []ServiceStatus) {
	var t Table
	st := make([]ServiceStatus, len(cfg.VirtualServers))
	for i, vs := range cfg.VirtualServers {
		k, _ := vs.key() // validated
		svc := Service{ServiceKey: k, Scheduler: vs.LBAlgo}
		if svc.Scheduler == "" {
			svc.Scheduler = DefaultScheduler
		}
		if vs.PersistenceTimeout > 0 {
			svc.Flags |= FlagPersistent
			svc.Timeout = uint32(vs.PersistenceTimeout / time.Second)
		}
		if vs.OnePacket {
			svc.Flags |= FlagOnePacket
		}
		ss := ServiceStatus{Name: vs.DisplayName(), Service: k.String()}
		var alive uint32
		var dests []Destination
		for j, rs := range vs.RealServers {
			h := check.Status{Up: true, Weight: check.NoWeight}
			if i < len(health) && j < len(health[i]) {
				h = health[i][j]
			}
			w := rs.weight()
			if h.Weight != check.NoWeight {
				w = uint32(min(h.Weight, maxWeight))
			}
			rst := RealServerStatus{Address: netip.AddrPortFrom(rs.Address, rs.port(vs)), Up: h.Up, Weight: w}
			if h.Err != nil {
				rst.Error = h.Err.Error()
			}
			ss.RealServers = append(ss.RealServers, rst)
			fwd, _ := parseKind(kindOr(rs.LBKind, vs.LBKind))
			d := Destination{Address: rs.Address.Unmap(), Port: rs.port(vs), FwdMethod: fwd, Weight: w}
			switch {
			case h.Up:
				alive += w
				dests = append(dests, d)
			case rs.inhibit(vs):
				d.Weight = 0
				dests = append(dests, d)
			}
		}
		q, hyst := max(vs.Quorum, 1), vs.Hysteresis
		switch {
		case i >= len(prevQuorum):
			ss.Quorum = alive >= q
		case prevQuorum[i]:
			ss.Quorum = alive >= q-hyst
		default:
			ss.Quorum = alive >= q+hyst
		}
		ss.AliveWeight = alive
		if !ss.Quorum && vs.SorryServer != nil {
			s := vs.SorryServer
			port := s.Port
			if port == 0 {
				port = vs.Port
			}
			fwd, _ := parseKind(kindOr(s.LBKind, vs.LBKind))
			dests = []Destination{{Address: s.Address.Unmap(), Port: port, FwdMethod: fwd, Weight: 1}}
			ss.Sorry = true
		}
		svc.Destinations = dests
		t.Services = append(t.Services, svc)
		st[i] = ss
	}
	return t, st
}
