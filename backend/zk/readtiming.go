package zk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"time"
)

// ErrConfRefused is returned (wrapped) by ReadTiming when a server does not allow the `conf`
// four-letter word (4lw.commands.whitelist).
var ErrConfRefused = errConfRefused

// ReadTiming asks the servers of a connection string (host:port,...[/chroot]) in turn for their
// configuration (the `conf` four-letter word) and returns the ensemble side of Timing from the
// first that answers: tickTime, the session bounds and initLimit/syncLimit. The session fields
// are left zero (they belong to a session: see Timing). For `hacoord explain`.
func ReadTiming(ctx context.Context, servers []string) (Timing, error) {
	addrs, _, err := parseServers(servers)
	if err != nil {
		return Timing{}, err
	}
	var errs []error
	for _, a := range addrs {
		var t Timing
		err := readConf(ctx, a, &t)
		if err == nil {
			return t, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return Timing{}, fmt.Errorf("zk: conf: no servers in %v", servers)
	}
	return Timing{}, errors.Join(errs...)
}

// NegotiateSessions opens a session for each timeout in asked on the first server of servers that
// answers, reads the timeout the server grants it (the ConnectResponse's timeOut) and closes it at
// once, and returns the granted timeouts. Asking for 1ms and for math.MaxInt32 ms gives the
// server's [minSessionTimeout, maxSessionTimeout] (by default 2 and 20 ticks): what a server that
// refuses the conf word still tells. Each session is closed before the next is opened; one the
// close did not reach expires after its (granted) timeout.
func NegotiateSessions(ctx context.Context, servers []string, asked ...time.Duration) ([]time.Duration, error) {
	addrs, _, err := parseServers(servers)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, a := range addrs {
		var out []time.Duration
		for _, d := range asked {
			g, err := negotiateOn(ctx, a, d)
			if err != nil {
				errs = append(errs, err)
				break
			}
			out = append(out, g)
		}
		if len(out) == len(asked) {
			return out, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// negotiateOn opens a session asking timeout on the server at addr, and closes it.
func negotiateOn(ctx context.Context, addr string, timeout time.Duration) (time.Duration, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, fmt.Errorf("zk: negotiate a session on %s: %w", addr, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	ms := min(max(timeout.Milliseconds(), 1), math.MaxInt32)
	be := binary.BigEndian
	req := be.AppendUint32(nil, 0)         // protocolVersion
	req = be.AppendUint64(req, 0)          // lastZxidSeen
	req = be.AppendUint32(req, uint32(ms)) // timeOut
	req = be.AppendUint64(req, 0)          // sessionId: a new session
	req = be.AppendUint32(req, 16)         // passwd: 16 zero bytes
	req = append(req, make([]byte, 16)...)
	if err := writeFrame(c, req); err != nil {
		return 0, fmt.Errorf("zk: negotiate a session on %s: %w", addr, err)
	}
	resp, err := readFrame(c)
	if err != nil {
		return 0, fmt.Errorf("zk: negotiate a session on %s: connect response: %w", addr, err)
	}
	if len(resp) < 16 || be.Uint32(resp[4:8]) == 0 {
		return 0, fmt.Errorf("zk: negotiate a session on %s: refused (a server not serving)", addr)
	}
	granted := time.Duration(be.Uint32(resp[4:8])) * time.Millisecond
	hdr := be.AppendUint32(nil, 1)                 // xid
	hdr = be.AppendUint32(hdr, uint32(0xfffffff5)) // type closeSession (-11)
	if err := writeFrame(c, hdr); err == nil {
		_, _ = readFrame(c) // the close's reply, or EOF once it is committed
	}
	return granted, nil
}

// ServerMode asks the servers of a connection string in turn for `srvr` (allowed by default) and
// returns the first answer's mode: "standalone", "leader" or "follower".
func ServerMode(ctx context.Context, servers []string) (string, error) {
	addrs, _, err := parseServers(servers)
	if err != nil {
		return "", err
	}
	var errs []error
	for _, a := range addrs {
		mode, err := serverMode(ctx, a)
		if err == nil {
			return mode, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return "", errors.Join(errs...)
}

func serverMode(ctx context.Context, addr string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("zk: srvr from %s: %w", addr, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.Write([]byte("srvr")); err != nil {
		return "", fmt.Errorf("zk: srvr from %s: %w", addr, err)
	}
	b, err := io.ReadAll(io.LimitReader(c, 64<<10))
	if err != nil {
		return "", fmt.Errorf("zk: srvr from %s: %w", addr, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if m, ok := strings.CutPrefix(strings.TrimSpace(l), "Mode:"); ok {
			return strings.TrimSpace(m), nil
		}
	}
	return "", fmt.Errorf("zk: srvr from %s: no mode in %q", addr, clip(b))
}
