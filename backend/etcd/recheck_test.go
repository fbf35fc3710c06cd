package etcd

import (
	"testing"
	"testing/synctest"
	"time"
)

// A recheck falls due recheckEvery after its read only once a keepalive answer shows the store past
// the read's revision: at once when one did before the timer fired, at the first such answer after
// it otherwise, never while the store stands still (an idle master reads nothing again).
func TestRecheckWaitsForTheStoreToMove(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &lease{ttl: 3 * time.Second, validity: 2 * time.Second, renewed: make(chan struct{}, 1)}
		tm := &term{l: l}
		renew := func(rev int64) { l.renew(time.Now().Add(time.Second), false, rev) }
		renew(10)

		// The store stands still at the read's revision: the timer fires, the recheck is not due.
		r := tm.newRecheck(10)
		start := time.Now()
		<-r.C()
		if waited := time.Since(start); waited != tm.recheckEvery() {
			t.Fatalf("timer fired after %v, want recheckEvery (%v)", waited, tm.recheckEvery())
		}
		if r.Fired() {
			t.Fatal("recheck due with the store still at the read's revision")
		}
		for range 20 { // 10 s of keepalives answered at the same revision
			time.Sleep(500 * time.Millisecond)
			renew(10)
			select {
			case <-r.Past:
				t.Fatal("recheck due although the store stayed at the read's revision")
			default:
			}
		}
		// The store moves: the next answer makes the recheck due.
		renew(11)
		select {
		case <-r.Past:
		default:
			t.Fatal("recheck not due after a keepalive answer past the read's revision")
		}
		r.Stop()

		// The store moved before the timer fired: due when it fires.
		r = tm.newRecheck(11)
		renew(12)
		<-r.C()
		if !r.Fired() {
			t.Fatal("recheck not due at recheckEvery, although the store moved meanwhile")
		}
		r.Stop()

		// Stop gives up the waiting channel.
		r = tm.newRecheck(12)
		<-r.C()
		if r.Fired() {
			t.Fatal("recheck due with the store still at the read's revision")
		}
		r.Stop()
		l.mu.Lock()
		n := len(l.past)
		l.mu.Unlock()
		if n != 0 {
			t.Fatalf("%d revision waiters left after Stop, want 0", n)
		}

		// A store whose answers carry no revision: every recheck falls due at recheckEvery.
		renew(0)
		r = tm.newRecheck(12)
		<-r.C()
		if !r.Fired() {
			t.Fatal("recheck not due at recheckEvery with a store that reports no revision")
		}
		r.Stop()
	})
}
