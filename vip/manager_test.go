package vip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"
)

// These tests drive the Manager's schedule and fencing over a fake kernel, on synctest's fake clock:
// time.Sleep below advances the bubble's clock once every goroutine is idle, it does not wait.

type sentFrame struct {
	at    time.Time
	ipv6  bool
	frame []byte
}

type fakeKernel struct {
	events chan event // what watch reports

	mu         sync.Mutex
	bound      map[netip.Prefix]uint32 // VIP -> lifetime (0 = permanent)
	binds      int
	failBind   map[netip.Prefix]error
	bindTakes  time.Duration // how long a bind request takes (a slow kernel, a stopped process)
	failUnbind int           // fail this many more deletes
	unbinds    int           // delete requests, failed ones included
	lists      int           // address listings
	up         bool
	sent       []sentFrame

	// The conflict probe: what it hears (by address; nil: nobody answers), how long it takes when
	// nobody answers, and the requests made.
	answers    map[netip.Addr]net.HardwareAddr
	probeTakes time.Duration
	probes     []probeRequest
	// The interface: gone is true while its index is gone (bind and unbind fail with ENODEV);
	// relink then finds newIndex and newMAC, or no interface while missing.
	gone     bool
	missing  bool
	index    int
	newIndex int
	newMAC   net.HardwareAddr
	relinks  int
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{events: make(chan event), bound: map[netip.Prefix]uint32{}, failBind: map[netip.Prefix]error{}, up: true}
}

func (k *fakeKernel) bind(v netip.Prefix, lifetime uint32) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.gone {
		return fmt.Errorf("netlink: %w", unix.ENODEV)
	}
	if err := k.failBind[v]; err != nil {
		return err
	}
	k.binds++
	k.bound[v] = lifetime
	if k.bindTakes > 0 {
		time.Sleep(k.bindTakes) // the request is applied at once, the reply comes late
	}
	return nil
}

func (k *fakeKernel) unbind(v netip.Prefix) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.unbinds++
	if k.gone {
		return false, fmt.Errorf("netlink: %w", unix.ENODEV)
	}
	if k.failUnbind > 0 {
		k.failUnbind--
		return false, errors.New("netlink: no buffer space available")
	}
	_, ok := k.bound[v]
	delete(k.bound, v)
	return ok, nil
}

func (k *fakeKernel) addrs() ([]netip.Prefix, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lists++
	var out []netip.Prefix
	for p := range k.bound {
		out = append(out, p)
	}
	return out, nil
}

func (k *fakeKernel) linkUp() (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.up, nil
}

func (k *fakeKernel) send(frame []byte, ipv6 bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.sent = append(k.sent, sentFrame{at: time.Now(), ipv6: ipv6, frame: slices.Clone(frame)})
	return nil
}

func (k *fakeKernel) watch(ctx context.Context, out chan<- event) error {
	select {
	case out <- event{kind: subscribed}:
	case <-ctx.Done():
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-k.events:
			select {
			case out <- ev:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

func (k *fakeKernel) close() error { return nil }

func (k *fakeKernel) probe(ctx context.Context, req probeRequest) ([]answer, error) {
	k.mu.Lock()
	k.probes = append(k.probes, req)
	var out []answer
	for _, a := range req.targets {
		if mac, ok := k.answers[a]; ok {
			out = append(out, answer{addr: a, mac: mac})
		}
	}
	takes := k.probeTakes
	k.mu.Unlock()
	if len(out) < len(req.targets) && takes > 0 {
		select {
		case <-time.After(takes):
		case <-ctx.Done():
		}
	}
	return out, nil
}

func (k *fakeKernel) relink() (int, net.HardwareAddr, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.relinks++
	if k.missing {
		return 0, nil, false, errors.New("Link not found")
	}
	if !k.gone {
		return k.index, testMAC, false, nil
	}
	k.gone, k.index = false, k.newIndex
	mac := testMAC
	if k.newMAC != nil {
		mac = k.newMAC
	}
	return k.index, mac, true, nil
}

// setAnswer makes the probe hear mac answer for a (nil: nobody answers any more).
func (k *fakeKernel) setAnswer(a netip.Addr, mac net.HardwareAddr) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.answers == nil {
		k.answers = map[netip.Addr]net.HardwareAddr{}
	}
	if mac == nil {
		delete(k.answers, a)
		return
	}
	k.answers[a] = mac
}

// remove deletes v behind the Manager's back, as `ip addr del` would, and reports it.
func (k *fakeKernel) remove(v netip.Prefix) {
	k.mu.Lock()
	delete(k.bound, v)
	k.mu.Unlock()
	k.events <- event{kind: addrRemoved, addr: v}
}

// offsets returns the instants frames were sent, as offsets from start (one per frame).
func (k *fakeKernel) offsets(start time.Time) []time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []time.Duration
	for _, s := range k.sent {
		out = append(out, s.at.Sub(start))
	}
	return out
}

func (k *fakeKernel) boundCopy() map[netip.Prefix]uint32 {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[netip.Prefix]uint32, len(k.bound))
	for p, l := range k.bound {
		out[p] = l
	}
	return out
}

