package vip

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	c := DefaultConfig()
	c.Interface = "eth0"
	c.VIPs = []netip.Prefix{netip.MustParsePrefix("192.0.2.100/24"), netip.MustParsePrefix("2001:db8::100/64")}
	return c
}

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	if !c.Lifetime {
		t.Error("Lifetime is off by default; the kernel backstop must be on")
	}
	if a := c.Announce; a.Count != 3 || a.Repeat != 3 || a.RepeatInterval != 1100*time.Millisecond || a.Refresh != 10*time.Second {
		t.Errorf("announce defaults = %+v", a)
	}
	if cf := c.Conflict; cf.Policy != ConflictFence || cf.Probes != 3 || cf.Interval != 20*time.Millisecond || cf.Retry != time.Second {
		t.Errorf("conflict defaults = %+v", cf)
	}
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("defaults with an interface and VIPs: %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*Config)
		want   string // substring of the error; "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"label", func(c *Config) { c.Label = "eth0:vip" }, ""},
		{"no announcements", func(c *Config) { c.Announce = AnnounceConfig{RepeatInterval: 2 * time.Second} }, ""},
		{"no interface", func(c *Config) { c.Interface = "" }, "interface is required"},
		{"long interface", func(c *Config) { c.Interface = "abcdefghijklmnop" }, "longer than 15"},
		{"slash in interface", func(c *Config) { c.Interface = "eth/0" }, "contains"},
		{"no VIPs", func(c *Config) { c.VIPs = nil }, "no VIPs"},
		{"invalid prefix", func(c *Config) { c.VIPs = []netip.Prefix{{}} }, "not a valid prefix"},
		{"duplicate", func(c *Config) {
			c.VIPs = append(c.VIPs, netip.MustParsePrefix("192.0.2.100/32"))
		}, "192.0.2.100 is listed twice"},
		{"unspecified", func(c *Config) { c.VIPs = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")} }, "not a unicast"},
		{"multicast", func(c *Config) { c.VIPs = []netip.Prefix{netip.MustParsePrefix("ff02::1/128")} }, "not a unicast"},
		{"loopback", func(c *Config) { c.VIPs = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/8")} }, "not a unicast"},
		{"mapped", func(c *Config) { c.VIPs = []netip.Prefix{netip.MustParsePrefix("::ffff:192.0.2.1/128")} }, "IPv4-mapped"},
		{"label without interface prefix", func(c *Config) { c.Label = "vip" }, `does not start with the interface name "eth0"`},
		{"label too long", func(c *Config) { c.Label = "eth0:0123456789ab" }, "longer than 15"},
		{"negative count", func(c *Config) { c.Announce.Count = -1 }, "count -1"},
		{"negative repeat", func(c *Config) { c.Announce.Repeat = -1 }, "repeat -1"},
		{"repeat interval 1s", func(c *Config) { c.Announce.RepeatInterval = time.Second }, "more than 1s"},
		{"refresh 500ms", func(c *Config) { c.Announce.Refresh = 500 * time.Millisecond }, "refresh 500ms"},
		{"negative refresh", func(c *Config) { c.Announce.Refresh = -time.Second }, "refresh -1s"},
		{"conflict off", func(c *Config) { c.Conflict = ConflictConfig{} }, ""},
		{"conflict unknown", func(c *Config) { c.Conflict.Policy = "ignore" }, `conflict "ignore" is not wait, fence, bind or off`},
		{"conflict no probes", func(c *Config) { c.Conflict.Probes = 0 }, "conflict probes 0"},
		{"conflict interval", func(c *Config) { c.Conflict.Interval = 2 * time.Second }, "conflict interval 2s"},
		{"conflict retry", func(c *Config) { c.Conflict.Policy, c.Conflict.Retry = ConflictWait, time.Millisecond }, "conflict retry 1ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.modify(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.want != "" && err == nil:
				t.Fatalf("Validate() = nil, want an error containing %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("Validate() = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Config{} // zero: no interface, no VIPs, repeat interval 0
	err := c.Validate()
	if err == nil {
		t.Fatal("zero Config is valid")
	}
	for _, want := range []string{"interface is required", "no VIPs", "repeat interval"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	c := validConfig()
	c.Announce.RepeatInterval = 500 * time.Millisecond
	if _, err := New(c, nil); err == nil || !strings.Contains(err.Error(), "repeat interval") {
		t.Fatalf("New(bad config) = %v, want the validation error", err)
	}
}

// TestNewUnknownInterface needs no privileges: New looks the interface up before opening any raw
// socket, and only reads the namespace's links.
func TestNewUnknownInterface(t *testing.T) {
	c := validConfig()
	c.Interface = "hct-nosuch0"
	m, err := New(c, nil)
	if err == nil {
		m.Close()
		t.Fatal("New with an unknown interface succeeded")
	}
	if !strings.Contains(err.Error(), `interface "hct-nosuch0"`) {
		t.Fatalf("New = %v, want an error naming the interface", err)
	}
}

// TestLifetimeSeconds: the lifetime written ends, with the kernel's worst lateness, by the deadline:
// floor((left - 1.25 s) * 7/8), and none below about 2.39 s (a lifetime of 1 s could outlive the
// deadline). A lifetime rounded up, or the plain floor of the time left, fails here.
func TestLifetimeSeconds(t *testing.T) {
	now := time.Now()
	s, ms := time.Second, time.Millisecond
	for _, tc := range []struct {
		left time.Duration // until - now; -1: a zero until
		want uint32
		ok   bool
	}{
		{-1, 0, true}, // no deadline: permanent
		{-s, 0, false},
		{0, 0, false},
		{ms, 0, false},
		{s, 0, false},
		{1800 * ms, 0, false}, // etcd at the defaults: TTL 2 s - margin 200 ms
		{2392 * ms, 0, false}, // 1 s + 1.25 s + 1/7 s is 2.392857 s
		{2393 * ms, 1, true},
		{2700 * ms, 1, true}, // TTL 3 s at the default margin
		{3 * s, 1, true},     // VRRP, 1 s adverts, right after an advert
		{3535 * ms, 1, true}, // 2 s + 1.25 s + 2/7 s is 3.535714 s
		{3536 * ms, 2, true},
		{4500 * ms, 2, true}, // TTL 5 s
		{9 * s, 6, true},     // TTL 10 s: 6 + 1.25 + 6/7 = 8.11 s; 7 would end at 9.25 s
		{29 * s, 24, true},   // TTL 30 s: 24 + 1.25 + 24/7 = 28.68 s
		{3597 * s, 3146, true},
		{200 * 365 * 24 * time.Hour, 0xFFFFFFFE, true},
	} {
		until := now.Add(tc.left)
		if tc.left == -1 {
			until = time.Time{}
		}
		got, ok := lifetimeSeconds(until, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("lifetimeSeconds(now+%v) = %d, %v; want %d, %v", tc.left, got, ok, tc.want, tc.ok)
		}
		if ok && got > 0 && got < 0xFFFFFFFE {
			if end := time.Duration(got)*time.Second + kernelExpiryLateness(got); end > tc.left {
				t.Errorf("lifetime %ds for now+%v can end %v after now, past the deadline", got, tc.left, end)
			}
		}
	}
}
