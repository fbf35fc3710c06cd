package zk

import (
	"encoding/binary"
	"net"
	"slices"
	"testing"
	"time"
)

func TestParseServers(t *testing.T) {
	for _, tc := range []struct {
		in      []string
		servers []string
		chroot  string
	}{
		{[]string{"h1:2181", "h2:2182"}, []string{"h1:2181", "h2:2182"}, ""},
		{[]string{"h1:2181,h2:2181/ha"}, []string{"h1:2181", "h2:2181"}, "/ha"},
		{[]string{"h1", "h2:2181/a/b"}, []string{"h1:2181", "h2:2181"}, "/a/b"},
		{[]string{"h1:2181/"}, []string{"h1:2181"}, ""},
		{[]string{"[::1]", "[fd00::1]:2182"}, []string{"[::1]:2181", "[fd00::1]:2182"}, ""},
	} {
		servers, chroot, err := parseServers(tc.in)
		if err != nil || !slices.Equal(servers, tc.servers) || chroot != tc.chroot {
			t.Errorf("parseServers(%q) = %q, %q, %v; want %q, %q", tc.in, servers, chroot, err, tc.servers, tc.chroot)
		}
	}
	for _, bad := range [][]string{nil, {""}, {"h1:2181/x", "h2:2181"}, {"h1:2181/x//y"}, {"h1:2181/x/"}, {"/x"}, {"h1:2181/.."}} {
		if _, _, err := parseServers(bad); err == nil {
			t.Errorf("parseServers(%q): no error", bad)
		}
	}
	if p := newPaths("/ha", "g"); p.election != "/ha/hacoord/g/election" || p.leader != "/ha/hacoord/g/leader" {
		t.Errorf("paths %+v", p)
	}
}

// The library may read the connect response in any pieces; the sniffer must still find it.
func TestSniffConnectResponse(t *testing.T) {
	frame := binary.BigEndian.AppendUint32(nil, 0)       // protocolVersion
	frame = binary.BigEndian.AppendUint32(frame, 1500)   // timeOut ms
	frame = binary.BigEndian.AppendUint64(frame, 0xabcd) // sessionId
	frame = binary.BigEndian.AppendUint32(frame, 3)
	frame = append(frame, 'p', 'w', 'd', 0) // passwd, readOnly
	wire := append(binary.BigEndian.AppendUint32(nil, uint32(len(frame))), frame...)
	wire = append(wire, 0, 0, 0, 9, 1, 2, 3) // the next frame must not disturb it

	for _, chunk := range []int{1, 3, 4, 7, len(wire)} {
		ev := newSessionEvents(nil, time.Second)
		client, server := net.Pipe()
		c := &wireConn{Conn: client, ev: ev}
		go func() {
			for i := 0; i < len(wire); i += chunk {
				server.Write(wire[i:min(i+chunk, len(wire))])
			}
			server.Close()
		}()
		buf := make([]byte, 5)
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		if o := ev.offer; o.conn != c || o.id != 0xabcd || o.timeout != 1500*time.Millisecond || string(o.passwd) != "pwd" {
			t.Errorf("chunk %d: session %#x timeout %v passwd %q", chunk, o.id, o.timeout, o.passwd)
		}
	}
}

// The library's own pause (1s) is never asked for while the session is open; the dialer is told to
// pause before each round that follows a failed one, never right after a connection was lost.
func TestHostProviderPausesOnlyAfterAFailedRound(t *testing.T) {
	for _, n := range []int{1, 3} {
		h := &hostProvider{}
		servers := []string{"a:1", "b:1", "c:1"}[:n]
		if err := h.Init(servers); err != nil {
			t.Fatal(err)
		}
		var pauses []bool
		for range 2*n + 1 {
			_, libPause := h.Next()
			if libPause {
				t.Fatalf("%d servers: the library was asked to pause", n)
			}
			pauses = append(pauses, h.pauseFirst())
		}
		// First round free; a pause before each further round.
		for i, p := range pauses {
			if want := i >= n && i%n == 0; p != want {
				t.Errorf("%d servers: attempt %d pause=%v, want %v (%v)", n, i, p, want, pauses)
			}
		}
		h.Connected()
		if h.Next(); h.pauseFirst() {
			t.Errorf("%d servers: pause right after a connection was lost", n)
		}
		h.closing()
		if _, libPause := h.Next(); !libPause {
			t.Errorf("%d servers: a closing session does not let the library stop in its pause", n)
		}
	}
}

func TestBackoff(t *testing.T) {
	b := newBackoff(Backoff{Initial: 100 * time.Millisecond, Max: 400 * time.Millisecond})
	for i, max := range []time.Duration{100, 200, 400, 400} {
		d := b.next()
		if d < max*time.Millisecond/2 || d > max*time.Millisecond {
			t.Errorf("step %d: %v, want in [%v, %v]", i, d, max*time.Millisecond/2, max*time.Millisecond)
		}
	}
	b.reset()
	if d := b.next(); d > 100*time.Millisecond {
		t.Errorf("after reset: %v", d)
	}
}

func TestParseSeq(t *testing.T) {
	for name, want := range map[string]int64{
		"_c_0123456789abcdef0123456789abcdef-n_0000000042": 42,
		"n_0000000000": 0,
		"x":            -1,
		"abcdefghijkl": -1,
	} {
		got, ok := parseSeq(name)
		if (want < 0) == ok || (ok && got != want) {
			t.Errorf("parseSeq(%q) = %d, %v", name, got, ok)
		}
	}
}

func TestAnchor(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	ev := newSessionEvents(nil, time.Second)
	ev.timeout, ev.revalidated = time.Second, t0
	l := &liveness{s: &session{ev: ev}}
	if a := l.anchor(); !a.Equal(t0) {
		t.Fatalf("no checks yet: anchor %v, want the session start", a)
	}
	l.synced(ms(250))
	if a := l.anchor(); !a.Equal(t0) {
		t.Errorf("one check: anchor %v, want the session start", a)
	}
	l.synced(ms(500)) // 250ms after the first: it proves the first reached the leader
	if a := l.anchor(); !a.Equal(ms(250)) {
		t.Errorf("anchor %v, want +250ms", a)
	}
	l.synced(ms(520)) // too close to vouch for 500
	if a := l.anchor(); !a.Equal(ms(250)) {
		t.Errorf("anchor %v, want +250ms", a)
	}
	l.synced(ms(760)) // 240ms after 520: less than the leader's ping period may allow; 500 it vouches for
	if a := l.anchor(); !a.Equal(ms(500)) {
		t.Errorf("anchor %v, want +500ms", a)
	}
	if len(l.syncs) > 4 {
		t.Errorf("kept %d check times", len(l.syncs))
	}
	ev.revalidated = ms(700) // a reconnect: the leader revalidated the session after this dial
	if a := l.anchor(); !a.Equal(ms(700)) {
		t.Errorf("after a reconnect: anchor %v, want its dial time +700ms", a)
	}
	l.tick = 600 * time.Millisecond // half a tick (300ms) is more than a quarter session
	if g := l.gap(); g != 300*time.Millisecond {
		t.Errorf("gap %v with a 600ms tick, want its half", g)
	}
}
