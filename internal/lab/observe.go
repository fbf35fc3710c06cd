package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/vishvananda/netlink"
)

func linkIndex(i int) netlink.Link { return &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: i}} }

// startObservers starts the sampler, the prober and the ARP watch; they run until Close.
func (l *Lab) startObservers() error {
	ctx, cancel := context.WithCancel(context.Background())
	l.obsCancel = cancel
	s, err := newSampler(l)
	if err != nil {
		return err
	}
	l.Sampler = s
	l.Prober = &Prober{lab: l, changed: make(chan struct{})}
	aw, err := newARPWatch(l)
	if err != nil {
		return err
	}
	l.ARP = aw
	l.obsDone.Add(3)
	go func() { defer l.obsDone.Done(); s.run(ctx) }()
	go func() { defer l.obsDone.Done(); l.Prober.run(ctx) }()
	go func() { defer l.obsDone.Done(); aw.run(ctx) }()
	return nil
}

// notifier is a broadcast "something changed" signal: a channel closed and replaced on every change.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

func (n *notifier) fire() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
	}
	n.ch = make(chan struct{})
}

// HolderChange is a change of the set of nodes holding the VIP, as the sampler saw it: the set
// changed at some instant in (Prev, At], Prev being the last sample that still showed the old set.
type HolderChange struct {
	At, Prev time.Time
	Holders  []string // sorted node names
}

// NeighChange is a change of the client's neighbour entry for the VIP: the MAC it resolves to
// ("" when there is no entry or no link-layer address).
type NeighChange struct {
	At  time.Time
	MAC string
}

// Sampler reads every node's addresses (and the client's neighbour entry for the VIP) through its
// own netlink handles, in-process, every SampleEvery, and records every change. A crashed node
// (Node.Crash) is not counted as a holder: a dead machine holds nothing. The resolution of every
// duration it yields is the sampling period plus the time one round of netlink dumps takes.
type Sampler struct {
	lab     *Lab
	handles []*netlink.Handle // one per node, same order as lab.Nodes
	client  *netlink.Handle

	mu        sync.Mutex
	holders   []HolderChange
	neigh     []NeighChange
	lastAt    time.Time
	rounds    int
	maxRound  time.Duration
	lastErr   error
	errCount  int
	changed   notifier
	closeOnce sync.Once
}

func newSampler(l *Lab) (*Sampler, error) {
	s := &Sampler{lab: l}
	for _, n := range l.Nodes {
		h, err := netlink.NewHandleAt(n.NS.Handle)
		if err != nil {
			s.closeHandles()
			return nil, fmt.Errorf("lab: sampler handle for %s: %w", n.Name, err)
		}
		s.handles = append(s.handles, h)
	}
	h, err := netlink.NewHandleAt(l.Client.Handle)
	if err != nil {
		s.closeHandles()
		return nil, fmt.Errorf("lab: sampler handle for client: %w", err)
	}
	s.client = h
	return s, nil
}

func (s *Sampler) closeHandles() {
	s.closeOnce.Do(func() {
		for _, h := range s.handles {
			h.Close()
		}
		if s.client != nil {
			s.client.Close()
		}
	})
}

