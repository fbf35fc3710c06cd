package vip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

var (
	// ErrDeadlinePassed is returned by Acquire and Extend when the self-fencing deadline is not in the
	// future: the node may no longer be master, so nothing was bound or extended.
	ErrDeadlinePassed = errors.New("self-fencing deadline has passed")
	// ErrNotHeld is returned by Extend when the VIPs are not held (no Acquire, or Released since).
	ErrNotHeld = errors.New("VIPs are not held")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("manager closed")
)

// A Manager binds a set of VIPs to one interface and announces them while they are held.
//
// Concurrency contract: Acquire, Extend, Release, Cleanup, Bound and Close may be called from any
// goroutine (in hacoord, the coordinator's), concurrently with Run. One mutex serialises them with
// Run's own work, and every kernel change and every frame sent happens under it, after checking the
// deadline. So once Release has returned, the Manager sends nothing and binds nothing until the next
// Acquire, and it never sends or binds once time.Now() has reached the deadline of the last Acquire or
// Extend.
//
// Network namespace: New opens all its sockets, the netlink notification socket that Run reads
// included, in the network namespace of the calling OS thread — the process's own, unless the caller
// has locked its thread into another one (tests do, with netnstest.NS.Do). The Manager never
// switches namespaces afterwards (that would need CAP_SYS_ADMIN), so any goroutine may call Run and
// the other methods.
type Manager struct {
	cfg  Config
	log  *zap.Logger
	k    kernel
	wake chan struct{} // capacity 1: the schedule changed, Run recomputes its timer
	ran  atomic.Bool   // Run was called
	// onConflict is what ConflictFence calls (OnConflict); nil: none.
	onConflict func(ctx context.Context, cs []Conflict) error
	// onForeign hears the split-brain watch (OnForeign, watch.go) on foreign's sockets; announced
	// counts the announcement frames sent.
	onForeign func(Conflict)
	foreign   *foreignWatch
	announced atomic.Uint64

	mu     sync.Mutex // guards the fields below and serialises all kernel calls but watch
	closed bool
	// mac is the interface's hardware address; anns and probes are built from it (again when a
	// relink finds a new one). anns is nil when cfg announces nothing, probes nil when it does not
	// probe or the interface has no Ethernet address.
	mac    net.HardwareAddr
	anns   []announcement // one per VIP, in cfg.VIPs order
	probes [][]byte       // one per VIP, in cfg.VIPs order
	// pending are the VIPs ConflictWait holds back while held, because another host answers for
	// them; Run probes them again at nextProbe.
	pending   map[netip.Prefix]Conflict
	nextProbe time.Time
	held      bool
	until     time.Time // self-fencing deadline while held; zero = none
	linkUp    bool      // the interface is up and running, as last seen
	// noBackstop: with Lifetime, the last bind came too close to the deadline for a kernel lifetime
	// to end by it, so the VIPs are bound without one (logged once per run of such binds, and once
	// per Acquire).
	noBackstop bool
	// The announcement schedule while held: repeats rounds left, RepeatInterval apart, and the next
	// periodic refresh (zero when off).
	repeatsLeft int
	nextRepeat  time.Time
	nextRefresh time.Time
	// The interface's addresses as Run's subscription keeps them, so that Bound answers without a
	// listing (the status file asks every second): filled by a listing while watching, kept by
	// the address notifications and the Manager's own binds and deletes, and dropped (nil) when
	// notifications may have been missed (a new subscription, an overflow, a link change, a new
	// interface) or Run stops watching. Bound lists again when it is older than addrsMaxAge.
	watching bool // Run's subscription is live (its subscribed event was handled)
	addrs    map[netip.Prefix]bool
	addrsAt  time.Time // when addrs was listed
}

// addrsMaxAge is how long Bound trusts the notifications alone before it lists the addresses
// again: a backstop, should a notification ever go missing without an overflow.
const addrsMaxAge = 30 * time.Second

