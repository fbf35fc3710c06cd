package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/fencing"
)

// Elector takes part in one virtual router with native VRRP and implements election.Elector,
// election.Eligibility, election.Yielder, election.Prioritizer, election.Resigner,
// election.Maintainer and election.Transferer (which says it cannot, see planned.go). It only
// decides the role: the VIPs are bound by the consumer of its States. VRRP has no quorum, so if
// the VRRP path is cut both sides become master.
//
// Run may be called once. SetPriority, SetEligible, SetMaintenance, Yield, Resign, Stats,
// Mismatches and State are safe from any goroutine.
//
// Routers whose adverts for this VRID carry another version, address list, password or interval
// (see MismatchReason) are logged at warn level, once per reason and source per
// MismatchWarnInterval, and again when this router becomes master while one was heard recently;
// Mismatches lists them and Stats counts them, for status and metrics.
type Elector struct {
	cfg  Config
	log  *zap.Logger
	conn Conn // set by WithConn; else Run opens a RawConn

	ran        atomic.Bool
	mu         sync.Mutex
	pending    []Event
	stats      Stats
	mismatches []Mismatch
	onBeside   func(MasterBeside) // OnMasterBeside
	state      election.State
	kick       chan struct{}
}

// Option changes how an Elector is built.
type Option func(*Elector)

// WithConn makes Run use c (and close it when it returns) instead of opening a RawConn on
// Config.Interface: for tests, and for a socket opened inside another network namespace.
func WithConn(c Conn) Option { return func(e *Elector) { e.conn = c } }

var (
	_ election.Elector     = (*Elector)(nil)
	_ election.Eligibility = (*Elector)(nil)
	_ election.Yielder     = (*Elector)(nil)
)

// New validates cfg and returns an Elector. It opens nothing and starts no goroutine.
func New(cfg Config, log *zap.Logger, opts ...Option) (*Elector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	cfg.UnicastPeers = append([]netip.Addr(nil), cfg.UnicastPeers...)
	cfg.VIPs = append([]netip.Prefix(nil), cfg.VIPs...)
	e := &Elector{
		cfg:   cfg,
		log:   log.Named("vrrp").With(zap.Int("vrid", cfg.VRID), zap.String("interface", cfg.Interface)),
		kick:  make(chan struct{}, 1),
		stats: Stats{}.clone(),
	}
	for _, o := range opts {
		o(e)
	}
	return e, nil
}

// SetPriority changes the advertised priority (clamped to 1-254; 255 stays for an owner), like a
// keepalived vrrp_script weight. A lower priority lets a preempting backup take over.
func (e *Elector) SetPriority(p int) { e.post(SetPriority{Priority: p}) }

// SetEligible(false) makes a master send a priority-0 advert and the node enter Fault (reported as
// election.Fault); SetEligible(true) makes it a candidate again.
func (e *Elector) SetEligible(ok bool) { e.post(SetEligible{OK: ok}) }

// Yield makes a master send a priority-0 advert and become a backup; another router takes over after
// its Skew_Time, or this one again after Master_Down_Interval if there is none. A yielded router
// does not preempt the router that took over (even with a lower priority) until it has been master
// again.
func (e *Elector) Yield() { e.post(Yield{}) }

// Stats returns the packet counters, updated after every step of the state machine: adverts sent
// and received, drops by reason, mismatched adverts by reason (the figures of the VRRP metrics).
func (e *Elector) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stats.clone()
}

// Mismatches returns the routers heard since Run started whose adverts for this VRID do not match
// this router's configuration, one entry per reason and source (the 64 most recent), sorted by
// reason and source. Such a router does not join this virtual router (unless Mismatch.Dropped is
// false): both may be master. Empty when there is none.
func (e *Elector) Mismatches() []Mismatch {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.mismatches)
}

// State returns the last State the Elector reported (whether or not it was read from out yet).
func (e *Elector) State() election.State {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.state
}

