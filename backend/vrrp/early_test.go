package vrrp

import (
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
)

// pendingConn is a fakeConn with a socket queue that the reading goroutine has not been handed
// yet: what queue puts there reaches Read only once the Elector asks Pending. It is a backup on a
// loaded host that wakes up late, when its Master_Down_Timer and the new master's advert are both
// due and the goroutine that reads the socket has not run yet.
type pendingConn struct {
	*fakeConn
	mu     sync.Mutex
	queued []Received
}

func (c *pendingConn) queue(r Received) {
	c.mu.Lock()
	c.queued = append(c.queued, r)
	c.mu.Unlock()
}

// Pending implements pender: it reports the queued packets and hands them to Read.
func (c *pendingConn) Pending() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queued) == 0 {
		return false
	}
	for _, r := range c.queued {
		c.in <- r
	}
	c.queued = nil
	return true
}

// A backup whose Master_Down_Timer expires while a higher-priority advert already waits in its
// socket steps the advert first and stays backup, as keepalived does (it reads a ready socket
// before it looks at its timers); RFC 5798 §6.4.2 has the advert, which came first, reset the
// timer. Becoming master instead put the VIP on two nodes in the lab's crash scenario: the lower
// backup became master beside the higher one, which was master already. Without adverts the timer
// still makes it master a Master_Down_Interval later.
func TestElectorStepsWaitingAdvertBeforeMasterDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &fakeNet{}
		conn := &pendingConn{fakeConn: n.conn(addrB)}
		cfg := LocalConfig()
		cfg.Interface, cfg.VRID, cfg.Priority = "eth0", 9, 100
		b := runNode(t, conn, cfg, nil)
		defer b.stop(t)
		advert := func() Received {
			p := Packet{Version: 3, Type: TypeAdvertisement, VRID: 9, Priority: 200,
				AdvertInt: cfg.advertField(), Addresses: cfg.addresses()}
			data, err := p.Marshal(addrA, MulticastGroup)
			if err != nil {
				t.Fatal(err)
			}
			return Received{Src: addrA, Dst: MulticastGroup, TTL: TTL, Data: data}
		}

		conn.in <- advert()
		synctest.Wait()
		if s := b.last(); s.Role != election.Backup || s.Leader.Address != addrA {
			t.Fatalf("after A's advert: %+v, want backup of %s", s, addrA)
		}
		start := time.Now()
		mdi := 3*cfg.AdvertInt + (256-100)*cfg.AdvertInt/256
		time.Sleep(mdi - 5*time.Millisecond)
		synctest.Wait()
		conn.queue(advert()) // in the socket 5ms before the timer expires; not read yet
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		if at, ok := b.firstSince(start, func(s election.State) bool { return s.Role == election.Master }); ok {
			t.Fatalf("master %s after A's first advert with A's second waiting in the socket, want backup", at.Sub(start))
		}
		if got := b.e.Stats().Accepted; got != 2 {
			t.Fatalf("%d adverts accepted, want 2", got)
		}
		time.Sleep(mdi)
		synctest.Wait()
		if s := b.last(); s.Role != election.Master {
			t.Fatalf("a Master_Down_Interval after A's last advert: %+v, want master", s)
		}
	})
}

// RawConn.Pending sees a packet in the socket's queue before Read takes it, and leaves it there.
func TestRawConnPending(t *testing.T) {
	testenv.RequireRoot(t)
	a, b := netnstest.New(t, "pda"), netnstest.New(t, "pdb")
	if _, _, err := netnstest.Veth(a, "eth0", netip.PrefixFrom(addrA, 24), b, "eth0", netip.PrefixFrom(addrB, 24)); err != nil {
		t.Fatal(err)
	}
	listen := func(ns *netnstest.NS) *RawConn {
		t.Helper()
		var c *RawConn
		if err := ns.Do(func() (err error) { c, err = Listen(ListenConfig{Interface: "eth0"}); return err }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ca, cb := listen(a), listen(b)
	if cb.Pending() {
		t.Fatal("Pending before anything was sent")
	}
	cfg := LocalConfig()
	p := Packet{Version: 3, Type: TypeAdvertisement, VRID: uint8(cfg.VRID), Priority: 100, AdvertInt: cfg.advertField()}
	data, err := p.Marshal(addrA, MulticastGroup)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Write(data, MulticastGroup); err != nil {
		t.Fatal(err)
	}
	// Wait until the socket is readable, without reading (poll(2), not Go's poller).
	var n int
	var perr error
	if err := cb.raw.Control(func(fd uintptr) {
		n, perr = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 5000)
	}); err != nil || perr != nil || n != 1 {
		t.Fatalf("poll: %d, %v, %v; want the advert readable", n, err, perr)
	}
	if !cb.Pending() {
		t.Fatal("not Pending with the advert in the queue")
	}
	if !cb.Pending() {
		t.Fatal("Pending took the advert from the queue")
	}
	r, err := cb.Read()
	if err != nil || r.Src != addrA {
		t.Fatalf("Read: %+v, %v; want the advert from %s", r, err, addrA)
	}
	if cb.Pending() {
		t.Fatal("Pending after the advert was read")
	}
}