func (s *Sampler) run(ctx context.Context) {
	t := time.NewTicker(s.lab.opts.SampleEvery)
	defer t.Stop()
	vip := VIP.Addr().AsSlice()
	for {
		start := time.Now()
		var holders []string
		var errs []error
		for i, n := range s.lab.Nodes {
			if n.isDead() {
				continue
			}
			// A dump that races an address change fails (ErrDumpInterrupted): read again; if it keeps
			// failing, carry the node's previous state rather than inventing a change.
			var addrs []netlink.Addr
			var err error
			for try := 0; try < 3; try++ {
				if addrs, err = s.handles[i].AddrList(linkIndex(n.eth0), netlink.FAMILY_V4); err == nil {
					break
				}
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", n.Name, err))
				if slices.Contains(s.Holders(), n.Name) {
					holders = append(holders, n.Name)
				}
				continue
			}
			for _, a := range addrs {
				if a.IP.Equal(vip) {
					holders = append(holders, n.Name)
					break
				}
			}
		}
		mac := ""
		ns, err := s.client.NeighList(s.lab.clientEth, netlink.FAMILY_V4)
		if err != nil { // same as above
			ns, err = s.client.NeighList(s.lab.clientEth, netlink.FAMILY_V4)
		}
		if err != nil {
			mac = s.NeighMAC()
		}
		if err == nil {
			for _, e := range ns {
				if e.IP.Equal(vip) && len(e.HardwareAddr) > 0 && e.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) == 0 {
					mac = e.HardwareAddr.String()
				}
			}
		} else {
			errs = append(errs, fmt.Errorf("client neighbours: %w", err))
		}
		now := time.Now()
		s.record(now, holders, mac, now.Sub(start), errors.Join(errs...))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Sampler) record(now time.Time, holders []string, mac string, took time.Duration, err error) {
	s.mu.Lock()
	changed := false
	if len(s.holders) == 0 || !slices.Equal(s.holders[len(s.holders)-1].Holders, holders) {
		s.holders = append(s.holders, HolderChange{At: now, Prev: s.lastAt, Holders: holders})
		changed = true
	}
	if len(s.neigh) == 0 || s.neigh[len(s.neigh)-1].MAC != mac {
		s.neigh = append(s.neigh, NeighChange{At: now, MAC: mac})
		changed = true
	}
	s.lastAt = now
	s.rounds++
	s.maxRound = max(s.maxRound, took)
	if err != nil {
		s.lastErr = err
		s.errCount++
	}
	s.mu.Unlock()
	if changed {
		s.changed.fire()
	}
}

// Holders returns the holder set of the latest sample.
func (s *Sampler) Holders() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.holders) == 0 {
		return nil
	}
	return slices.Clone(s.holders[len(s.holders)-1].Holders)
}

// NeighMAC returns the MAC the client's neighbour entry for the VIP held at the latest sample.
func (s *Sampler) NeighMAC() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.neigh) == 0 {
		return ""
	}
	return s.neigh[len(s.neigh)-1].MAC
}

// HolderHistory returns the holder changes recorded so far.
func (s *Sampler) HolderHistory() []HolderChange {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.holders)
}

// NeighHistory returns the neighbour-entry changes recorded so far.
func (s *Sampler) NeighHistory() []NeighChange {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.neigh)
}

// Resolution returns the sampling period and the longest round of netlink reads seen: together,
// the uncertainty of every duration the sampler measures.
func (s *Sampler) Resolution() (period, maxRound time.Duration, rounds int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lab.opts.SampleEvery, s.maxRound, s.rounds
}

// Errors returns how many rounds met a netlink error even after retries, and the latest one.
func (s *Sampler) Errors() (rounds int, last error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.errCount, s.lastErr
}

// WaitHolders waits until the latest sample's holder set satisfies ok (checked at once and on every
// change) and returns the set and the time of the change that produced it.
func (s *Sampler) WaitHolders(ctx context.Context, ok func(holders []string) bool) ([]string, time.Time, error) {
	for {
		ch := s.changed.wait()
		s.mu.Lock()
		var cur HolderChange
		if n := len(s.holders); n > 0 {
			cur = s.holders[n-1]
		}
		s.mu.Unlock()
		if !cur.At.IsZero() && ok(cur.Holders) {
			return slices.Clone(cur.Holders), cur.At, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, time.Time{}, fmt.Errorf("lab: waiting for holders (now %v): %w", cur.Holders, context.Cause(ctx))
		}
	}
}

// WaitNeigh waits until the client's neighbour entry for the VIP resolves to mac.
func (s *Sampler) WaitNeigh(ctx context.Context, mac net.HardwareAddr) (time.Time, error) {
	for {
		ch := s.changed.wait()
		s.mu.Lock()
		var cur NeighChange
		if n := len(s.neigh); n > 0 {
			cur = s.neigh[n-1]
		}
		s.mu.Unlock()
		if cur.MAC == mac.String() {
			return cur.At, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("lab: waiting for the client's neighbour entry to be %s (now %q): %w", mac, cur.MAC, context.Cause(ctx))
		}
	}
}

