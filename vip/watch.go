package vip

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/mdlayher/ethernet"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// The split-brain watch: while the VIPs are held, another host that claims one of them on the
// link, with an ARP packet whose sender is the VIP (a reply, a gratuitous ARP) or an IPv6
// neighbour advertisement whose target is the VIP, is reported to the OnForeign function with its
// hardware address. Two holders of one VIP split its traffic between them, at the mercy of the
// switches' and clients' caches: the master is the one to notice, since it is the one that should
// be alone.
//
// The watch listens from OnForeign on, on its own AF_PACKET sockets (opened by New) (one per address family of the VIPs at
// New: a family SetConfig adds later is not watched), not the probe's, so that it never takes a
// frame the conflict probe waits for. It hears what reaches this host: broadcast frames (a
// gratuitous ARP, an unsolicited NA to all nodes) and replies addressed to it, among them the
// other host's reply to the announcements this Manager sends (its kernel answers an ARP request
// for an address it holds), so each announcement refresh is also a check.

// OnForeign sets the function told of every frame in which another host claims a held VIP (see
// above): the VIP, the other host's hardware address and when it was heard. It is called on the
// watch's goroutine (Run's), once per frame, so it must be quick and rate-limit what it logs; it
// must not call the Manager. Call it before Run. Without it nothing is watched.
func (m *Manager) OnForeign(f func(Conflict)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.onForeign = f
	if m.foreign == nil || f == nil {
		return
	}
	// From now on the sockets queue what they hear, for Run's readers.
	for _, s := range m.foreign.socks {
		if err := s.s.listen(s.prog); err != nil {
			m.log.Warn("split-brain watch: cannot listen; another host answering for a held VIP goes unnoticed", zap.Error(err))
		}
	}
}

// Announced returns the number of announcement frames (gratuitous ARP, unsolicited NA) sent since
// New: the metric hacoord_garp_sent_total. Safe from any goroutine.
func (m *Manager) Announced() uint64 { return m.announced.Load() }

// foreignWatch is the watch's sockets, opened by New in the caller's namespace.
type foreignWatch struct {
	socks []foreignSock
}

type foreignSock struct {
	s    *linkSocket
	prog []unix.SockFilter
}

// openForeignWatch opens the watch's sockets for the address families of cfg's VIPs, when the
// interface has an Ethernet address; nil (no watch) otherwise.
func openForeignWatch(cfg Config, mac net.HardwareAddr) (*foreignWatch, error) {
	if len(mac) != 6 {
		return nil, nil
	}
	var v4, v6 bool
	for _, v := range cfg.VIPs {
		v4 = v4 || v.Addr().Is4()
		v6 = v6 || v.Addr().Is6()
	}
	w := &foreignWatch{}
	for _, f := range []struct {
		on    bool
		proto uint16
		prog  []unix.SockFilter
	}{{v4, uint16(ethernet.EtherTypeARP), acceptARP}, {v6, uint16(ethernet.EtherTypeIPv6), acceptNA}} {
		if !f.on {
			continue
		}
		s, err := openLinkSocket(f.proto)
		if err != nil {
			w.close()
			return nil, err
		}
		w.socks = append(w.socks, foreignSock{s: s, prog: f.prog})
	}
	return w, nil
}

func (w *foreignWatch) close() {
	if w == nil {
		return
	}
	for _, s := range w.socks {
		_ = s.s.close()
	}
	w.socks = nil
}

// watchForeign reads the watch's sockets until ctx is done, handing every frame received on the
// Manager's interface to foreignFrame. It returns at once without an OnForeign function or
// sockets.
func (m *Manager) watchForeign(ctx context.Context) {
	m.mu.Lock()
	f, w := m.onForeign, m.foreign
	m.mu.Unlock()
	if f == nil || w == nil || len(w.socks) == 0 {
		return
	}
	var wg sync.WaitGroup
	for _, s := range w.socks {
		wg.Go(func() {
			buf := make([]byte, 1514)
			for {
				r, err := s.s.recv(buf)
				if err != nil {
					return // closed, or woken by the deadline below
				}
				if r.pkttype == unix.PACKET_OUTGOING || r.ifindex != m.ifindex() {
					continue
				}
				if c, ok := m.foreignFrame(buf[:r.n], time.Now()); ok {
					f(c)
				}
			}
		})
	}
	<-ctx.Done()
	for _, s := range w.socks {
		_ = s.s.setReadDeadline(time.Unix(1, 0))
	}
	wg.Wait()
	for _, s := range w.socks {
		_ = s.s.listen(nil)
	}
}

// ifindex is the interface's index as the last relink found it; 0 for a fake kernel.
func (m *Manager) ifindex() int {
	if k, ok := m.k.(*netlinkKernel); ok {
		return int(k.index.Load())
	}
	return 0
}

// foreignFrame reports whether frame, heard at now, is another host claiming a VIP the Manager
// holds and has bound (not one ConflictWait holds back), and which.
func (m *Manager) foreignFrame(frame []byte, now time.Time) (Conflict, bool) {
	m.mu.Lock()
	own := m.mac
	m.mu.Unlock()
	addr, mac, ok := probeAnswer(frame, own, func(netip.Addr) bool { return true })
	if !ok {
		return Conflict{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.mayActLocked() {
		return Conflict{}, false
	}
	i := slices.IndexFunc(m.cfg.VIPs, func(v netip.Prefix) bool { return v.Addr() == addr })
	if i < 0 || m.isPendingLocked(m.cfg.VIPs[i]) {
		return Conflict{}, false
	}
	return Conflict{VIP: m.cfg.VIPs[i], HardwareAddr: mac, Since: now}, true
}

// checkForeignLocked sends the conflict probe's frames (RFC 5227 / DAD, from no address) for the
// bound VIPs, without waiting for answers: another host that holds one answers it, and the
// watch hears the answer. Sent with every announcement burst and refresh while the watch runs.
func (m *Manager) checkForeignLocked(reason string) {
	if m.onForeign == nil || m.foreign == nil || m.probes == nil {
		return
	}
	sent := 0
	for i, v := range m.cfg.VIPs {
		if i >= len(m.probes) || m.isPendingLocked(v) || !m.mayActLocked() {
			continue
		}
		if err := m.k.send(m.probes[i], v.Addr().Is6()); err == nil {
			sent++
		}
	}
	m.log.Debug("split-brain check sent", zap.String("reason", reason), zap.Int("frames-sent", sent))
}
