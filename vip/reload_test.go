package vip

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

var fakeV4b = netip.MustParsePrefix("192.0.2.101/24")

// A held Manager given a new VIP list binds the new VIP, unbinds the removed one, announces only the
// new one, and never unbinds the VIP that stays.
func TestSetConfigWhileHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, stop := startFake(t, AnnounceConfig{Count: 1, Repeat: 0, RepeatInterval: 1100 * time.Millisecond}, true)
		defer stop()
		if err := m.Acquire(context.Background(), time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		k.mu.Lock()
		k.sent, k.unbinds = nil, 0
		k.mu.Unlock()
		cfg := m.cfg
		cfg.VIPs = []netip.Prefix{fakeV4, fakeV4b}
		added, removed, err := m.SetConfig(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(added, []netip.Prefix{fakeV4b}) || !slices.Equal(removed, []netip.Prefix{fakeV6}) {
			t.Fatalf("SetConfig = +%v -%v, want +%v -%v", added, removed, fakeV4b, fakeV6)
		}
		b := k.boundCopy()
		if _, ok := b[fakeV4b]; !ok || len(b) != 2 {
			t.Fatalf("bound = %v, want %v and %v", b, fakeV4, fakeV4b)
		}
		if _, ok := b[fakeV6]; ok {
			t.Fatalf("bound = %v: the removed VIP is still there", b)
		}
		k.mu.Lock()
		unbinds, sent := k.unbinds, len(k.sent)
		k.mu.Unlock()
		if unbinds != 1 {
			t.Fatalf("%d deletes, want 1 (the removed VIP only)", unbinds)
		}
		if sent != 2 { // one round for the new IPv4 VIP: a GARP request and a reply
			t.Fatalf("%d frames sent, want 2 (the new VIP's burst only)", sent)
		}
		if got, _ := m.Bound(); !slices.Equal(got, []netip.Prefix{fakeV4, fakeV4b}) {
			t.Fatalf("Bound = %v", got)
		}
	})
}

// A Manager that does not hold the VIPs only records the new list: Acquire binds it.
func TestSetConfigNotHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, stop := startFake(t, DefaultConfig().Announce, true)
		defer stop()
		cfg := m.cfg
		cfg.VIPs = []netip.Prefix{fakeV4b}
		if _, _, err := m.SetConfig(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		if b := k.boundCopy(); len(b) != 0 {
			t.Fatalf("bound %v while not held", b)
		}
		if err := m.Acquire(context.Background(), time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if b := k.boundCopy(); len(b) != 1 {
			t.Fatalf("bound = %v, want %v only", b, fakeV4b)
		} else if _, ok := b[fakeV4b]; !ok {
			t.Fatalf("bound = %v, want %v", b, fakeV4b)
		}
	})
}

// A new VIP that cannot be bound leaves the old configuration in place, bound as it was.
func TestSetConfigAllOrNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, stop := startFake(t, DefaultConfig().Announce, true)
		defer stop()
		if err := m.Acquire(context.Background(), time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		k.failBind[fakeV4b] = errors.New("boom")
		cfg := m.cfg
		cfg.VIPs = []netip.Prefix{fakeV4b}
		if _, _, err := m.SetConfig(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "boom") {
			t.Fatalf("SetConfig = %v, want the bind error", err)
		}
		if got := m.VIPs(); !slices.Equal(got, []netip.Prefix{fakeV4, fakeV6}) {
			t.Fatalf("VIPs after a failed SetConfig = %v, want the old list", got)
		}
		if b := k.boundCopy(); len(b) != 2 {
			t.Fatalf("bound = %v, want the old VIPs still bound", b)
		}
		cfg.Interface = "eth1"
		if _, _, err := m.SetConfig(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "interface eth1") {
			t.Fatalf("SetConfig(another interface) = %v, want an error naming it", err)
		}
	})
}

// A new announcement schedule applies while held: a refresh turned on by a reload runs at the new
// period from the reload, and one turned off stops.
func TestSetConfigSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, stop := startFake(t, AnnounceConfig{Count: 1, Repeat: 0, RepeatInterval: 1100 * time.Millisecond}, false)
		defer stop()
		if err := m.Acquire(context.Background(), time.Time{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		start := time.Now()
		cfg := m.cfg
		cfg.Announce.Refresh = 5 * time.Second
		if _, _, err := m.SetConfig(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(12 * time.Second)
		cfg.Announce.Refresh = 0
		if _, _, err := m.SetConfig(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		want := rounds(5*time.Second, 10*time.Second)
		if got := k.offsets(start); !slices.Equal(got[3:], want) { // the first 3: Acquire's burst
			t.Fatalf("frames at %v after the reload, want %v", got[3:], want)
		}
	})
}

// A reload that needs a socket New did not open is refused, changing nothing.
func TestSetConfigNeedsSockets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := validConfig()
		cfg.VIPs = []netip.Prefix{fakeV4}
		m, _, stop := startFakeConfig(t, cfg, newFakeKernel())
		defer stop()
		v6 := cfg
		v6.VIPs = []netip.Prefix{fakeV4, fakeV6}
		if _, _, err := m.SetConfig(context.Background(), v6); !errors.Is(err, ErrNeedsSockets) || !strings.Contains(err.Error(), "IPv6") {
			t.Fatalf("SetConfig(+IPv6) = %v, want ErrNeedsSockets naming IPv6", err)
		}
		if got := m.VIPs(); !slices.Equal(got, cfg.VIPs) {
			t.Fatalf("VIPs = %v after a refused SetConfig", got)
		}
	})
}

// A VIP a reload adds is probed first: with conflict: wait, one another host answers for is held
// back (listed in Conflicts, not bound, not announced) and bound once nobody answers.
func TestSetConfigProbesAddedVIPs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, _, stop := startConflict(t, ConflictWait)
		defer stop()
		k.mu.Lock()
		delete(k.answers, fakeV4.Addr()) // the Acquire binds both
		k.mu.Unlock()
		if err := m.Acquire(context.Background(), time.Time{}); err != nil {
			t.Fatal(err)
		}
		k.setAnswer(fakeV4b.Addr(), otherMAC)
		cfg := m.cfg
		cfg.VIPs = []netip.Prefix{fakeV4, fakeV6, fakeV4b}
		if _, _, err := m.SetConfig(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		if _, ok := k.boundCopy()[fakeV4b]; ok {
			t.Fatalf("bound %s while another host answers for it", fakeV4b)
		}
		if cs := m.Conflicts(); len(cs) != 1 || cs[0].VIP != fakeV4b {
			t.Fatalf("Conflicts = %v, want %s", cs, fakeV4b)
		}
		k.mu.Lock()
		delete(k.answers, fakeV4b.Addr())
		k.mu.Unlock()
		time.Sleep(2 * time.Second) // the retry (every second)
		if _, ok := k.boundCopy()[fakeV4b]; !ok {
			t.Fatalf("%s not bound once nobody answers: %v", fakeV4b, k.boundCopy())
		}
	})
}
