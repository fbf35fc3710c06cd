package zk

import (
	"encoding/binary"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/hacoord/hacoord/fencing"
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

	for _, own := range []bool{false, true} {
		for _, chunk := range []int{1, 3, 4, 7, len(wire)} {
			ev := newSessionEvents(nil, time.Second)
			client, server := net.Pipe()
			c := &wireConn{Conn: client, ev: ev, own: own}
			go func() {
				for i := 0; i < len(wire); i += chunk {
					server.Write(wire[i:min(i+chunk, len(wire))])
				}
				server.Close()
			}()
			var read []byte
			buf := make([]byte, 5)
			for {
				n, err := c.Read(buf)
				read = append(read, buf[:n]...)
				if err != nil {
					break
				}
			}
			if o := ev.offer; o.conn != c || o.id != 0xabcd || o.timeout != 1500*time.Millisecond || string(o.passwd) != "pwd" {
				t.Errorf("own %v, chunk %d: session %#x timeout %v passwd %q", own, chunk, o.id, o.timeout, o.passwd)
			}
			// With its own pings the library reads libTimeout (and so never pings); otherwise the
			// bytes pass unchanged.
			want := wire
			if own {
				want = slices.Clone(wire)
				binary.BigEndian.PutUint32(want[8:], uint32(libTimeout/time.Millisecond))
			}
			if !slices.Equal(read, want) {
				t.Errorf("own %v, chunk %d: the library read % x, want % x", own, chunk, read, want)
			}
		}
	}
}

// With its own pings, a reconnection's connect request asks for the timeout the server granted,
// not for the libTimeout the library was told; the library's buffer is left as it was.
func TestConnectRequestAsksForTheGrantedTimeout(t *testing.T) {
	req := binary.BigEndian.AppendUint32(nil, 0) // protocolVersion
	req = binary.BigEndian.AppendUint64(req, 7)  // lastZxidSeen
	req = binary.BigEndian.AppendUint32(req, uint32(libTimeout/time.Millisecond))
	req = binary.BigEndian.AppendUint64(req, 0xabcd) // sessionId
	req = binary.BigEndian.AppendUint32(req, 3)
	req = append(req, 'p', 'w', 'd', 0)
	wire := append(binary.BigEndian.AppendUint32(nil, uint32(len(req))), req...)
	for _, own := range []bool{false, true} {
		ev := newSessionEvents(nil, 2*time.Second)
		ev.connectResponse(&wireConn{}, 0xabcd, 1500*time.Millisecond, []byte("pwd"))
		ev.mu.Lock()
		ev.hasSession("a:1") // the first connection was granted 1.5s
		ev.mu.Unlock()
		client, server := net.Pipe()
		c := &wireConn{Conn: client, ev: ev, own: own}
		got := make(chan []byte, 1)
		go func() {
			b := make([]byte, len(wire))
			_, _ = io.ReadFull(server, b)
			got <- b
		}()
		lib := slices.Clone(wire)
		if n, err := c.Write(lib); err != nil || n != len(wire) {
			t.Fatalf("own %v: Write = %d, %v", own, n, err)
		}
		sent := <-got
		client.Close()
		want := uint32(libTimeout / time.Millisecond)
		if own {
			want = 1500
		}
		if ms := binary.BigEndian.Uint32(sent[16:]); ms != want {
			t.Errorf("own %v: the server was asked for %d ms, want %d", own, ms, want)
		}
		if !slices.Equal(lib, wire) {
			t.Errorf("own %v: Write changed the library's buffer", own)
		}
	}
}

