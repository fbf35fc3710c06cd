package zk

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// On a connection to the leader (or a standalone server) an answered round trip anchors the
// deadline itself; the other rules still apply, and the latest anchor wins.
func TestAnchorDirect(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	ev := newSessionEvents(nil, 300*time.Millisecond)
	ev.timeout, ev.revalidated = 300*time.Millisecond, t0
	l := &liveness{s: &session{ev: ev}}
	l.synced(ms(75), true)
	if a := l.anchor(); !a.Equal(ms(75)) {
		t.Errorf("one direct round trip: anchor %v, want its send time +75ms", a.Sub(t0))
	}
	if vu := l.validUntil(); !vu.Equal(ms(75 + 300 - 100)) {
		t.Errorf("deadline %v, want anchor + session 300ms - margin 100ms", vu.Sub(t0))
	}
	l.synced(ms(150), false) // vouches for 75 only (the follower rule)
	if a := l.anchor(); !a.Equal(ms(75)) {
		t.Errorf("a round trip of unknown mode after a direct one: anchor %v, want +75ms", a.Sub(t0))
	}
	l.synced(ms(225), true)
	if a := l.anchor(); !a.Equal(ms(225)) {
		t.Errorf("anchor %v, want the latest direct round trip +225ms", a.Sub(t0))
	}
	l.synced(ms(300), false)
	l.synced(ms(375), false) // vouches for 300, later than the direct 225
	if a := l.anchor(); !a.Equal(ms(300)) {
		t.Errorf("anchor %v, want +300ms (vouched for by +375ms)", a.Sub(t0))
	}
	ev.revalidated = ms(400)
	if a := l.anchor(); !a.Equal(ms(400)) {
		t.Errorf("after a reconnect: anchor %v, want its dial time +400ms", a.Sub(t0))
	}
}

// watchMode asks srvr once per connection that gets the session, at that connection's address,
// and marks the connection only when the server is standalone (not an ensemble's leader, which may
// have lost its quorum unnoticed); round trips count as
// direct only when sent after the mark.
func TestWatchMode(t *testing.T) {
	ev := newSessionEvents(nil, time.Second)
	asked := make(chan string, 10)
	modes := map[string]string{"a:1": "leader", "b:1": "follower", "d:1": "standalone"}
	query := func(ctx context.Context, addr string) (string, error) {
		asked <- addr
		if m, ok := modes[addr]; ok {
			return m, nil
		}
		return "", errors.New("srvr is not executed because it is not in the whitelist")
	}
	kick := make(chan struct{}, 1)
	ev.onUp = func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ev.watchMode(ctx, kick, query)
	}()
	defer func() {
		cancel()
		<-done
	}()
	connect := func(remote string) *wireConn {
		c := &wireConn{addr: remote, remote: remote, dialed: time.Now()}
		ev.connectResponse(c, 7, time.Second, []byte("pw"))
		ev.callback(zk.Event{Type: zk.EventSession, State: zk.StateHasSession, Server: remote})
		return c
	}
	next := func(want string) {
		t.Helper()
		select {
		case got := <-asked:
			if got != want {
				t.Fatalf("srvr asked of %s, want %s", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("srvr never asked of %s", want)
		}
	}
	before := time.Now()
	a := connect("a:1")
	next("a:1")
	b := connect("b:1") // once b is asked, a's answer has been recorded
	next("b:1")
	c := connect("c:1")
	next("c:1")
	d := connect("d:1")
	next("d:1")
	ev.callback(zk.Event{Type: zk.EventSession, State: zk.StateDisconnected})
	e := connect("e:1")
	next("e:1") // d's answer is recorded
	d.mu.Lock()
	at := d.leaderAt
	d.mu.Unlock()
	switch {
	case at.IsZero():
		t.Fatal("the standalone server's connection is not marked")
	case d.directFrom(before) || d.directFrom(at):
		t.Error("a round trip sent before srvr answered counts as direct")
	case !d.directFrom(at.Add(time.Millisecond)):
		t.Error("a round trip sent after srvr said standalone does not count as direct")
	}
	for _, x := range []*wireConn{a, b, c, e} {
		if x.directFrom(time.Now()) {
			t.Errorf("%s (an ensemble's leader or follower, or mode unknown) is marked", x.addr)
		}
	}
	var none *wireConn
	if none.directFrom(time.Now()) {
		t.Error("no connection counts as direct")
	}
	select {
	case got := <-asked:
		t.Errorf("srvr asked again, of %s", got)
	default:
	}
}
