package vip

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// TestForeignFrame: a frame claiming a VIP with another MAC is a split-brain report only while the
// VIPs are held and the deadline has not passed, and only for a VIP that is bound (not one
// ConflictWait holds back); the node's own announcements and other addresses never are.
func TestForeignFrame(t *testing.T) {
	cfg := validConfig()
	cfg.VIPs = []netip.Prefix{fakeV4, fakeV6}
	m, err := newManager(cfg, zaptest.NewLogger(t), newFakeKernel(), testMAC)
	if err != nil {
		t.Fatal(err)
	}
	other := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	claims := func(mac net.HardwareAddr, v netip.Prefix) []byte {
		a, err := buildAnnouncement(mac, v)
		if err != nil {
			t.Fatal(err)
		}
		return a.frames[0]
	}
	now := time.Now()
	check := func(what string, frame []byte, want bool, wantVIP netip.Prefix) {
		t.Helper()
		c, ok := m.foreignFrame(frame, now)
		if ok != want || (ok && (c.VIP != wantVIP || c.HardwareAddr.String() != other.String())) {
			t.Errorf("%s: foreignFrame = %v, %v; want %v for %s at %s", what, c, ok, want, wantVIP, other)
		}
	}
	check("not held", claims(other, fakeV4), false, fakeV4)

	ctx := context.Background()
	if err := m.Acquire(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	check("held, IPv4", claims(other, fakeV4), true, fakeV4)
	check("held, IPv6", claims(other, fakeV6), true, fakeV6)
	check("held, our own announcement", claims(testMAC, fakeV4), false, fakeV4)
	check("held, another address", claims(other, netip.MustParsePrefix("192.0.2.77/24")), false, fakeV4)

	m.mu.Lock()
	m.pending = map[netip.Prefix]Conflict{fakeV4: {VIP: fakeV4, HardwareAddr: other}}
	m.mu.Unlock()
	check("held back (conflict: wait)", claims(other, fakeV4), false, fakeV4)
	m.mu.Lock()
	m.pending = nil
	m.until = time.Now().Add(-time.Second)
	m.mu.Unlock()
	check("deadline passed", claims(other, fakeV4), false, fakeV4)

	if err := m.Acquire(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := m.Release(ctx); err != nil {
		t.Fatal(err)
	}
	check("released", claims(other, fakeV4), false, fakeV4)
}
