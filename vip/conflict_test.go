package vip

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// These tests drive the conflict policies and the relink over the fake kernel, on synctest's clock.

var otherMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99} // the host that still answers for a VIP

// startConflict runs a Manager with policy over a fake kernel whose probe hears otherMAC answer
// for fakeV4, and returns the log too.
func startConflict(t *testing.T, policy ConflictPolicy) (*Manager, *fakeKernel, *observer.ObservedLogs, func()) {
	t.Helper()
	cfg := validConfig()
	cfg.VIPs = []netip.Prefix{fakeV4, fakeV6}
	cfg.Announce = AnnounceConfig{Count: 1, RepeatInterval: 2 * time.Second}
	cfg.Conflict.Policy = policy
	k := newFakeKernel()
	k.probeTakes = cfg.Conflict.Interval * time.Duration(cfg.Conflict.Probes)
	k.setAnswer(fakeV4.Addr(), otherMAC)
	core, logs := observer.New(zap.DebugLevel)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m, err := newManager(cfg, zap.New(core), k, testMAC)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	synctest.Wait()
	return m, k, logs, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}
}

// loggedMAC reports whether an error line names vip and otherMAC.
func loggedMAC(logs *observer.ObservedLogs, vip netip.Prefix) bool {
	for _, e := range logs.FilterLevelExact(zap.ErrorLevel).All() {
		f := e.ContextMap()
		if f["vip"] == vip.String() && f["mac"] == otherMAC.String() {
			return true
		}
	}
	return false
}

// announcedFor returns the IPv4 addresses the gratuitous ARPs sent so far announce.
func announcedFor(t *testing.T, k *fakeKernel) []netip.Addr {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []netip.Addr
	for _, s := range k.sent {
		var f ethernet.Frame
		var p arp.Packet
		if s.ipv6 || f.UnmarshalBinary(s.frame) != nil || p.UnmarshalBinary(f.Payload) != nil {
			continue
		}
		if !slices.Contains(out, p.SenderIP) {
			out = append(out, p.SenderIP)
		}
	}
	return out
}

func TestConflictBindBindsAndSaysWho(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, logs, stop := startConflict(t, ConflictBind)
		defer stop()
		if err := m.Acquire(context.Background(), time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if b := k.boundCopy(); len(b) != 2 {
			t.Fatalf("bound %v, want both VIPs (conflict: bind)", b)
		}
		if !loggedMAC(logs, fakeV4) {
			t.Errorf("no error naming %s and the other host's MAC %s", fakeV4, otherMAC)
		}
		if len(k.probes) != 1 || len(k.probes[0].targets) != 2 || k.probes[0].rounds != 3 {
			t.Errorf("probes = %+v, want one probe of both VIPs, 3 rounds", k.probes)
		}
	})
}

func TestConflictWaitHoldsBackUntilNobodyAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, logs, stop := startConflict(t, ConflictWait)
		defer stop()
		if err := m.Acquire(context.Background(), time.Time{}); err != nil {
			t.Fatal(err)
		}
		if b := k.boundCopy(); len(b) != 1 || b[fakeV6] != 0 {
			t.Fatalf("bound %v, want only %s: another host answers for %s", b, fakeV6, fakeV4)
		}
		if got := announcedFor(t, k); len(got) != 0 {
			t.Fatalf("announced %v while another host answers for it", got)
		}
		cs := m.Conflicts()
		if len(cs) != 1 || cs[0].VIP != fakeV4 || cs[0].HardwareAddr.String() != otherMAC.String() {
			t.Fatalf("Conflicts = %v, want %s at %s", cs, fakeV4, otherMAC)
		}
		if !loggedMAC(logs, fakeV4) {
			t.Errorf("no error naming %s and %s", fakeV4, otherMAC)
		}
		// The next refresh of the binding does not bind it either.
		if err := m.Extend(context.Background(), time.Time{}); err != nil {
			t.Fatal(err)
		}
		m.Reannounce("test")
		time.Sleep(5 * time.Second) // five retries, the other host still there
		if b := k.boundCopy(); len(b) != 1 {
			t.Fatalf("bound %v after retries while the other host still answers", b)
		}
		if n := len(k.probes); n < 5 {
			t.Fatalf("%d probes in 5s, want a retry every second", n)
		}

		k.setAnswer(fakeV4.Addr(), nil) // the old master is gone
		time.Sleep(1100 * time.Millisecond)
		if b := k.boundCopy(); len(b) != 2 {
			t.Fatalf("bound %v a retry after nobody answers, want both", b)
		}
		if got := announcedFor(t, k); !slices.Equal(got, []netip.Addr{fakeV4.Addr()}) {
			t.Fatalf("announced %v, want %s once bound", got, fakeV4)
		}
		if cs := m.Conflicts(); len(cs) != 0 {
			t.Fatalf("Conflicts = %v after it cleared", cs)
		}
		probes := len(k.probes)
		time.Sleep(5 * time.Second)
		if len(k.probes) != probes {
			t.Fatalf("%d more probes with nothing held back", len(k.probes)-probes)
		}
	})
}