// HolderTimes integrates the holder history over [from, to): how long two or more nodes held the VIP
// and how long none did. A change counts from its At.
func (s *Sampler) HolderTimes(from, to time.Time) (two, none time.Duration) {
	h := s.HolderHistory()
	for i, c := range h {
		start := c.At
		end := to
		if i+1 < len(h) {
			end = h[i+1].At
		}
		if start.Before(from) {
			start = from
		}
		if end.After(to) {
			end = to
		}
		if !end.After(start) {
			continue
		}
		switch {
		case len(c.Holders) >= 2:
			two += end.Sub(start)
		case len(c.Holders) == 0:
			none += end.Sub(start)
		}
	}
	return two, none
}

// Probe is one client connection attempt to VIP:8080: Node is who answered ("" on failure).
type Probe struct {
	Start, End time.Time
	Node       string
	Err        string
}

// Prober dials VIP:8080 from the client namespace once in every ProbeEvery (at a random point of
// each, see nextProbe) with a ProbeTimeout deadline and records who answered, in the order the
// answers (or failures) came in.
//
// Sockets belong to the namespace of the thread that creates them, and every dial creates a new
// socket, so the whole probe loop runs inside netnstest.NS.Do: on one OS thread locked into the
// client namespace for the loop's lifetime. A dial to an IP literal creates its socket on the calling
// goroutine (no resolver, no parallel dial goroutines), which stays on that thread; waiting for the
// connection parks the goroutine but keeps it locked. (A Dialer.Control func would run after the
// socket exists — too late to pick its namespace.)
type Prober struct {
	lab     *Lab
	mu      sync.Mutex
	probes  []Probe
	changed chan struct{}
	err     error
}

func (p *Prober) run(ctx context.Context) {
	o := p.lab.opts
	// A probe that times out would hold up a single loop for ProbeTimeout; instead k loops, each
	// probing every k×ProbeEvery, start ProbeEvery apart, so one probe starts every ProbeEvery even
	// while probes time out.
	k := max(1, int((o.ProbeTimeout+o.ProbeEvery-1)/o.ProbeEvery))
	var wg sync.WaitGroup
	for i := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.loop(ctx, time.Duration(i)*o.ProbeEvery, time.Duration(k)*o.ProbeEvery)
		}()
	}
	wg.Wait()
}

// loop probes every period after an initial offset, on one OS thread locked into the client
// namespace (see Prober).
func (p *Prober) loop(ctx context.Context, offset, period time.Duration) {
	o := p.lab.opts
	target := netip.AddrPortFrom(VIP.Addr(), ServicePort).String()
	err := p.lab.Client.Do(func() error {
		first := time.NewTimer(offset)
		select {
		case <-ctx.Done():
			first.Stop()
			return nil
		case <-first.C:
		}
		base := time.Now()
		t := time.NewTimer(time.Duration(1<<63 - 1))
		defer t.Stop()
		d := net.Dialer{Timeout: o.ProbeTimeout}
		buf := make([]byte, 64)
		for {
			pr := Probe{Start: time.Now()}
			c, err := d.DialContext(ctx, "tcp", target)
			if err == nil {
				_ = c.SetDeadline(pr.Start.Add(o.ProbeTimeout))
				var n int
				n, err = io.ReadFull(c, buf)
				if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
					err = nil
				}
				c.Close()
				pr.Node = strings.TrimSpace(string(buf[:n]))
				if err == nil && pr.Node == "" {
					err = errors.New("empty reply")
				}
			}
			pr.End = time.Now()
			if err != nil {
				pr.Node = ""
				pr.Err = shortErr(err)
			}
			if ctx.Err() != nil {
				return nil
			}
			p.add(pr)
			var at time.Time
			base, at = nextProbe(base, period, o.ProbeEvery, time.Now(), rand.N[time.Duration])
			t.Reset(time.Until(at))
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
	})
	if err != nil {
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
	}
}

// nextProbe schedules a loop's next probe: its slot is one period after base (or now, for a loop
// that fell more than a period behind), and the probe starts at a random point in the first spread
// (ProbeEvery) of the slot. Without that, every probe would sit on one fixed grid of ProbeEvery
// from the lab's start, and so would the instants the store's own grid (ZooKeeper's tick, etcd's
// lessor scan) puts the takeovers on: every run of a bench would wait the same part of a period
// for its first reply (fixed per lab, anywhere in 0..ProbeEvery), and two benches would differ by
// it. The random start makes that wait independent from run to run, about ProbeEvery/2 on average.
// rnd(n) returns a uniform duration in [0, n).
func nextProbe(base time.Time, period, spread time.Duration, now time.Time, rnd func(time.Duration) time.Duration) (slot, at time.Time) {
	slot = base.Add(period)
	if now.Sub(slot) > period {
		slot = now
	}
	return slot, slot.Add(rnd(spread))
}