// New validates cfg and opens the sockets the Manager needs (see the Manager's namespace contract):
// a netlink handle and notification socket, and, when cfg announces or probes anything, one
// AF_PACKET socket per address family of the VIPs (CAP_NET_RAW). It starts no goroutines. An
// interface that does not exist is an error naming it. log (nil: no logging) is used as given; the
// caller names it. Close releases the sockets.
func New(cfg Config, log *zap.Logger) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	k, mac, err := openNetlink(cfg)
	if err != nil {
		return nil, err
	}
	m, err := newManager(cfg, log, k, mac)
	if err != nil {
		_ = k.close()
		return nil, err
	}
	if m.foreign, err = openForeignWatch(cfg, mac); err != nil {
		_ = k.close()
		return nil, fmt.Errorf("vip: split-brain watch on %s: %w", cfg.Interface, err)
	}
	return m, nil
}

// newManager builds a Manager over k, which it owns from now on.
func newManager(cfg Config, log *zap.Logger, k kernel, mac net.HardwareAddr) (*Manager, error) {
	if log == nil {
		log = zap.NewNop()
	}
	m := &Manager{
		cfg:  cfg,
		log:  log.With(zap.String("interface", cfg.Interface)),
		k:    k,
		wake: make(chan struct{}, 1),
	}
	if err := m.setMACLocked(mac); err != nil {
		return nil, err
	}
	if cfg.probes() && m.probes == nil {
		m.log.Warn("the interface has no Ethernet address: VIPs are bound without a conflict probe", zap.Stringer("mac", mac))
	}
	up, err := k.linkUp()
	if err != nil {
		return nil, fmt.Errorf("vip: state of %s: %w", cfg.Interface, err)
	}
	m.linkUp = up
	return m, nil
}

// Run watches the interface and keeps the announcement schedule until ctx is done, then returns nil.
// While the VIPs are held and the deadline has not passed, it re-adds (and announces) a VIP that
// someone removed, announces again when the interface comes back up, sends the repeated rounds after
// Acquire's burst, and every Refresh checks the binding and re-announces. Without Run, Acquire still
// binds and sends the first burst, but nothing more happens. Run may be called once.
func (m *Manager) Run(ctx context.Context) error {
	if !m.ran.CompareAndSwap(false, true) {
		return errors.New("vip: Run called twice")
	}
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	events := make(chan event, 16)
	watchErr := make(chan error, 1)
	wg.Go(func() { watchErr <- m.k.watch(wctx, events) })
	wg.Go(func() { m.watchForeign(wctx) })

	defer m.stopWatching()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if next, ok := m.nextWake(); ok {
			timer.Reset(time.Until(next))
		} else {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-m.wake:
		case <-timer.C:
			m.tick()
		case ev := <-events:
			m.handle(ev)
		case err := <-watchErr:
			if ctx.Err() != nil {
				return nil
			}
			m.watchFailed(events, err)
		}
	}
}

// watchFailed handles the end of watch with err (not expected: overflow is recovered from inside
// watch; the periodic refresh still checks the binding and the link). watch has returned, so what
// it queued on events is all it sent: handle that first, and stop watching after it, so that a
// subscribed it queued before failing (select picks either when both are ready) cannot mark the
// addresses as kept by notifications that no longer come.
func (m *Manager) watchFailed(events <-chan event, err error) {
	for len(events) > 0 {
		m.handle(<-events)
	}
	m.stopWatching()
	m.log.Error("watching the interface failed; relying on the periodic refresh", zap.Error(err))
}

// stopWatching tells Bound that no notifications keep the addresses any more.
func (m *Manager) stopWatching() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.watching = false
	m.forgetAddrsLocked()
}

