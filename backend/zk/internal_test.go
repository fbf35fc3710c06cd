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
		ev := newSessionEvents(nil)
		client, server := net.Pipe()
		c := &sniffConn{Conn: client, ev: ev}
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
		if ev.offered != 0xabcd || ev.negotiated != 1500*time.Millisecond || string(ev.passwd) != "pwd" {
			t.Errorf("chunk %d: session %#x timeout %v passwd %q", chunk, ev.offered, ev.negotiated, ev.passwd)
		}
	}
}

func TestHostProviderPausesOnlyAfterAFailedRound(t *testing.T) {
	for _, n := range []int{1, 3} {
		h := &hostProvider{}
		servers := []string{"a:1", "b:1", "c:1"}[:n]
		if err := h.Init(servers); err != nil {
			t.Fatal(err)
		}
		var pauses []bool
		for range 2*n + 1 {
			_, p := h.Next()
			pauses = append(pauses, p)
		}
		// First round free; a pause before each further round.
		for i, p := range pauses {
			if want := i >= n && i%n == 0; p != want {
				t.Errorf("%d servers: attempt %d pause=%v, want %v (%v)", n, i, p, want, pauses)
			}
		}
		h.Connected()
		if _, p := h.Next(); p {
			t.Errorf("%d servers: pause right after a connection was lost", n)
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
	r := &sessionRun{s: &session{started: t0, timeout: time.Second}, interval: 250 * time.Millisecond}
	if a := r.anchor(); !a.Equal(t0) {
		t.Fatalf("no checks yet: anchor %v, want the session start", a)
	}
	r.synced(ms(250))
	if a := r.anchor(); !a.Equal(t0) {
		t.Errorf("one check: anchor %v, want the session start", a)
	}
	r.synced(ms(500)) // 250ms after the first: it proves the first reached the leader
	if a := r.anchor(); !a.Equal(ms(250)) {
		t.Errorf("anchor %v, want +250ms", a)
	}
	r.synced(ms(520)) // too close to vouch for 500
	if a := r.anchor(); !a.Equal(ms(250)) {
		t.Errorf("anchor %v, want +250ms", a)
	}
	r.synced(ms(760)) // 240ms after 520: vouches for it (within the 5% jitter allowance)
	if a := r.anchor(); !a.Equal(ms(520)) {
		t.Errorf("anchor %v, want +520ms", a)
	}
	if len(r.syncs) > 4 {
		t.Errorf("kept %d check times", len(r.syncs))
	}
}
