package vip

import (
	"net/netip"
	"strings"
	"testing"
)

// The address-class rules of validate.go: a VIP that is a subnet's broadcast address or has a /0
// prefix is refused, naming it; the neighbouring addresses and point-to-point prefixes are not.
func TestValidateAddressClasses(t *testing.T) {
	for _, tc := range []struct {
		vip, want string // want "": valid
	}{
		{"10.0.0.255/24", "VIP 10.0.0.255/24 is the broadcast address of its subnet 10.0.0.0/24"},
		{"10.0.0.127/25", "broadcast address"},
		{"10.0.0.3/30", "broadcast address"},
		{"10.0.0.254/24", ""},
		{"10.0.0.1/31", ""},
		{"10.0.0.255/32", ""},
		{"10.0.0.1/0", "VIP 10.0.0.1/0 has prefix length 0"},
		{"2001:db8::1/0", "prefix length 0"},
		{"2001:db8::ffff/112", ""}, // IPv6 has no broadcast
	} {
		c := validConfig()
		c.VIPs = []netip.Prefix{netip.MustParsePrefix(tc.vip)}
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want valid", tc.vip, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.vip, err, tc.want)
		}
	}
}
