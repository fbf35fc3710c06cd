package ipvs

import (
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hacoord/hacoord/ipvs/check"
)

func webConfig() Config {
	w := func(n uint32) *uint32 { return &n }
	inhibit := true
	return Config{VirtualServers: []VirtualServer{{
		Address: netip.MustParseAddr("10.0.0.100"), Port: 80, LBAlgo: "wrr", LBKind: "DR",
		PersistenceTimeout: 300 * time.Second,
		Quorum:             3, Hysteresis: 1,
		SorryServer: &SorryServer{Address: netip.MustParseAddr("10.0.0.99")},
		RealServers: []RealServer{
			{Address: netip.MustParseAddr("10.0.0.11"), Weight: w(2)},
			{Address: netip.MustParseAddr("10.0.0.12"), Weight: w(2), InhibitOnFailure: &inhibit},
			{Address: netip.MustParseAddr("10.0.0.13"), Port: 8080, LBKind: "NAT"},
		},
	}}}
}

func up(w int) check.Status { return check.Status{Up: true, Weight: w} }
func down() check.Status {
	return check.Status{Up: false, Weight: check.NoWeight, Err: errors.New("refused")}
}
func upNW() check.Status { return up(check.NoWeight) }
func destStrings(s Service) []string {
	var out []string
	for _, d := range s.Destinations {
		out = append(out, d.AddrPort().String()+" "+fwdName(d.FwdMethod)+" "+strconv.Itoa(int(d.Weight)))
	}
	return out
}

func TestDesiredTable(t *testing.T) {
	tests := []struct {
		name       string
		health     []check.Status
		prevQuorum []bool // nil: first evaluation
		dests      []string
		quorum     bool
		alive      uint32
		sorry      bool
		noSorry    bool // configure no sorry server
	}{
		{"all up", []check.Status{upNW(), upNW(), upNW()}, nil,
			[]string{"10.0.0.11:80 Route 2", "10.0.0.12:80 Route 2", "10.0.0.13:8080 Masq 1"}, true, 5, false, false},
		{"down is removed, inhibited is weight 0", []check.Status{down(), down(), upNW()}, []bool{true},
			[]string{"10.0.0.12:80 Route 0", "10.0.0.13:8080 Masq 1"}, false, 1, false, true},
		{"dynamic weight", []check.Status{up(7), upNW(), upNW()}, nil,
			[]string{"10.0.0.11:80 Route 7", "10.0.0.12:80 Route 2", "10.0.0.13:8080 Masq 1"}, true, 10, false, false},
		{"hysteresis keeps quorum at quorum-hysteresis", []check.Status{upNW(), down(), down()}, []bool{true},
			[]string{"10.0.0.11:80 Route 2", "10.0.0.12:80 Route 0"}, true, 2, false, false},
		{"first evaluation has no hysteresis", []check.Status{upNW(), down(), down()}, nil,
			[]string{"10.0.0.99:80 Route 1"}, false, 2, true, false},
		{"below quorum-hysteresis: sorry server only", []check.Status{down(), down(), upNW()}, []bool{true},
			[]string{"10.0.0.99:80 Route 1"}, false, 1, true, false},
		{"regain needs quorum+hysteresis", []check.Status{upNW(), upNW(), down()}, []bool{false},
			[]string{"10.0.0.11:80 Route 2", "10.0.0.12:80 Route 2"}, true, 4, false, false},
		{"not regained at quorum", []check.Status{upNW(), down(), upNW()}, []bool{false},
			[]string{"10.0.0.99:80 Route 1"}, false, 3, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := webConfig()
			if tt.noSorry {
				cfg.VirtualServers[0].SorryServer = nil
			}
			tab, st := desiredTable(cfg, [][]check.Status{tt.health}, tt.prevQuorum)
			if len(tab.Services) != 1 || len(st) != 1 {
				t.Fatalf("services %d, statuses %d", len(tab.Services), len(st))
			}
			s := tab.Services[0]
			if s.Scheduler != "wrr" || s.Flags != FlagPersistent || s.Timeout != 300 {
				t.Errorf("service %+v", s)
			}
			if got := destStrings(s); !slices.Equal(got, tt.dests) {
				t.Errorf("destinations %q, want %q", got, tt.dests)
			}
			if st[0].Quorum != tt.quorum || st[0].AliveWeight != tt.alive || st[0].Sorry != tt.sorry {
				t.Errorf("status %+v, want quorum=%v alive=%d sorry=%v", st[0], tt.quorum, tt.alive, tt.sorry)
			}
		})
	}
}

func TestDesiredDefaults(t *testing.T) {
	cfg := Config{VirtualServers: []VirtualServer{{
		FWMark: 5, Family: "inet6",
		RealServers: []RealServer{{Address: netip.MustParseAddr("2001:db8::11")}},
	}}}
	tab, st := desiredTable(cfg, nil, nil)
	s := tab.Services[0]
	if s.ServiceKey != (ServiceKey{Family: INET6, FWMark: 5}) || s.Scheduler != DefaultScheduler || s.Flags != 0 {
		t.Errorf("service %+v", s)
	}
	if got := destStrings(s); !slices.Equal(got, []string{"[2001:db8::11]:0 Masq 1"}) {
		t.Errorf("destinations %q", got)
	}
	if st[0].Name != "FWM 5 IPv6" || !st[0].Quorum {
		t.Errorf("status %+v", st[0])
	}
}