var (
	fakeV4 = netip.MustParsePrefix("192.0.2.100/24")
	fakeV6 = netip.MustParsePrefix("2001:db8::100/64")
)

// startFake builds a Manager over a fake kernel and runs it until the returned stop is called.
// Call inside a synctest bubble.
func startFake(t *testing.T, announce AnnounceConfig, lifetime bool) (*Manager, *fakeKernel, func()) {
	t.Helper()
	cfg := validConfig()
	cfg.VIPs = []netip.Prefix{fakeV4, fakeV6}
	cfg.Announce = announce
	cfg.Lifetime = lifetime
	return startFakeConfig(t, cfg, newFakeKernel())
}

// startFakeConfig is startFake with a Config and kernel of the test's own.
func startFakeConfig(t *testing.T, cfg Config, k *fakeKernel) (*Manager, *fakeKernel, func()) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m, err := newManager(cfg, zaptest.NewLogger(t), k, testMAC)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	synctest.Wait() // Run has subscribed and is idle
	return m, k, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}
}

// round repeats offset d once per frame of a round: 2 gratuitous ARPs for the IPv4 VIP and 1 NA for
// the IPv6 VIP.
func round(d time.Duration) []time.Duration { return []time.Duration{d, d, d} }

func rounds(ds ...time.Duration) []time.Duration {
	var out []time.Duration
	for _, d := range ds {
		out = append(out, round(d)...)
	}
	return out
}

func TestScheduleBurstRepeatsRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, stop := startFake(t, AnnounceConfig{Count: 2, Repeat: 2, RepeatInterval: 1100 * time.Millisecond, Refresh: 10 * time.Second}, true)
		defer stop()
		start := time.Now()
		if err := m.Acquire(context.Background(), time.Time{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(25 * time.Second)
		ms := time.Millisecond
		want := rounds(0, 0, 1100*ms, 2200*ms, 10*time.Second, 20*time.Second)
		if got := k.offsets(start); !slices.Equal(got, want) {
			t.Fatalf("frames sent at %v, want %v", got, want)
		}
		if got := k.boundCopy(); len(got) != 2 || got[fakeV4] != 0 || got[fakeV6] != 0 {
			t.Fatalf("bound = %v, want both VIPs, permanent (zero deadline)", got)
		}
	})
}

func TestAcquireRefusesPassedDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, stop := startFake(t, DefaultConfig().Announce, true)
		defer stop()
		for _, until := range []time.Time{time.Now(), time.Now().Add(-time.Second)} {
			err := m.Acquire(context.Background(), until)
			if !errors.Is(err, ErrDeadlinePassed) {
				t.Fatalf("Acquire(past deadline) = %v, want ErrDeadlinePassed", err)
			}
		}
		time.Sleep(time.Minute)
		if b, s := k.boundCopy(), k.offsets(time.Now()); len(b) != 0 || len(s) != 0 {
			t.Fatalf("after a refused Acquire: bound %v, %d frames sent; want nothing", b, len(s))
		}
		if err := m.Extend(context.Background(), time.Now().Add(time.Minute)); !errors.Is(err, ErrNotHeld) {
			t.Fatalf("Extend after a refused Acquire = %v, want ErrNotHeld", err)
		}
	})
}