// Acquire binds every VIP (idempotent: a bound VIP is updated in place, never duplicated), sends the
// announcement burst and schedules the repeats and refreshes. until is the self-fencing deadline on
// the monotonic clock (zero: none); with Config.Lifetime the kernel removes the VIPs by
// itself before it unless Extend moves it (see "Lifetime backstop" in the package documentation for
// when it cannot). An until that is not in the future is refused with ErrDeadlinePassed, binding
// nothing.
//
// Unless the VIPs are held already, Acquire first probes for another host answering for them
// and applies Config.Conflict.Policy (see "Conflict probe" in the package documentation); the
// probe ends by ctx's end and by until, and binds nothing then.
//
// Acquire is all or nothing: if a VIP cannot be bound it removes them all again, returns the error,
// and the Manager does not hold them (the VIPs ConflictWait holds back are not bound, and are not
// a failure). A failure to send an announcement is logged, not returned:
// the VIPs are bound, and Run announces again when it can.
func (m *Manager) Acquire(ctx context.Context, until time.Time) error {
	return m.acquire(ctx, until, true)
}

// acquire is Acquire; probe false skips the conflict probe (AcquireAfterHandover).
func (m *Manager) acquire(ctx context.Context, until time.Time, probe bool) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("vip: acquire on %s: %w", m.cfg.Interface, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("vip: acquire on %s: %w", m.cfg.Interface, ErrClosed)
	}
	// Probe before the first bind only: once held, the VIPs on the interface are this node's.
	var (
		hold map[netip.Prefix]Conflict
		err  error
	)
	if !m.held && probe {
		hold, err = m.checkConflictsLocked(ctx, until)
	}
	for _, v := range m.cfg.VIPs {
		if err != nil {
			break
		}
		if _, held := hold[v]; held || m.isPendingLocked(v) {
			continue
		}
		if err = ctx.Err(); err != nil {
			err = fmt.Errorf("vip: acquire on %s: %w", m.cfg.Interface, err)
			break
		}
		if err = m.bindLocked(v, until); err != nil {
			break
		}
	}
	if err != nil {
		if _, rerr := m.releaseLocked(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("vip: roll back: %w", rerr))
		}
		return err
	}
	if !m.held {
		m.log.Info("VIPs bound", zap.Stringers("vips", m.boundSetLocked(hold)), zap.Bool("lifetime", m.cfg.Lifetime))
		if len(hold) > 0 {
			m.pending, m.nextProbe = hold, time.Now().Add(m.cfg.Conflict.Retry)
		}
	}
	m.held, m.until = true, until
	m.startAnnouncingLocked(time.Now(), "acquired")
	return nil
}