func (e *Elector) post(ev Event) {
	e.mu.Lock()
	e.pending = append(e.pending, ev)
	e.mu.Unlock()
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// Run implements election.Elector: it runs the VRRP state machine until ctx is done, then sends a
// priority-0 advert if master, offers a Backup State and returns
// nil. A receive error other than the socket closing ends Run with that error.
func (e *Elector) Run(ctx context.Context, out *election.Outbox) (err error) {
	if !e.ran.CompareAndSwap(false, true) {
		return errors.New("vrrp: Run called twice")
	}
	conn := e.conn
	if conn == nil {
		rc, err := e.listen(ctx)
		if err != nil {
			if ctx.Err() != nil {
				out.Set(election.State{Role: election.Backup, Reason: "shutdown"})
				return nil
			}
			return err
		}
		conn = rc
	}
	m, err := NewMachine(e.cfg, conn.Addr())
	if err != nil {
		conn.Close()
		return err
	}
	e.log.Warn("VRRP has no quorum: if the VRRP path between the routers is cut, each side becomes master (split brain)",
		zap.Int("priority", e.cfg.Priority), zap.Stringer("address", conn.Addr()))
	if e.cfg.ipv6() && !e.cfg.VIPs[0].Addr().IsLinkLocalUnicast() {
		// keepalived logs the same outside its strict mode, and interoperates.
		e.log.Info("the first IPv6 VIP is not a link-local address, which RFC 5798 §5.2.9 asks for",
			zap.Stringer("vip", e.cfg.VIPs[0]))
	}

	r := &runner{e: e, m: m, conn: conn, out: out, ctx: ctx}
	var g errgroup.Group
	pkts := make(chan Received)
	readErr := make(chan error, 1)
	done := make(chan struct{})
	g.Go(func() error {
		for {
			p, err := conn.Read()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					readErr <- err
				}
				return nil
			}
			select {
			case pkts <- p:
			case <-done:
				return nil
			}
		}
	})
	defer func() {
		close(done)
		conn.Close()
		_ = g.Wait()
		// Offer the final, non-Master State: the Coordinator takes it once Run returns.
		out.Set(r.snapshot())
	}()

	// What was set before Run (maintenance, eligibility, priority: the daemon and the Gate apply
	// them first) holds from the start: an address owner in maintenance must not be master first.
	r.stepPending()
	r.step(Startup{})
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		timer.Stop()
		if next := m.NextTimer(); !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-ctx.Done():
			r.step(Shutdown{})
			return nil
		case err := <-readErr:
			r.step(Shutdown{})
			return err
		case p := <-pkts:
			r.step(p)
		case <-timer.C:
			r.fire(pkts)
		case <-e.kick:
			r.stepPending()
		}
	}
}

// pender is a Conn that tells whether a packet waits to be read (RawConn.Pending).
type pender interface{ Pending() bool }

// maxEarly is how many packets one expiry of a timer lets go first (see fire), so that a flood of
// packets cannot hold a timer off.
const maxEarly = 8

// earlyWait bounds the wait for a packet that the socket holds but the reading goroutine has not
// handed over yet (see fire).
const earlyWait = 20 * time.Millisecond

// fire steps the expiry of the machine's timer, but first a packet that reached the socket before
// it, as keepalived does (it reads a ready socket before it looks at its timers): a backup that
// wakes up late (a loaded host) with the new master's advert already waiting must not become master
// beside it, nor a master just continued (SIGCONT) announce before it hears a higher priority. The
// loop comes back here while the timer is still due.
func (r *runner) fire(pkts <-chan Received) {
	if p, ok := r.early(pkts); ok {
		r.earlyN++
		r.step(p)
		return
	}
	r.earlyN = 0
	r.step(Tick{})
}

// early returns a packet received before the timer's expiry, if there is one and fewer than
// maxEarly went first since the last Tick.
func (r *runner) early(pkts <-chan Received) (Received, bool) {
	if r.earlyN >= maxEarly {
		return Received{}, false
	}
	select {
	case p := <-pkts:
		return p, true
	default:
	}
	pc, ok := r.conn.(pender)
	if !ok || !pc.Pending() {
		return Received{}, false
	}
	t := time.NewTimer(earlyWait)
	defer t.Stop()
	select {
	case p := <-pkts:
		return p, true
	case <-t.C:
	case <-r.ctx.Done():
	}
	return Received{}, false
}

