package zk_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	zkb "github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/internal/faultnet"
	"github.com/hacoord/hacoord/internal/zktest"
)

// A fence guard ends its dead daemon's candidacy with CloseSession and the session OnSession named:
// the master's znodes go at once and the backup takes over, without waiting for the session
// timeout. The first server listed is down: CloseSession moves on. Closing the session again finds
// it gone.
func TestCloseSessionHandsOverAtOnce(t *testing.T) {
	srv := zktest.Start(t, zktest.Options{})
	const group = "guardclose"
	px := faultnet.Start(t, srv.Addr())
	e, err := zkb.New(config(px.Addr(), group, "a"), testLogger(t).Named("a"))
	if err != nil {
		t.Fatal(err)
	}
	var f faults
	f.wrap(e)
	var mu sync.Mutex
	var heard [][]byte
	var heardID []int64
	e.OnSession(func(id int64, passwd []byte) {
		mu.Lock()
		heardID, heard = append(heardID, id), append(heard, passwd)
		mu.Unlock()
	})
	a := runNode(t, "a", e)
	ma := a.waitMaster(t)
	b := startNode(t, config(srv.Addr(), group, "b"), nil)
	b.rec.waitFor(t, "b follows a", func(s election.State) bool { return s.Role == election.Backup && s.Leader.Node == "a" })

	sid, pw := f.session()
	mu.Lock()
	if len(heardID) != 1 || heardID[0] != sid || !bytes.Equal(heard[0], pw) {
		t.Fatalf("OnSession heard %x, want the session %x", heardID, sid)
	}
	mu.Unlock()
	px.Block() // a is dead: it cannot take its session back
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	start := time.Now()
	if err := zkb.CloseSession(ctx, []string{down, srv.Addr()}, sid, pw, 0); err != nil {
		t.Fatal(err)
	}
	closed := time.Since(start)
	mb := b.waitMaster(t)
	if d := mb.At.Sub(start); d > 500*time.Millisecond {
		t.Errorf("takeover %v after CloseSession began (the close took %v), want well within the session timeout", d, closed)
	}
	if mb.Term <= ma.Term {
		t.Errorf("term %d after %d", mb.Term, ma.Term)
	}
	t.Logf("session closed in %v; b master %v after the close began", closed, mb.At.Sub(start))
	if err := zkb.CloseSession(ctx, []string{srv.Addr()}, sid, pw, 0); !errors.Is(err, zkb.ErrSessionGone) {
		t.Fatalf("closing the session again: %v, want ErrSessionGone", err)
	}
}