// Extend moves the self-fencing deadline to until and, with Config.Lifetime, sets the kernel lifetime
// of every VIP to end before it (in place: the address is not removed, connections are not
// disturbed; a VIP the kernel already removed is bound again). It is
// one netlink request per VIP, or nothing at all without Lifetime. It returns ErrNotHeld when the VIPs
// are not held, and ErrDeadlinePassed, changing nothing, when until is not in the future.
func (m *Manager) Extend(ctx context.Context, until time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return fmt.Errorf("vip: extend on %s: %w", m.cfg.Interface, ErrClosed)
	case !m.held:
		return fmt.Errorf("vip: extend on %s: %w", m.cfg.Interface, ErrNotHeld)
	case expired(until, time.Now()):
		return fmt.Errorf("vip: extend on %s to %s: %w", m.cfg.Interface, until.Format(time.StampMilli), ErrDeadlinePassed)
	}
	m.until = until
	if m.cfg.Announce.Refresh > 0 && m.nextRefresh.IsZero() { // stopped by a passed deadline
		m.nextRefresh = time.Now().Add(m.cfg.Announce.Refresh)
		m.poke()
	}
	if !m.cfg.Lifetime {
		return nil
	}
	if _, ok := lifetimeSeconds(until, time.Now()); !ok && m.noBackstop {
		// Bound without a lifetime already (the deadline stays too close for one): writing them
		// again without one would change nothing. A VIP removed meanwhile is added back by Run
		// (its RTM_DELADDR, a resync).
		return nil
	}
	var errs []error
	for _, v := range m.cfg.VIPs {
		if m.isPendingLocked(v) {
			continue
		}
		if err := m.bindLocked(v, until); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Reannounce starts a new announcement burst (and repeat schedule) for the held VIPs, checking the
// binding first: for a master that kept its term through a loss of contact with its store, whose
// clients and switches may have moved on meanwhile. It does nothing unless the VIPs are held and the
// deadline has not passed.
func (m *Manager) Reannounce(reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.mayActLocked() {
		return
	}
	m.repairLocked(reason)
	m.log.Info("announcing the VIPs again", zap.String("reason", reason))
	m.startAnnouncingLocked(time.Now(), reason)
}

// Release removes every VIP from the interface and stops announcing. It is idempotent: an absent VIP
// is not an error. It tries every VIP even when one fails, and returns the failures joined. It does
// not give up when ctx is done (letting go of the VIPs matters more); each netlink request is bounded
// by a timeout of its own.
func (m *Manager) Release(ctx context.Context) error {
	_, err := m.Remove(ctx)
	return err
}

// Remove is Release that also returns the VIPs that were on the interface (in configuration order).
// It deletes every configured VIP without listing the interface first: a delete of an absent address
// is not an error (the kernel's ENOENT or EADDRNOTAVAIL), so a VIP bound since a listing cannot be
// missed, and there is one netlink request per VIP. It is what the fence guard, which holds nothing
// itself, calls to leave nothing bound; on an error the caller calls it again (each call tries every
// VIP).
func (m *Manager) Remove(ctx context.Context) ([]netip.Prefix, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("vip: release on %s: %w", m.cfg.Interface, ErrClosed)
	}
	wasHeld := m.held
	removed, err := m.releaseLocked()
	if wasHeld {
		m.log.Info("VIPs released", zap.Stringers("vips", m.cfg.VIPs))
	}
	return removed, err
}

// Cleanup removes the configured VIPs found on the interface: what a previous run that was killed
// left behind. Call it at start-up, before the first Acquire; it refuses while the VIPs are held.
func (m *Manager) Cleanup(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return fmt.Errorf("vip: cleanup on %s: %w", m.cfg.Interface, ErrClosed)
	case m.held:
		return fmt.Errorf("vip: cleanup on %s: VIPs are held; Release them instead", m.cfg.Interface)
	}
	present, err := m.boundLocked()
	if err != nil {
		return err
	}
	var errs []error
	for _, v := range present {
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("vip: cleanup on %s: %w", m.cfg.Interface, err))
			break
		}
		if _, err := m.unbindLocked(v); err != nil {
			errs = append(errs, fmt.Errorf("vip: delete %s on %s: %w", v, m.cfg.Interface, err))
			continue
		}
		m.log.Warn("removed a VIP left over by a previous run", zap.Stringer("vip", v))
	}
	return errors.Join(errs...)
}

// Bound returns the configured VIPs present on the interface now (same address and prefix length),
// in configuration order. While Run watches the interface it answers from the addresses its
// notifications keep (no listing), as recent as the last notification Run has read, and lists them
// at most every addrsMaxAge; otherwise it lists them.
func (m *Manager) Bound() ([]netip.Prefix, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("vip: list on %s: %w", m.cfg.Interface, ErrClosed)
	}
	if m.watching && m.addrs != nil && time.Since(m.addrsAt) < addrsMaxAge {
		var out []netip.Prefix
		for _, v := range m.cfg.VIPs {
			if m.addrs[v] {
				out = append(out, v)
			}
		}
		return out, nil
	}
	return m.boundLocked()
}

// seenLocked records that v is on the interface (present) or not, as a notification or the
// Manager's own request says, in the addresses Bound answers from, if it keeps them.
func (m *Manager) seenLocked(v netip.Prefix, present bool) {
	switch {
	case m.addrs == nil:
	case present:
		m.addrs[v] = true
	default:
		delete(m.addrs, v)
	}
}

// forgetAddrsLocked drops the addresses Bound answers from: notifications may have been missed.
func (m *Manager) forgetAddrsLocked() { m.addrs = nil }