func shortErr(err error) string {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}

func (p *Prober) add(pr Probe) {
	p.mu.Lock()
	p.probes = append(p.probes, pr)
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// Probes returns the probes that started in [from, to), in the order they ended.
func (p *Prober) Probes(from, to time.Time) []Probe {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Probe
	for _, pr := range p.probes {
		if !pr.Start.Before(from) && pr.Start.Before(to) {
			out = append(out, pr)
		}
	}
	return out
}

// Err returns the error that stopped the probe loop, if any.
func (p *Prober) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// WaitReply waits for a probe started at or after since that satisfies ok (checked for probes
// already recorded too) and returns it.
func (p *Prober) WaitReply(ctx context.Context, since time.Time, ok func(Probe) bool) (Probe, error) {
	seen := 0
	var last Probe
	for {
		p.mu.Lock()
		ch := p.changed
		probes := p.probes[seen:]
		seen = len(p.probes)
		p.mu.Unlock()
		for _, pr := range probes {
			if !pr.Start.Before(since) {
				last = pr
				if ok(pr) {
					return pr, nil
				}
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return Probe{}, fmt.Errorf("lab: waiting for a client reply (last probe: node %q err %q): %w", last.Node, last.Err, context.Cause(ctx))
		}
	}
}

// ARPEvent is an ARP packet seen in the client namespace whose sender IP is the VIP: a gratuitous
// announcement (Gratuitous: target IP = sender IP) or a reply to the client.
type ARPEvent struct {
	At         time.Time
	Op         string
	MAC        string
	Gratuitous bool
}

// ARPWatch records, from the client's eth0, every ARP packet that claims the VIP.
type ARPWatch struct {
	lab     *Lab
	c       *arp.Client
	mu      sync.Mutex
	events  []ARPEvent
	changed chan struct{} // closed and replaced on every event
}

func newARPWatch(l *Lab) (*ARPWatch, error) {
	w := &ARPWatch{lab: l, changed: make(chan struct{})}
	err := l.Client.Do(func() error { // the packet socket and the interface lookup need the namespace
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		w.c, err = arp.Dial(ifi)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: ARP watch in the client namespace: %w", err)
	}
	return w, nil
}

func (w *ARPWatch) run(ctx context.Context) {
	defer w.c.Close()
	for ctx.Err() == nil {
		_ = w.c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		pkt, _, err := w.c.Read()
		if err != nil {
			continue // deadline (to check ctx) or a frame that is not ARP
		}
		if pkt.SenderIP != VIP.Addr() {
			continue
		}
		w.mu.Lock()
		w.events = append(w.events, ARPEvent{At: time.Now(), Op: pkt.Operation.String(), MAC: pkt.SenderHardwareAddr.String(),
			Gratuitous: pkt.TargetIP == pkt.SenderIP})
		close(w.changed)
		w.changed = make(chan struct{})
		w.mu.Unlock()
	}
}

// Wait waits until ok holds for the ARP packets claiming the VIP seen since from, or ctx is done.
func (w *ARPWatch) Wait(ctx context.Context, from time.Time, ok func([]ARPEvent) bool) ([]ARPEvent, error) {
	for {
		w.mu.Lock()
		ch := w.changed
		w.mu.Unlock()
		ev := w.Events(from, time.Now().Add(time.Hour))
		if ok(ev) {
			return ev, nil
		}
		select {
		case <-ctx.Done():
			return ev, fmt.Errorf("lab: ARP watch: %w", context.Cause(ctx))
		case <-ch:
		}
	}
}

// Events returns the ARP packets claiming the VIP seen in [from, to).
func (w *ARPWatch) Events(from, to time.Time) []ARPEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []ARPEvent
	for _, e := range w.events {
		if !e.At.Before(from) && e.At.Before(to) {
			out = append(out, e)
		}
	}
	return out
}