// TestNoAnnounceAfterDeadline is the SIGSTOP scenario: the deadline passes with repeat and refresh
// timers pending (the coordinator could not release: stopped, or stuck). When they fire, nothing may
// be sent, and a VIP removed meanwhile (by the kernel lifetime, or the new master's operator) must
// not be added back.
func TestNoAnnounceAfterDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, stop := startFake(t, AnnounceConfig{Count: 1, Repeat: 3, RepeatInterval: 1100 * time.Millisecond, Refresh: 2 * time.Second}, true)
		defer stop()
		start := time.Now()
		until := start.Add(1500 * time.Millisecond)
		if err := m.Acquire(context.Background(), until); err != nil {
			t.Fatal(err)
		}
		if got := k.boundCopy()[fakeV4]; got != 0 {
			t.Errorf("kernel lifetime = %ds, want none (no lifetime ends safely within 1.5s)", got)
		}
		time.Sleep(5 * time.Second)
		binds := k.binds
		k.remove(fakeV4)
		time.Sleep(time.Minute)
		if got, want := k.offsets(start), rounds(0, 1100*time.Millisecond); !slices.Equal(got, want) {
			t.Fatalf("frames sent at %v, want %v (nothing at or after the deadline %v)", got, want, until.Sub(start))
		}
		if k.binds != binds {
			t.Fatalf("a VIP removed after the deadline was bound again")
		}
		if err := m.Extend(context.Background(), until); !errors.Is(err, ErrDeadlinePassed) {
			t.Fatalf("Extend(passed deadline) = %v, want ErrDeadlinePassed", err)
		}
		if err := m.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
		if b := k.boundCopy(); len(b) != 0 {
			t.Fatalf("bound after Release = %v", b)
		}
	})
}

func TestReleaseStopsEverything(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, stop := startFake(t, AnnounceConfig{Count: 1, Repeat: 3, RepeatInterval: 1100 * time.Millisecond, Refresh: 2 * time.Second}, false)
		defer stop()
		start := time.Now()
		if err := m.Acquire(context.Background(), time.Time{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		if err := m.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := m.Release(context.Background()); err != nil {
			t.Fatalf("second Release = %v, want nil (idempotent)", err)
		}
		k.remove(fakeV6) // a late event about an address Release removed
		k.events <- event{kind: linkChanged, up: false}
		k.events <- event{kind: linkChanged, up: true}
		time.Sleep(time.Minute)
		if got, want := k.offsets(start), round(0); !slices.Equal(got, want) {
			t.Fatalf("frames sent at %v, want only the burst %v", got, want)
		}
		if b := k.boundCopy(); len(b) != 0 {
			t.Fatalf("bound after Release = %v", b)
		}
		if err := m.Extend(context.Background(), time.Time{}); !errors.Is(err, ErrNotHeld) {
			t.Fatalf("Extend after Release = %v, want ErrNotHeld", err)
		}
	})
}

func TestRepairRemovedVIP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, stop := startFake(t, AnnounceConfig{Count: 1, RepeatInterval: 2 * time.Second}, true)
		defer stop()
		start := time.Now()
		if err := m.Acquire(context.Background(), start.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		k.remove(fakeV4)
		synctest.Wait()
		if got := k.boundCopy(); got[fakeV4] != 3146 {
			t.Fatalf("bound = %v, want %v added back with the lifetime left (3597s, less the kernel's lateness: 3146s)", got, fakeV4)
		}
		want := append(round(0), 3*time.Second, 3*time.Second) // the IPv4 VIP's two GARPs
		if got := k.offsets(start); !slices.Equal(got, want) {
			t.Fatalf("frames sent at %v, want %v", got, want)
		}
	})
}

func TestRefreshRepairsMissedRemoval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, stop := startFake(t, AnnounceConfig{Count: 1, RepeatInterval: 2 * time.Second, Refresh: 5 * time.Second}, false)
		defer stop()
		if err := m.Acquire(context.Background(), time.Time{}); err != nil {
			t.Fatal(err)
		}
		k.mu.Lock()
		delete(k.bound, fakeV6) // and no event: the subscription missed it
		k.mu.Unlock()
		time.Sleep(6 * time.Second)
		if _, ok := k.boundCopy()[fakeV6]; !ok {
			t.Fatal("the refresh did not add back a VIP whose removal went unreported")
		}
	})
}

func TestLinkUpAnnouncesAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, stop := startFake(t, AnnounceConfig{Count: 2, Repeat: 1, RepeatInterval: 1100 * time.Millisecond}, false)
		defer stop()
		start := time.Now()
		if err := m.Acquire(context.Background(), time.Time{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		k.events <- event{kind: linkChanged, up: false}
		time.Sleep(5 * time.Second)
		k.events <- event{kind: linkChanged, up: true}
		time.Sleep(5 * time.Second)
		s := time.Second
		want := rounds(0, 0, 1100*time.Millisecond, 10*s, 10*s, 11100*time.Millisecond)
		if got := k.offsets(start); !slices.Equal(got, want) {
			t.Fatalf("frames sent at %v, want %v (a new burst and repeats after link up)", got, want)
		}
	})
}

func TestExtendRenewsLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, stop := startFake(t, AnnounceConfig{RepeatInterval: 2 * time.Second}, true)
		defer stop()
		if err := m.Acquire(context.Background(), time.Now().Add(2*time.Second)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		if err := m.Extend(context.Background(), time.Now().Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
		if got := k.boundCopy(); got[fakeV4] != 3 || got[fakeV6] != 3 {
			t.Fatalf("lifetimes after Extend = %v, want 3s each (3s + the kernel's 1.68s lateness end by 5s)", got)
		}
		if err := m.Extend(context.Background(), time.Time{}); err != nil {
			t.Fatal(err)
		}
		if got := k.boundCopy(); got[fakeV4] != 0 || got[fakeV6] != 0 {
			t.Fatalf("lifetimes after Extend(zero) = %v, want permanent", got)
		}
	})
}

func TestExtendWithoutLifetimeIsFree(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, stop := startFake(t, AnnounceConfig{RepeatInterval: 2 * time.Second}, false)
		defer stop()
		if err := m.Acquire(context.Background(), time.Now().Add(2*time.Second)); err != nil {
			t.Fatal(err)
		}
		binds := k.binds
		for range 10 {
			time.Sleep(500 * time.Millisecond)
			if err := m.Extend(context.Background(), time.Now().Add(2*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		if k.binds != binds {
			t.Fatalf("Extend without Lifetime made %d kernel calls, want 0", k.binds-binds)
		}
	})
}

func TestAcquireAllOrNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, stop := startFake(t, DefaultConfig().Announce, true)
		defer stop()
		k.failBind[fakeV6] = errors.New("boom")
		err := m.Acquire(context.Background(), time.Now().Add(time.Minute))
		if err == nil || !strings.Contains(err.Error(), "vip: add 2001:db8::100/64 on eth0: boom") {
			t.Fatalf("Acquire = %v, want the bind error naming the VIP and interface", err)
		}
		time.Sleep(time.Minute)
		if b, s := k.boundCopy(), k.offsets(time.Now()); len(b) != 0 || len(s) != 0 {
			t.Fatalf("after a failed Acquire: bound %v, %d frames; want nothing (rolled back)", b, len(s))
		}
	})
}

func TestAcquireTwiceBindsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, stop := startFake(t, DefaultConfig().Announce, true)
		defer stop()
		for range 2 {
			if err := m.Acquire(context.Background(), time.Now().Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
		got, err := m.Bound()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, []netip.Prefix{fakeV4, fakeV6}) {
			t.Fatalf("Bound = %v", got)
		}
		_ = k
	})
}

func TestClosedManager(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, _, stop := startFake(t, DefaultConfig().Announce, true)
		stop()
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if err := m.Close(); err != nil {
			t.Fatalf("second Close = %v", err)
		}
		if err := m.Acquire(context.Background(), time.Time{}); !errors.Is(err, ErrClosed) {
			t.Fatalf("Acquire after Close = %v, want ErrClosed", err)
		}
		if err := m.Run(context.Background()); err == nil {
			t.Fatal("second Run succeeded")
		}
	})
}