// Close closes the Manager's sockets. It does not remove the VIPs (Release does; with Lifetime the
// kernel removes them after the deadline). Call it after Run has returned. Idempotent.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed, m.held = true, false
	m.foreign.close()
	if err := m.k.close(); err != nil {
		return fmt.Errorf("vip: close on %s: %w", m.cfg.Interface, err)
	}
	return nil
}

// expired reports whether deadline until has been reached at now. A zero until never expires.
func expired(until, now time.Time) bool {
	return !until.IsZero() && !now.Before(until)
}

// mayActLocked reports whether the Manager may bind or announce now: the VIPs are held and the
// deadline has not been reached. Checked right before every bind and every frame.
func (m *Manager) mayActLocked() bool {
	return m.held && !m.closed && !expired(m.until, time.Now())
}

// bindLocked binds v with the lifetime that deadline until calls for, unless until has passed. If
// until passed while the request was under way (the process was stopped, or the kernel slow), the
// kernel may have bound v after the deadline: bindLocked deletes it again and returns
// ErrDeadlinePassed.
func (m *Manager) bindLocked(v netip.Prefix, until time.Time) error {
	now := time.Now()
	if expired(until, now) {
		return fmt.Errorf("vip: add %s on %s: %w", v, m.cfg.Interface, ErrDeadlinePassed)
	}
	var lft uint32
	if m.cfg.Lifetime {
		var ok bool
		lft, ok = lifetimeSeconds(until, now)
		switch {
		case !ok && !m.noBackstop:
			m.noBackstop = true
			m.log.Warn("the deadline is too close for a kernel lifetime to end before it; binding the VIPs without one "+
				"(the fence guard and the self-fencing timer remove them; if both processes are killed they stay)",
				zap.Duration("validity", until.Sub(now)), zap.Duration("needed", minBackstopValidity))
		case ok && m.noBackstop:
			m.noBackstop = false
			m.log.Info("the VIPs carry a kernel lifetime again", zap.Uint32("lifetime-s", lft))
		}
	}
	err := m.k.bind(v, lft)
	if isNoDevice(err) && m.relinkLocked("bind") == nil && !expired(until, time.Now()) {
		err = m.k.bind(v, lft) // the interface was created again: bind on the new one
	}
	if err != nil {
		return fmt.Errorf("vip: add %s on %s: %w", v, m.cfg.Interface, err)
	}
	m.seenLocked(v, true)
	if expired(until, time.Now()) {
		err := fmt.Errorf("vip: add %s on %s: %w while binding", v, m.cfg.Interface, ErrDeadlinePassed)
		if _, uerr := m.unbindLocked(v); uerr != nil {
			err = errors.Join(err, fmt.Errorf("vip: delete %s on %s: %w", v, m.cfg.Interface, uerr))
		}
		return err
	}
	return nil
}

// releaseLocked deletes every configured VIP (without listing first) and stops the schedule. It
// returns the VIPs that were present and the failed deletes, joined.
func (m *Manager) releaseLocked() ([]netip.Prefix, error) {
	m.held, m.until, m.noBackstop = false, time.Time{}, false
	m.repeatsLeft, m.nextRepeat, m.nextRefresh = 0, time.Time{}, time.Time{}
	m.pending, m.nextProbe = nil, time.Time{}
	var (
		removed []netip.Prefix
		errs    []error
	)
	for _, v := range m.cfg.VIPs {
		ok, err := m.unbindLocked(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("vip: delete %s on %s: %w", v, m.cfg.Interface, err))
		}
		if ok {
			removed = append(removed, v)
		}
	}
	m.poke()
	return removed, errors.Join(errs...)
}