// The library's own pause (1s) is never asked for while the session is open; the dialer is told to
// pause before each round that follows a failed one, never right after a connection was lost. A
// silent server is skipped while others remain.
func TestHostProvider(t *testing.T) {
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

	h := &hostProvider{}
	if err := h.Init([]string{"a:1", "b:1", "c:1"}); err != nil {
		t.Fatal(err)
	}
	h.wasSilent("b:1", time.Hour)
	var got []string
	for range 4 {
		s, _ := h.Next()
		got = append(got, s)
	}
	if want := []string{"a:1", "c:1", "a:1", "c:1"}; !slices.Equal(got, want) {
		t.Errorf("with b silent: %v, want %v", got, want)
	}
	h.wasSilent("a:1", time.Hour)
	h.wasSilent("c:1", time.Hour)
	if s, _ := h.Next(); s == "" {
		t.Error("every server silent: no server handed out")
	}
	h.wasSilent("b:1", -time.Second) // its time is up
	h.wasSilent("a:1", -time.Second)
	got = got[:0]
	for range 3 {
		s, _ := h.Next()
		got = append(got, s)
	}
	if slices.Contains(got, "c:1") || !slices.Contains(got, "a:1") || !slices.Contains(got, "b:1") {
		t.Errorf("after b and a came back: %v", got)
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
	l.synced(ms(250), false)
	if a := l.anchor(); !a.Equal(t0) {
		t.Errorf("one check: anchor %v, want the session start", a)
	}
	l.synced(ms(500), false) // 250ms after the first: it proves the first reached the leader
	if a := l.anchor(); !a.Equal(ms(250)) {
		t.Errorf("anchor %v, want +250ms", a)
	}
	l.synced(ms(520), false) // too close to vouch for 500
	if a := l.anchor(); !a.Equal(ms(250)) {
		t.Errorf("anchor %v, want +250ms", a)
	}
	l.synced(ms(760), false) // 240ms after 520: less than the leader's ping period may allow; 500 it vouches for
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

// The deadline uses the smallest timeout the ensemble ever granted the session, and the dial time of
// the latest connection that took the session back; another session id on the same Conn is a lost
// session.
func TestSessionEventsOnReconnect(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ev := newSessionEvents(nil, 4*time.Second)
	connect := func(id int64, timeout time.Duration, dialed time.Time) {
		ev.connectResponse(&wireConn{dialed: dialed}, id, timeout, []byte("pw"))
		ev.callback(zk.Event{Type: zk.EventSession, State: zk.StateHasSession, Server: "s"})
	}
	if got := ev.sessionTimeout(); got != 4*time.Second {
		t.Fatalf("before any session: %v, want the requested 4s", got)
	}
	connect(7, 2*time.Second, t0)
	select {
	case <-ev.established:
	default:
		t.Fatal("first session not established")
	}
	if ev.sessionTimeout() != 2*time.Second || !ev.revalidated.Equal(t0) {
		t.Errorf("first session: timeout %v, anchor %v", ev.sessionTimeout(), ev.revalidated)
	}
	ev.callback(zk.Event{Type: zk.EventSession, State: zk.StateDisconnected})
	if !ev.connectedAt().IsZero() {
		t.Error("still connected after a disconnect")
	}
	connect(7, 1500*time.Millisecond, t0.Add(time.Second))
	if ev.sessionTimeout() != 1500*time.Millisecond || !ev.revalidated.Equal(t0.Add(time.Second)) {
		t.Errorf("reconnect with a shorter timeout: timeout %v, anchor %v", ev.sessionTimeout(), ev.revalidated)
	}
	select {
	case <-ev.reconnected:
	default:
		t.Error("no reconnect reported")
	}
	connect(7, 3*time.Second, t0.Add(2*time.Second))
	if ev.sessionTimeout() != 1500*time.Millisecond {
		t.Errorf("reconnect with a longer timeout: %v, want the smallest ever, 1.5s", ev.sessionTimeout())
	}
	connect(8, 3*time.Second, t0.Add(3*time.Second))
	select {
	case <-ev.lost:
	default:
		t.Fatal("a new session id is not a lost session")
	}
	if ev.reason() == "" {
		t.Error("no reason for the lost session")
	}
}

// conf answers recorded from ZooKeeper 3.8.0: a standalone server and a member of an ensemble.
const (
	confStandalone = "clientPort=21999\nsecureClientPort=-1\ndataDir=/tmp/zk/data/version-2\ndataDirSize=457\n" +
		"dataLogDir=/tmp/zk/data/version-2\ndataLogSize=457\ntickTime=100\nmaxClientCnxns=60\nminSessionTimeout=200\n" +
		"maxSessionTimeout=2000\nclientPortListenBacklog=-1\nserverId=0\n"
	confQuorum = confStandalone + "initLimit=10\nsyncLimit=5\nelectionAlg=3\nelectionPort=21997\nquorumPort=21998\n" +
		"peerType=0\nmembership: \nserver.1=127.0.0.1:21998:21997:participant\nversion=0\n"
)

func TestTiming(t *testing.T) {
	var st Timing
	if err := parseConf(confStandalone, &st); err != nil || st.Tick != 100*time.Millisecond ||
		st.MinSession != 200*time.Millisecond || st.MaxSession != 2*time.Second || st.SyncLimit != 0 {
		t.Errorf("standalone conf: %+v, %v", st, err)
	}
	if st.StoreOutage() != 0 || st.RideOut(0) != 0 || st.RidesOut() {
		t.Errorf("standalone: no leader election to ride out, got outage %v", st.StoreOutage())
	}
	tm := Timing{Session: 2 * time.Second, Margin: 200 * time.Millisecond}
	if err := parseConf(confQuorum, &tm); err != nil || tm.InitLimit != 10 || tm.SyncLimit != 5 {
		t.Fatalf("quorum conf: %+v, %v", tm, err)
	}
	// syncLimit 5 ticks + 200ms + 2 ticks.
	if got := tm.StoreOutage(); got != 900*time.Millisecond {
		t.Errorf("store outage %v, want 900ms", got)
	}
	// 2s: 1s - 200ms of worst validity, short of 900ms + 100ms.
	if tm.WorstValidity() != 800*time.Millisecond || tm.RidesOut() {
		t.Errorf("2s session: worst validity %v, rides out %v", tm.WorstValidity(), tm.RidesOut())
	}
	// The smallest T with T/2 - T/10 - T/20 >= 900ms: 2.6s (2.571...).
	if got := tm.RideOut(0); got != 2600*time.Millisecond {
		t.Errorf("ride-out session %v, want 2.6s", got)
	}
	tm.Session, tm.Margin = 2600*time.Millisecond, fencing.DefaultMargin(2600*time.Millisecond)
	if !tm.RidesOut() {
		t.Errorf("2.6s does not ride out: %+v", tm)
	}
	if err := parseConf("conf is not executed because it is not in the whitelist.\n", &tm); err == nil {
		t.Error("a refusal parsed")
	}
}