// listen opens the RawConn on Config.Interface. An IPv6 link-local address still in duplicate
// address detection (a link just up) is waited for, every tentativeRetry, until ctx is done.
func (e *Elector) listen(ctx context.Context) (*RawConn, error) {
	lc := ListenConfig{Interface: e.cfg.Interface, IPv6: e.cfg.ipv6(), Unicast: len(e.cfg.UnicastPeers) > 0, Exclude: e.cfg.addresses()}
	logged := false
	for {
		rc, err := Listen(lc)
		if !errors.Is(err, ErrTentative) {
			return rc, err
		}
		if !logged {
			e.log.Info("waiting for duplicate address detection of the link-local address to send adverts from", zap.Error(err))
			logged = true
		}
		t := time.NewTimer(tentativeRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, context.Cause(ctx)
		case <-t.C:
		}
	}
}

// tentativeRetry is how often listen looks again for a link-local address that has passed
// duplicate address detection (RFC 4862 §5.4: about a second by default).
const tentativeRetry = 100 * time.Millisecond

// stepPending steps the events posted since the last call (a Resign is answered).
func (r *runner) stepPending() {
	e := r.e
	e.mu.Lock()
	evs := e.pending
	e.pending = nil
	e.mu.Unlock()
	for _, ev := range evs {
		if q, ok := ev.(resignReq); ok { // planned.go
			q.done <- r.resign()
			continue
		}
		r.step(ev)
	}
}

// runner is the state of one Run call; only Run's loop calls step.
type runner struct {
	e          *Elector
	m          *Machine
	conn       Conn
	term       uint64
	out        *election.Outbox
	ctx        context.Context // Run's: once done, the consumer has demoted already
	sendErrors uint64          // adverts that reached no destination
	earlyN     int             // packets stepped before an expired timer since the last Tick (fire)
}

func (r *runner) step(ev Event) {
	e := r.e
	outs := r.m.Step(time.Now(), ev)
	// Demote before resign: when this router stops being master, the consumer demotes (the VIPs
	// go) before the adverts of this step go out, the priority-0 advert among them, which lets a
	// backup take over after its Skew_Time (RFC 5798 6.4.3). The wait is bounded by the master's
	// deadline: by then the Coordinator has fenced anyway, and the backups' Master_Down_Interval
	// runs out soon after.
	for _, o := range outs {
		if t, ok := o.(Transition); ok && t.From == Master && t.To != Master {
			valid := e.State().ValidUntil
			seq := r.transition(t)
			wctx, cancel := context.WithDeadline(r.ctx, valid)
			if err := r.out.WaitActed(wctx, seq); err != nil && r.ctx.Err() == nil {
				e.log.Warn("demote not acknowledged before the deadline; resigning anyway", zap.Error(err))
			}
			cancel()
		}
	}
	for _, o := range outs {
		switch o := o.(type) {
		case Send:
			r.send(o.Packet)
		case Transition:
			if !(o.From == Master && o.To != Master) {
				r.transition(o)
			}
		case MismatchWarning:
			r.warnMismatch(o.Mismatch)
		case MasterBeside:
			e.masterBeside(o)
		}
	}
	st := r.m.Stats()
	st.SendErrors = r.sendErrors
	e.mu.Lock()
	prev := e.stats
	if st.MismatchedTotal() != prev.MismatchedTotal() {
		e.mismatches = r.m.Mismatches()
	}
	e.stats = st
	e.mu.Unlock()
	if p, ok := ev.(Received); ok && st.DroppedTotal() != prev.DroppedTotal() {
		for reason, n := range st.Dropped {
			if prev.Dropped[reason] != n {
				// Debug only: a misconfigured neighbour sends one every advert interval (it is
				// warned about, rate-limited, as a mismatch).
				e.log.Debug("advert dropped", zap.String("reason", string(reason)), zap.Stringer("src", p.Src))
			}
		}
	}
}

// warnMismatch logs a router whose adverts for our VRID do not match (rate-limited by the Machine).
func (r *runner) warnMismatch(mm Mismatch) {
	msg := "adverts for this VRID do not match this router's configuration: the sender does not join this virtual router, and both may be master (split brain)"
	if !mm.Dropped {
		msg = "adverts for this VRID carry another advert interval: accepted (RFC 5798), but takeover times depend on which router is master"
	}
	r.e.log.Warn(msg, zap.String("reason", string(mm.Reason)), zap.Stringer("src", mm.Source),
		zap.String("detail", mm.Detail), zap.Uint64("count", mm.Count))
}

