package election

import (
	"net/netip"
	"slices"
	"testing"
)

// RecordVIPs gives the configured VIPs until a reload sets others, then those; neither the caller's
// slice nor the returned one is shared with what it keeps.
func TestRecordVIPs(t *testing.T) {
	a, b := netip.MustParsePrefix("10.0.0.100/24"), netip.MustParsePrefix("10.0.0.5/24")
	configured := []netip.Prefix{a}
	var r RecordVIPs
	if got := r.Get(configured); !slices.Equal(got, configured) {
		t.Fatalf("before Set: %v, want the configured %v", got, configured)
	}
	set := []netip.Prefix{a, b}
	r.Set(set)
	set[0] = b
	got := r.Get(configured)
	if !slices.Equal(got, []netip.Prefix{a, b}) {
		t.Fatalf("after Set: %v, want [%v %v]", got, a, b)
	}
	got[1] = a
	if again := r.Get(configured); !slices.Equal(again, []netip.Prefix{a, b}) {
		t.Fatalf("a caller's change to what Get returned is kept: %v", again)
	}
	r.Set(nil)
	if got := r.Get(configured); len(got) != 0 {
		t.Fatalf("after Set(nil): %v, want none (not the configured ones)", got)
	}
}