func TestConflictWaitReleaseForgets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, _, stop := startConflict(t, ConflictWait)
		defer stop()
		if err := m.Acquire(context.Background(), time.Time{}); err != nil {
			t.Fatal(err)
		}
		if err := m.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
		k.setAnswer(fakeV4.Addr(), nil)
		time.Sleep(5 * time.Second)
		if b := k.boundCopy(); len(b) != 0 {
			t.Fatalf("bound %v after Release", b)
		}
		if cs := m.Conflicts(); len(cs) != 0 {
			t.Fatalf("Conflicts = %v after Release", cs)
		}
	})
}

func TestConflictFenceRunsTheHookFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, _, stop := startConflict(t, ConflictFence)
		defer stop()
		var got []Conflict
		m.OnConflict(func(_ context.Context, cs []Conflict) error {
			got = cs
			if b := k.boundCopy(); len(b) != 0 {
				t.Errorf("bound %v before the fence hook ran", b)
			}
			return nil
		})
		if err := m.Acquire(context.Background(), time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].VIP != fakeV4 || got[0].HardwareAddr.String() != otherMAC.String() {
			t.Fatalf("the fence hook got %v, want %s at %s", got, fakeV4, otherMAC)
		}
		if b := k.boundCopy(); len(b) != 2 {
			t.Fatalf("bound %v after fencing, want both", b)
		}
	})
}

func TestConflictFenceFailingBindsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, _, stop := startConflict(t, ConflictFence)
		defer stop()
		m.OnConflict(func(context.Context, []Conflict) error { return errors.New("exit status 1") })
		err := m.Acquire(context.Background(), time.Now().Add(time.Minute))
		if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "exit status 1") || !strings.Contains(err.Error(), otherMAC.String()) {
			t.Fatalf("Acquire = %v, want ErrConflict naming the host and the hook's error", err)
		}
		time.Sleep(time.Minute)
		if b, s := k.boundCopy(), k.offsets(time.Now()); len(b) != 0 || len(s) != 0 {
			t.Fatalf("bound %v, sent %d frames after a failed fence; want nothing", b, len(s))
		}
		if _, err := m.Bound(); err != nil {
			t.Fatal(err)
		}
		if err := m.Extend(context.Background(), time.Now().Add(time.Minute)); !errors.Is(err, ErrNotHeld) {
			t.Fatalf("Extend = %v, want ErrNotHeld (the Manager does not hold the VIPs)", err)
		}
	})
}

func TestConflictFenceWithoutHookBinds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, logs, stop := startConflict(t, ConflictFence)
		defer stop()
		if err := m.Acquire(context.Background(), time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if b := k.boundCopy(); len(b) != 2 {
			t.Fatalf("bound %v, want both (no fence hook: bind, and say so)", b)
		}
		if !loggedMAC(logs, fakeV4) {
			t.Error("the conflict was not logged")
		}
	})
}