// Reannounce sends a fresh burst and repeats for held VIPs, and nothing once they are released or
// past their deadline.
func TestReannounce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, stop := startFake(t, AnnounceConfig{Count: 1, Repeat: 1, RepeatInterval: 1100 * time.Millisecond}, false)
		defer stop()
		start := time.Now()
		m.Reannounce("not held") // nothing
		if err := m.Acquire(context.Background(), start.Add(20*time.Second)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		m.Reannounce("contact regained")
		time.Sleep(20 * time.Second) // the deadline passes
		m.Reannounce("too late")
		synctest.Wait()
		want := rounds(0, 1100*time.Millisecond, 5*time.Second, 6100*time.Millisecond)
		if got := k.offsets(start); !slices.Equal(got, want) {
			t.Fatalf("frames sent at %v, want %v", got, want)
		}
	})
}

// A deadline too near for any kernel lifetime to end by it binds without one (a lifetime of 1 s
// could outlive it), and a later, farther deadline puts the lifetime back.
func TestNearDeadlineBindsWithoutLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, stop := startFake(t, AnnounceConfig{RepeatInterval: 2 * time.Second}, true)
		defer stop()
		if err := m.Acquire(context.Background(), time.Now().Add(1800*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if got := k.boundCopy(); len(got) != 2 || got[fakeV4] != 0 || got[fakeV6] != 0 {
			t.Fatalf("bound = %v, want both VIPs without a lifetime", got)
		}
		binds := func() int {
			k.mu.Lock()
			defer k.mu.Unlock()
			return k.binds
		}
		// Extending to deadlines as near changes nothing in the kernel: no request.
		n := binds()
		for range 3 {
			time.Sleep(500 * time.Millisecond)
			if err := m.Extend(context.Background(), time.Now().Add(1800*time.Millisecond)); err != nil {
				t.Fatal(err)
			}
		}
		if got := binds(); got != n {
			t.Fatalf("%d binds extending without a lifetime to a near deadline; want none", got-n)
		}
		if err := m.Extend(context.Background(), time.Now().Add(2700*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if got := k.boundCopy(); got[fakeV4] != 1 || got[fakeV6] != 1 {
			t.Fatalf("bound = %v, want 1s lifetimes for a deadline 2.7s away", got)
		}
		// Near again: the lifetimes must go (a 1s lifetime could outlive the deadline), once.
		n = binds()
		for range 2 {
			if err := m.Extend(context.Background(), time.Now().Add(1800*time.Millisecond)); err != nil {
				t.Fatal(err)
			}
		}
		if got, b := k.boundCopy(), binds(); got[fakeV4] != 0 || got[fakeV6] != 0 || b != n+2 {
			t.Fatalf("bound = %v after %d binds; want both without a lifetime, after 2", got, b-n)
		}
	})
}

// A bind whose reply comes after the deadline (the process was stopped mid-request) may have bound
// the VIP after the deadline: it is taken back, and Acquire fails.
func TestBindFinishingAfterTheDeadlineIsUndone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, stop := startFake(t, AnnounceConfig{Count: 1, RepeatInterval: 2 * time.Second}, true)
		defer stop()
		k.mu.Lock()
		k.bindTakes = 2 * time.Second
		k.mu.Unlock()
		start := time.Now()
		err := m.Acquire(context.Background(), start.Add(time.Second))
		if !errors.Is(err, ErrDeadlinePassed) {
			t.Fatalf("Acquire = %v, want ErrDeadlinePassed", err)
		}
		if b, s := k.boundCopy(), k.offsets(start); len(b) != 0 || len(s) != 0 {
			t.Fatalf("after a bind that ended past the deadline: bound %v, %d frames; want nothing", b, len(s))
		}
	})
}

// Remove, the fence guard's release, deletes every configured VIP without listing the interface
// first, reports which were there, and a failed delete is retried by calling it again.
func TestRemoveDeletesWithoutListing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, stop := startFake(t, AnnounceConfig{RepeatInterval: 2 * time.Second}, false)
		defer stop()
		k.mu.Lock()
		k.bound[fakeV6] = 0 // left by the daemon: only one of the two VIPs is bound
		k.failUnbind = 3
		lists := k.lists
		k.mu.Unlock()
		var removed []netip.Prefix
		var err error
		for range 3 { // both deletes fail, then the IPv4 one; the third try succeeds
			var r []netip.Prefix
			r, err = m.Remove(context.Background())
			removed = append(removed, r...)
			if err == nil {
				break
			}
			if !strings.Contains(err.Error(), "vip: delete 192.0.2.100/24 on eth0") {
				t.Fatalf("Remove = %v, want the delete error naming the VIP", err)
			}
		}
		if err != nil {
			t.Fatalf("Remove still failing after the fake kernel recovered: %v", err)
		}
		if !slices.Equal(removed, []netip.Prefix{fakeV6}) {
			t.Fatalf("Remove reported %v removed, want %v", removed, fakeV6)
		}
		k.mu.Lock()
		defer k.mu.Unlock()
		if len(k.bound) != 0 || k.lists != lists || k.unbinds != 6 {
			t.Fatalf("bound %v, %d listings, %d deletes; want nothing bound, no listing, 6 deletes", k.bound, k.lists-lists, k.unbinds)
		}
	})
}