// warnMasterBeside warns, as this router becomes master, about the routers with mismatched adverts
// heard within MismatchWarnInterval: they drop our adverts as we drop theirs, so they may be master
// too.
func (r *runner) warnMasterBeside() {
	var srcs []string
	for _, mm := range r.m.mismatches.recent(time.Now(), MismatchWarnInterval) {
		if !mm.Dropped {
			continue // accepted: that router is part of the group
		}
		srcs = append(srcs, fmt.Sprintf("%s (%s)", mm.Source, mm.Reason))
	}
	if len(srcs) > 0 {
		r.e.log.Warn("becoming master while routers that send mismatched adverts for this VRID are on the link: they may be master too (split brain)",
			zap.Strings("mismatched", srcs))
	}
}

func (r *runner) send(p Packet) {
	src := r.conn.Addr()
	dsts := r.e.cfg.UnicastPeers
	if len(dsts) == 0 {
		dsts = []netip.Addr{r.e.cfg.multicastGroup()}
	}
	now := time.Now()
	sent := false
	for _, dst := range dsts {
		b, err := p.Marshal(src, dst)
		if err == nil {
			err = r.conn.Write(b, dst)
		}
		if err != nil {
			r.e.log.Warn("advert not sent", zap.Stringer("dst", dst), zap.Error(err))
			continue
		}
		sent = true
	}
	if !sent {
		r.sendErrors++
	}
	if sent && p.Priority != PriorityStop && r.m.State() == Master {
		r.renew(now)
	}
}

// validity is how long a master may hold the VIPs after sending an advert: a backup declares it
// down Master_Down_Interval = 3 x Master_Adver_Interval + Skew_Time after the last advert it
// received (RFC 5798 §6.1), so a master that stops advertising (SIGSTOP, a hang) must have let go
// before 3 x Advertisement_Interval from its last send, less a margin for timer latency and the
// netlink round trip (fencing.DefaultMargin).
func (c Config) validity() time.Duration {
	mdi := 3 * c.AdvertInt
	return mdi - fencing.DefaultMargin(mdi)
}

// renew moves the master's self-fencing deadline on after an advert sent at now.
func (r *runner) renew(now time.Time) {
	e := r.e
	e.mu.Lock()
	if e.state.Role != election.Master {
		e.mu.Unlock()
		return
	}
	e.state.ValidUntil = now.Add(e.cfg.validity())
	e.state.Reason = "advert sent"
	s := e.state
	e.mu.Unlock()
	r.out.Set(s)
}

// transition reports the State t leads to and returns its Outbox version.
func (r *runner) transition(t Transition) uint64 {
	e := r.e
	if t.To == Master && t.From != Master {
		r.term++
		r.warnMasterBeside()
	}
	s := election.State{Reason: t.Reason}
	switch t.To {
	case Master:
		s.Role = election.Master
		s.Term = r.term
		s.ValidUntil = time.Now().Add(e.cfg.validity()) // moved on by every advert sent
	case Fault:
		s.Role = election.Fault
	default:
		s.Role = election.Backup
	}
	if t.Master.IsValid() {
		node := t.Master.String()
		if t.Master == r.conn.Addr() && e.cfg.Node != "" {
			node = e.cfg.Node
		}
		s.Leader = election.Record{
			Group:   e.cfg.group(),
			Node:    node,
			Address: t.Master,
			VIPs:    e.cfg.VIPs,
			Term:    s.Term,
			Since:   time.Now(),
		}
	}
	lvl := e.log.Info
	if t.From == t.To {
		lvl = e.log.Debug
	}
	master := ""
	if t.Master.IsValid() {
		master = t.Master.String()
	}
	lvl("vrrp state", zap.Stringer("from", t.From), zap.Stringer("to", t.To),
		zap.String("master", master), zap.Int("priority", r.m.Priority()),
		zap.Uint64("term", s.Term), zap.String("reason", t.Reason))
	e.mu.Lock()
	e.state = s
	e.mu.Unlock()
	return r.out.Set(s)
}

func (r *runner) snapshot() election.State {
	s := r.e.State()
	if s.Role == election.Master || s.Role == election.Init {
		s.Role, s.Term, s.Reason = election.Backup, 0, "shutdown"
	}
	return s
}
