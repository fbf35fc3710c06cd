package ipvs

import (
	"net/netip"
	"slices"
	"testing"
)

func svcTCP(addr string, port uint16, sched string, dests ...Destination) Service {
	return Service{
		ServiceKey:   ServiceKey{Family: addrFamily(netip.MustParseAddr(addr)), Protocol: TCP, Address: netip.MustParseAddr(addr), Port: port},
		Scheduler:    sched,
		Destinations: dests,
	}
}

func dst(addr string, port uint16, weight uint32) Destination {
	return Destination{Address: netip.MustParseAddr(addr), Port: port, FwdMethod: DirectRoute, Weight: weight}
}

func opStrings(ops []Op) []string {
	out := make([]string, len(ops))
	for i, o := range ops {
		out[i] = o.String()
	}
	return out
}

func TestDiff(t *testing.T) {
	fwm := Service{ServiceKey: ServiceKey{Family: INET, FWMark: 7}, Scheduler: "rr", Destinations: []Destination{dst("10.0.0.21", 0, 1)}}
	tests := []struct {
		name             string
		current, desired []Service
		want             []string
	}{
		{name: "empty", want: []string{}},
		{
			name:    "in step",
			current: []Service{svcTCP("10.0.0.100", 80, "rr", dst("10.0.0.11", 80, 1))},
			desired: []Service{svcTCP("10.0.0.100", 80, "rr", dst("10.0.0.11", 80, 1))},
			want:    []string{},
		},
		{
			name:    "kernel-only counters and hashed flag are ignored",
			current: []Service{{ServiceKey: svcTCP("10.0.0.100", 80, "", nil...).ServiceKey, Scheduler: "rr", Flags: 0x2, Destinations: []Destination{{Address: netip.MustParseAddr("10.0.0.11"), Port: 80, FwdMethod: DirectRoute, Weight: 1, ActiveConns: 5, InactiveConns: 3}}}},
			desired: []Service{svcTCP("10.0.0.100", 80, "rr", dst("10.0.0.11", 80, 1))},
			want:    []string{},
		},
		{
			name:    "new service with destinations",
			desired: []Service{svcTCP("10.0.0.100", 80, "wrr", dst("10.0.0.12", 80, 2), dst("10.0.0.11", 80, 1))},
			want: []string{
				"add-service TCP 10.0.0.100:80 wrr",
				"add-destination TCP 10.0.0.100:80 -> 10.0.0.11:80 Route weight 1",
				"add-destination TCP 10.0.0.100:80 -> 10.0.0.12:80 Route weight 2",
			},
		},
		{
			name:    "weight change is an update",
			current: []Service{svcTCP("10.0.0.100", 80, "wrr", dst("10.0.0.11", 80, 1), dst("10.0.0.12", 80, 1))},
			desired: []Service{svcTCP("10.0.0.100", 80, "wrr", dst("10.0.0.11", 80, 5), dst("10.0.0.12", 80, 1))},
			want:    []string{"update-destination TCP 10.0.0.100:80 -> 10.0.0.11:80 Route weight 5"},
		},
		{
			name:    "forwarding method change is an update",
			current: []Service{svcTCP("10.0.0.100", 80, "rr", Destination{Address: netip.MustParseAddr("10.0.0.11"), Port: 80, FwdMethod: Masquerade, Weight: 1})},
			desired: []Service{svcTCP("10.0.0.100", 80, "rr", dst("10.0.0.11", 80, 1))},
			want:    []string{"update-destination TCP 10.0.0.100:80 -> 10.0.0.11:80 Route weight 1"},
		},
		{
			name:    "scheduler change is a service update",
			current: []Service{svcTCP("10.0.0.100", 80, "rr", dst("10.0.0.11", 80, 1))},
			desired: []Service{svcTCP("10.0.0.100", 80, "wlc", dst("10.0.0.11", 80, 1))},
			want:    []string{"update-service TCP 10.0.0.100:80 wlc"},
		},
		{
			name:    "persistence change is a service update",
			current: []Service{svcTCP("10.0.0.100", 80, "rr")},
			desired: []Service{{ServiceKey: svcTCP("10.0.0.100", 80, "").ServiceKey, Scheduler: "rr", Flags: FlagPersistent, Timeout: 300}},
			want:    []string{"update-service TCP 10.0.0.100:80 rr persistent 300"},
		},
		{
			name:    "real server removed",
			current: []Service{svcTCP("10.0.0.100", 80, "rr", dst("10.0.0.11", 80, 1), dst("10.0.0.12", 80, 1))},
			desired: []Service{svcTCP("10.0.0.100", 80, "rr", dst("10.0.0.12", 80, 1))},
			want:    []string{"remove-destination TCP 10.0.0.100:80 -> 10.0.0.11:80"},
		},
		{
			name:    "same address other port is another real server",
			current: []Service{svcTCP("10.0.0.100", 80, "rr", dst("10.0.0.11", 80, 1))},
			desired: []Service{svcTCP("10.0.0.100", 80, "rr", dst("10.0.0.11", 8080, 1))},
			want: []string{
				"add-destination TCP 10.0.0.100:80 -> 10.0.0.11:8080 Route weight 1",
				"remove-destination TCP 10.0.0.100:80 -> 10.0.0.11:80",
			},
		},
		{
			name:    "sorry server switch adds before it removes",
			current: []Service{svcTCP("10.0.0.100", 80, "rr", dst("10.0.0.11", 80, 1), dst("10.0.0.12", 80, 1))},
			desired: []Service{svcTCP("10.0.0.100", 80, "rr", dst("10.0.0.99", 80, 1))},
			want: []string{
				"add-destination TCP 10.0.0.100:80 -> 10.0.0.99:80 Route weight 1",
				"remove-destination TCP 10.0.0.100:80 -> 10.0.0.11:80",
				"remove-destination TCP 10.0.0.100:80 -> 10.0.0.12:80",
			},
		},
		{
			name:    "service removed whole, not destination by destination",
			current: []Service{svcTCP("10.0.0.100", 80, "rr", dst("10.0.0.11", 80, 1)), svcTCP("10.0.0.101", 80, "rr", dst("10.0.0.11", 80, 1))},
			desired: []Service{svcTCP("10.0.0.101", 80, "rr", dst("10.0.0.11", 80, 1))},
			want:    []string{"remove-service TCP 10.0.0.100:80"},
		},
		{
			name:    "fwmark and IPv6 services",
			current: []Service{fwm},
			desired: []Service{fwm, svcTCP("2001:db8::1", 443, "sh", dst("2001:db8::11", 443, 1))},
			want: []string{
				"add-service TCP [2001:db8::1]:443 sh",
				"add-destination TCP [2001:db8::1]:443 -> [2001:db8::11]:443 Route weight 1",
			},
		},
		{
			name:    "ops ordered by kind across services",
			current: []Service{svcTCP("10.0.0.101", 80, "rr", dst("10.0.0.11", 80, 1)), svcTCP("10.0.0.102", 80, "rr")},
			desired: []Service{svcTCP("10.0.0.100", 80, "rr"), svcTCP("10.0.0.101", 80, "rr", dst("10.0.0.11", 80, 2))},
			want: []string{
				"add-service TCP 10.0.0.100:80 rr",
				"update-destination TCP 10.0.0.101:80 -> 10.0.0.11:80 Route weight 2",
				"remove-service TCP 10.0.0.102:80",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := opStrings(Diff(Table{Services: tt.current}, Table{Services: tt.desired}))
			if !slices.Equal(got, tt.want) {
				t.Errorf("Diff:\n got %q\nwant %q", got, tt.want)
			}
			// Applying the diff's result again must be a no-op.
			if again := Diff(Table{Services: tt.desired}, Table{Services: tt.desired}); len(again) != 0 {
				t.Errorf("Diff(desired, desired) = %q, want none", opStrings(again))
			}
		})
	}
}