// TestBoundFromNotifications: while Run watches, Bound answers from one listing kept up to date by
// the notifications (an address added or removed behind the Manager's back) and the Manager's own
// binds and deletes, lists again after a new subscription and after addrsMaxAge, and lists every
// time without Run.
func TestBoundFromNotifications(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, stop := startFake(t, DefaultConfig().Announce, false)
		bound := func(want ...netip.Prefix) {
			t.Helper()
			got, err := m.Bound()
			if err != nil || !slices.Equal(got, want) {
				t.Fatalf("Bound = %v, %v; want %v", got, err, want)
			}
		}
		lists := func() int {
			k.mu.Lock()
			defer k.mu.Unlock()
			return k.lists
		}
		bound()
		n := lists()
		bound()
		if got := lists(); got != n {
			t.Fatalf("%d listings for a second Bound; want none", got-n)
		}
		// Added and removed behind its back (not held: nothing is repaired), with the notifications.
		k.mu.Lock()
		k.bound[fakeV6] = 0
		k.mu.Unlock()
		k.events <- event{kind: addrAdded, addr: fakeV6}
		synctest.Wait()
		bound(fakeV6)
		k.remove(fakeV6)
		synctest.Wait()
		bound()
		if err := m.Acquire(context.Background(), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		bound(fakeV4, fakeV6) // the Manager's own binds
		if err := m.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
		bound() // its own deletes
		if got := lists(); got != n {
			t.Fatalf("%d listings while the notifications kept the addresses; want none", got-n)
		}

		// Something changed unnoticed: a new subscription (an overflow) lists again.
		k.mu.Lock()
		k.bound[fakeV4] = 0
		k.mu.Unlock()
		bound()
		k.events <- event{kind: subscribed}
		synctest.Wait()
		bound(fakeV4)
		// Unnoticed again: addrsMaxAge later Bound lists anyway.
		k.mu.Lock()
		delete(k.bound, fakeV4)
		k.mu.Unlock()
		time.Sleep(addrsMaxAge - time.Second)
		bound(fakeV4)
		time.Sleep(time.Second)
		bound()

		// Without Run, every Bound lists.
		stop()
		k.mu.Lock()
		k.bound[fakeV6] = 0
		k.mu.Unlock()
		bound(fakeV6)
	})
}

// TestWatchFailureAfterSubscribed: watch queues subscribed (at its start or after an overflow) and
// then fails; Run may see the failure first. The queued subscribed must not mark the addresses as
// kept by notifications after the failure stopped watching: Bound lists afresh from then on.
func TestWatchFailureAfterSubscribed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := validConfig()
		cfg.VIPs = []netip.Prefix{fakeV4, fakeV6}
		k := newFakeKernel()
		m, err := newManager(cfg, zaptest.NewLogger(t), k, testMAC)
		if err != nil {
			t.Fatal(err)
		}
		events := make(chan event, 16)
		events <- event{kind: subscribed}
		m.watchFailed(events, errors.New("netlink notifications: broken"))
		// Run's loop goes on with whatever is still queued.
		for len(events) > 0 {
			m.handle(<-events)
		}
		if got, err := m.Bound(); err != nil || len(got) != 0 {
			t.Fatalf("Bound = %v, %v; want none", got, err)
		}
		k.mu.Lock()
		k.bound[fakeV4] = 0 // unnoticed: no notifications any more
		k.mu.Unlock()
		if got, err := m.Bound(); err != nil || !slices.Equal(got, []netip.Prefix{fakeV4}) {
			t.Fatalf("Bound = %v, %v after the watch failed; want a fresh listing, %v", got, err, fakeV4)
		}
	})
}