func (m *Manager) boundLocked() ([]netip.Prefix, error) {
	addrs, err := m.k.addrs()
	if err != nil {
		return nil, fmt.Errorf("vip: list addresses on %s: %w", m.cfg.Interface, err)
	}
	if m.watching {
		// Notifications read from now on were sent after this listing or shortly before it; either
		// way the last one about an address is its state, so the set stays right once Run has
		// read them.
		m.addrs, m.addrsAt = make(map[netip.Prefix]bool, len(addrs)), time.Now()
		for _, a := range addrs {
			m.addrs[a] = true
		}
	}
	var out []netip.Prefix
	for _, v := range m.cfg.VIPs {
		for _, a := range addrs {
			if a == v {
				out = append(out, v)
				break
			}
		}
	}
	return out, nil
}

// poke tells Run that the schedule changed.
func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// startAnnouncingLocked sends the burst and schedules the repeats and the refresh.
func (m *Manager) startAnnouncingLocked(now time.Time, reason string) {
	a := m.cfg.Announce
	for range a.Count {
		m.announceLocked(m.anns, reason)
	}
	m.checkForeignLocked(reason)
	m.repeatsLeft, m.nextRepeat = a.Repeat, now.Add(a.RepeatInterval)
	m.nextRefresh = time.Time{}
	if a.Refresh > 0 {
		m.nextRefresh = now.Add(a.Refresh)
	}
	m.poke()
}

// announceLocked sends one round for anns, checking before every frame that the Manager may still
// announce. It tries even when it believes the interface is down (the belief may be stale; coming up
// starts a new burst anyway), and then logs a failure at debug level only.
func (m *Manager) announceLocked(anns []announcement, reason string) {
	if len(anns) == 0 {
		return
	}
	var (
		sent  int
		errs  []error
		fresh = true
	)
	for _, a := range anns {
		if m.isPendingLocked(a.vip) {
			continue // another host answers for it: announcing it would take its traffic
		}
		for _, f := range a.frames {
			if !m.mayActLocked() {
				fresh = false
				break
			}
			if err := m.k.send(f, a.ipv6); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", a.vip, err))
				continue
			}
			sent++
		}
	}
	m.announced.Add(uint64(sent))
	if len(errs) > 0 {
		logf := m.log.Warn
		if !m.linkUp {
			logf = m.log.Debug
		}
		logf("announcing VIPs failed", zap.String("reason", reason), zap.Int("frames-sent", sent), zap.Error(errors.Join(errs...)))
		return
	}
	if !fresh {
		m.log.Warn("stopped announcing: the self-fencing deadline has passed", zap.String("reason", reason), zap.Int("frames-sent", sent))
		return
	}
	m.log.Debug("announced VIPs", zap.String("reason", reason), zap.Int("frames-sent", sent))
}

// nextWake returns when Run's timer should next fire, if at all.
func (m *Manager) nextWake() (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.held {
		return time.Time{}, false
	}
	var next time.Time
	if m.repeatsLeft > 0 {
		next = m.nextRepeat
	}
	if !m.nextRefresh.IsZero() && (next.IsZero() || m.nextRefresh.Before(next)) {
		next = m.nextRefresh
	}
	if len(m.pending) > 0 && !m.nextProbe.IsZero() && (next.IsZero() || m.nextProbe.Before(next)) {
		next = m.nextProbe
	}
	return next, !next.IsZero()
}

// tick runs the due repeat and refresh.
func (m *Manager) tick() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.held {
		return
	}
	now := time.Now()
	if expired(m.until, now) {
		// The owner should have released by now. Stay quiet: no more rounds until Acquire.
		m.repeatsLeft, m.nextRefresh, m.nextProbe = 0, time.Time{}, time.Time{}
		m.log.Warn("self-fencing deadline passed while the VIPs are held; announcements stopped")
		return
	}
	if len(m.pending) > 0 && !m.nextProbe.IsZero() && !now.Before(m.nextProbe) {
		m.retryPendingLocked()
		now = time.Now()
	}
	announced := false
	if m.repeatsLeft > 0 && !now.Before(m.nextRepeat) {
		m.repeatsLeft--
		m.nextRepeat = now.Add(m.cfg.Announce.RepeatInterval)
		m.announceLocked(m.anns, "repeat")
		announced = true
	}
	if !m.nextRefresh.IsZero() && !now.Before(m.nextRefresh) {
		m.nextRefresh = now.Add(m.cfg.Announce.Refresh)
		m.resyncLocked("refresh")
		if !announced {
			m.announceLocked(m.anns, "refresh")
		}
		m.checkForeignLocked("refresh")
	}
}