func TestConflictProbeOnlyBeforeTheFirstBind(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, _, stop := startConflict(t, ConflictBind)
		defer stop()
		for range 3 { // a new term promotes again: the VIPs on the interface are ours
			if err := m.Acquire(context.Background(), time.Now().Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
		if len(k.probes) != 1 {
			t.Fatalf("%d probes for three Acquires while held, want 1", len(k.probes))
		}
	})
}

func TestConflictProbeStopsAtTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, _, stop := startConflict(t, ConflictBind)
		defer stop()
		k.setAnswer(fakeV4.Addr(), nil)
		start := time.Now()
		err := m.Acquire(context.Background(), start.Add(30*time.Millisecond)) // the probe takes 60ms
		if !errors.Is(err, ErrDeadlinePassed) {
			t.Fatalf("Acquire = %v, want ErrDeadlinePassed", err)
		}
		if d := time.Since(start); d != 30*time.Millisecond {
			t.Errorf("Acquire returned after %v, want at the deadline (30ms)", d)
		}
		if b := k.boundCopy(); len(b) != 0 {
			t.Fatalf("bound %v past the deadline", b)
		}
	})
}

func TestConflictOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, _, stop := startConflict(t, ConflictOff)
		defer stop()
		start := time.Now()
		if err := m.Acquire(context.Background(), time.Time{}); err != nil {
			t.Fatal(err)
		}
		if len(k.probes) != 0 || time.Since(start) != 0 {
			t.Fatalf("%d probes, %v: want none and no delay", len(k.probes), time.Since(start))
		}
	})
}

// The interface was deleted and created again under its name: the next bind fails with ENODEV,
// the Manager looks the interface up by name again and binds there, announcing from the new MAC.
func TestBindFollowsARecreatedInterface(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := validConfig()
		cfg.VIPs = []netip.Prefix{fakeV4}
		cfg.Announce = AnnounceConfig{Count: 1, RepeatInterval: 2 * time.Second}
		k := newFakeKernel()
		k.index = 7
		m, k, stop := startFakeConfig(t, cfg, k)
		defer stop()
		if err := m.Acquire(context.Background(), time.Time{}); err != nil {
			t.Fatal(err)
		}
		if err := m.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
		newMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x42}
		k.mu.Lock()
		k.gone, k.newIndex, k.newMAC, k.sent = true, 9, newMAC, nil
		k.mu.Unlock()
		if err := m.Acquire(context.Background(), time.Time{}); err != nil {
			t.Fatalf("Acquire after the interface was created again = %v", err)
		}
		if b := k.boundCopy(); len(b) != 1 || k.index != 9 {
			t.Fatalf("bound %v on index %d, want %s on the new interface (9)", b, k.index, fakeV4)
		}
		k.mu.Lock()
		defer k.mu.Unlock()
		var f ethernet.Frame
		if len(k.sent) == 0 || f.UnmarshalBinary(k.sent[0].frame) != nil || f.Source.String() != newMAC.String() {
			t.Fatalf("announced from %v, want the new interface's MAC %s", f.Source, newMAC)
		}
	})
}

// A delete that finds the index gone deletes on the interface of that name now: a fence guard
// opened on the old interface must still remove what its daemon bound on the new one.
func TestUnbindFollowsARecreatedInterface(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := validConfig()
		cfg.VIPs = []netip.Prefix{fakeV4}
		m, k, stop := startFakeConfig(t, cfg, newFakeKernel())
		defer stop()
		if err := m.Acquire(context.Background(), time.Time{}); err != nil {
			t.Fatal(err)
		}
		k.mu.Lock()
		k.gone, k.newIndex = true, 9
		k.mu.Unlock()
		removed, err := m.Remove(context.Background())
		if err != nil || !slices.Equal(removed, []netip.Prefix{fakeV4}) {
			t.Fatalf("Remove = %v, %v; want %s removed from the interface found by name", removed, err, fakeV4)
		}
		k.mu.Lock()
		k.gone, k.missing = true, true
		k.mu.Unlock()
		if removed, err := m.Remove(context.Background()); err != nil || len(removed) != 0 {
			t.Fatalf("Remove with the interface gone for good = %v, %v; want nothing, no error (its addresses went with it)", removed, err)
		}
	})
}
