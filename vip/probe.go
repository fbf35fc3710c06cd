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

	"golang.org/x/sys/unix"
)

// probeRequest is one conflict probe: for each target, its probe frame (probeFrame), sent rounds
// times interval apart, listening from before the first round until interval after the last.
type probeRequest struct {
	targets  []netip.Addr
	frames   [][]byte // frames[i] probes targets[i]
	own      net.HardwareAddr
	rounds   int
	interval time.Duration
}

// window is how long the probe listens at most: rounds sent interval apart, and interval more.
func (r probeRequest) window() time.Duration { return time.Duration(r.rounds) * r.interval }

// answer is another host found using a probed address.
type answer struct {
	addr netip.Addr
	mac  net.HardwareAddr
}

// probe sends req's frames and listens on the interface for the answers (probeAnswer) until every
// target has one, the window ends, or ctx is done, whichever comes first; then it stops listening.
// It returns at most one answer per target, in the order heard. A send that fails is an error only
// when no frame of a round got out and nobody answered (then nothing can be concluded); ctx's end
// is not an error.
func (k *netlinkKernel) probe(ctx context.Context, req probeRequest) ([]answer, error) {
	if len(req.targets) == 0 {
		return nil, nil
	}
	end := time.Now().Add(req.window())
	if d, ok := ctx.Deadline(); ok && d.Before(end) {
		end = d
	}
	var socks []*linkSocket
	for _, s := range []struct {
		sock *linkSocket
		v6   bool
		prog []unix.SockFilter
	}{{k.arpSock, false, acceptARP}, {k.ndSock, true, acceptNA}} {
		if s.sock == nil || !hasFamily(req.targets, s.v6) {
			continue
		}
		if err := s.sock.setReadDeadline(end); err != nil {
			return nil, fmt.Errorf("conflict probe: %w", err)
		}
		if err := s.sock.listen(s.prog); err != nil {
			return nil, fmt.Errorf("conflict probe: %w", err)
		}
		socks = append(socks, s.sock)
	}
	if len(socks) == 0 {
		return nil, errors.New("conflict probe: no socket for the VIPs' address family")
	}

	// One reader per socket, owned here: each stops at the read deadline, which stop moves to the
	// past.
	probed := make(map[netip.Addr]bool, len(req.targets))
	for _, t := range req.targets {
		probed[t] = true
	}
	heard := make(chan answer, 4*len(req.targets)+8)
	var (
		wg      sync.WaitGroup
		stopped atomic.Bool
	)
	for _, s := range socks {
		wg.Go(func() {
			buf := make([]byte, 1514)
			for !stopped.Load() {
				r, err := s.recv(buf)
				if err != nil {
					return // the deadline (os.IsTimeout), stop, or a broken socket
				}
				if r.ifindex != int(k.index.Load()) || r.pkttype == unix.PACKET_OUTGOING {
					continue
				}
				addr, mac, ok := probeAnswer(buf[:r.n], req.own, func(a netip.Addr) bool { return probed[a] })
				if !ok {
					continue
				}
				select {
				case heard <- answer{addr: addr, mac: mac}:
				default: // answered many times over: the first answer is enough
				}
			}
		})
	}
	defer func() {
		stopped.Store(true)
		for _, s := range socks {
			_ = s.setReadDeadline(time.Unix(1, 0))
		}
		wg.Wait()
		for _, s := range socks {
			_ = s.listen(nil)
		}
	}()

	var (
		out     []answer
		seen    = map[netip.Addr]bool{}
		sendErr error
	)
	sendRound := func() {
		sent := 0
		var errs []error
		for i, f := range req.frames {
			if err := k.send(f, req.targets[i].Is6()); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", req.targets[i], err))
				continue
			}
			sent++
		}
		if sent == 0 && sendErr == nil {
			sendErr = fmt.Errorf("conflict probe: nothing could be sent: %w", errors.Join(errs...))
		}
	}
	sendRound()
	rounds := 1
	next := time.NewTimer(req.interval)
	defer next.Stop()
	deadline := time.NewTimer(time.Until(end))
	defer deadline.Stop()
	for len(out) < len(req.targets) {
		select {
		case <-ctx.Done():
			return out, nil
		case <-deadline.C:
			if len(out) == 0 && sendErr != nil {
				return nil, sendErr
			}
			return out, nil
		case a := <-heard:
			if !seen[a.addr] {
				seen[a.addr] = true
				out = append(out, a)
			}
		case <-next.C:
			if rounds < req.rounds {
				sendRound()
				rounds++
				next.Reset(req.interval)
			}
		}
	}
	return out, nil
}

func hasFamily(addrs []netip.Addr, v6 bool) bool {
	for _, a := range addrs {
		if a.Is6() == v6 {
			return true
		}
	}
	return false
}