// handle reacts to one change of the interface.
func (m *Manager) handle(ev event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch ev.kind {
	case addrAdded:
		m.seenLocked(ev.addr, true)
	case addrRemoved:
		m.seenLocked(ev.addr, false)
		for i, v := range m.cfg.VIPs {
			if v != ev.addr || !m.mayActLocked() || m.isPendingLocked(v) {
				continue
			}
			if err := m.bindLocked(v, m.until); err != nil {
				m.log.Error("a VIP was removed from the interface and could not be added back", zap.Stringer("vip", v), zap.Error(err))
				continue
			}
			m.log.Warn("a VIP was removed from the interface; added it back", zap.Stringer("vip", v))
			if m.anns != nil {
				m.announceLocked(m.anns[i:i+1], "re-added")
			}
		}
	case linkChanged:
		m.forgetAddrsLocked()
		m.setLinkLocked(ev.up)
	case subscribed:
		m.watching = true
		m.forgetAddrsLocked()
		m.resyncLocked("subscribed")
	case linkAppeared:
		m.forgetAddrsLocked()
		m.resyncLocked("interface created again")
	}
}

// setLinkLocked records the interface's state; coming up while held starts a new burst, because
// switches and hosts may have forgotten or re-learnt the VIPs' location meanwhile. IPv6 addresses
// are flushed when an interface goes down (net.ipv6.conf.*.keep_addr_on_down=0), so it also checks
// the binding.
func (m *Manager) setLinkLocked(up bool) {
	was := m.linkUp
	m.linkUp = up
	switch {
	case was && !up:
		m.log.Warn("interface is down")
	case !was && up:
		if !m.mayActLocked() {
			m.log.Info("interface is up")
			return
		}
		m.log.Info("interface is up; announcing the VIPs again")
		m.repairLocked("link up")
		m.startAnnouncingLocked(time.Now(), "link up")
	}
}

// resyncLocked reads the interface's state and binding, in case an event was missed.
func (m *Manager) resyncLocked(reason string) {
	// The interface may have been deleted and created again since: look it up by name (a missing
	// one shows in the link state below).
	_ = m.relinkLocked(reason)
	up, err := m.k.linkUp()
	if err != nil {
		m.log.Warn("reading the interface state failed", zap.String("reason", reason), zap.Error(err))
		up = m.linkUp
	}
	if up != m.linkUp {
		m.setLinkLocked(up)
		if up {
			return // setLinkLocked repaired and announced
		}
	}
	m.repairLocked(reason)
}

// repairLocked binds and announces, while the VIPs may be held, any VIP missing from the interface.
func (m *Manager) repairLocked(reason string) {
	if !m.mayActLocked() {
		return
	}
	present, err := m.boundLocked()
	if err != nil {
		m.log.Warn("checking the VIPs failed", zap.String("reason", reason), zap.Error(err))
		return
	}
	for i, v := range m.cfg.VIPs {
		if containsPrefix(present, v) || !m.mayActLocked() || m.isPendingLocked(v) {
			continue
		}
		if err := m.bindLocked(v, m.until); err != nil {
			m.log.Error("a VIP was missing from the interface and could not be added back", zap.String("reason", reason), zap.Stringer("vip", v), zap.Error(err))
			continue
		}
		m.log.Warn("a VIP was missing from the interface; added it back", zap.String("reason", reason), zap.Stringer("vip", v))
		if m.anns != nil {
			m.announceLocked(m.anns[i:i+1], "re-added")
		}
	}
}

func containsPrefix(ps []netip.Prefix, p netip.Prefix) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}
