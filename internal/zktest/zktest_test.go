package zktest_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hacoord/hacoord/internal/testenv"
	"github.com/hacoord/hacoord/internal/zktest"
)

func TestStartRestartStop(t *testing.T) {
	s := zktest.Start(t, zktest.Options{MaxSessionTimeout: 1500 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !zktest.Ruok(ctx, nil, s.Addr()) {
		t.Fatalf("server on %s does not answer ruok", s.Addr())
	}
	cfg, err := os.ReadFile(filepath.Join(s.Options().Dir, "zoo.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tickTime=100\n", "maxSessionTimeout=1500\n", "minSessionTimeout=200\n", "clientPortAddress=127.0.0.1\n"} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("zoo.cfg lacks %q:\n%s", want, cfg)
		}
	}

	s.Stop()
	if s.Running() || zktest.Ruok(ctx, nil, s.Addr()) {
		t.Fatal("server still answers after Stop")
	}
	s.Stop() // idempotent
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if !zktest.Ruok(ctx, nil, s.Addr()) {
		t.Fatal("server does not answer after Restart")
	}
	s.Kill()
	if s.Running() {
		t.Fatal("server running after Kill")
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	if _, err := zktest.DefaultClasspath(); err != nil {
		testenv.Unavailable(t, "Debian's zookeeper jars: "+err.Error())
	}
	s := zktest.Start(t, zktest.Options{}) // only to borrow a free port
	addr := s.AddrPort()
	s.Stop()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	ready := make(chan *zktest.Server, 1)
	done := make(chan error, 1)
	go func() {
		done <- zktest.Run(ctx, zktest.Options{Dir: dir, ClientAddr: addr}, func(s *zktest.Server) { ready <- s })
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(40 * time.Second):
		t.Fatal("Run not ready in 40s")
	}
	if !zktest.Ruok(ctx, nil, addr.String()) {
		t.Fatal("no ruok from Run's server")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return 10s after cancel")
	}
	if zktest.Ruok(context.Background(), nil, addr.String()) {
		t.Fatal("server still answers after Run returned")
	}
}

func TestLaunchValidates(t *testing.T) {
	if _, err := zktest.Launch(context.Background(), zktest.Options{ClientAddr: netip.MustParseAddrPort("127.0.0.1:1")}); err == nil {
		t.Error("Launch without Dir: no error")
	}
	if _, err := zktest.Launch(context.Background(), zktest.Options{Dir: t.TempDir(), ClientAddr: netip.MustParseAddrPort("127.0.0.1:0")}); err == nil {
		t.Error("Launch with port 0: no error")
	}
}

// An ensemble of three elects one leader; killing it, the other two elect another within a couple
// of seconds (the timing of the package comment), and the old leader rejoins as a follower.
func TestEnsembleLeaderKill(t *testing.T) {
	servers := zktest.StartEnsemble(t, 3, zktest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := os.ReadFile(filepath.Join(servers[0].Options().Dir, "zoo.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"initLimit=10\n", "syncLimit=5\n", "server.3=127.0.0.1:"} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("zoo.cfg lacks %q:\n%s", want, cfg)
		}
	}
	leader := func(skip *zktest.Server) (*zktest.Server, zktest.Status) {
		t.Helper()
		var found *zktest.Server
		var fst zktest.Status
		for _, s := range servers {
			if s == skip {
				continue
			}
			st, err := s.WaitServing(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode == "leader" {
				if found != nil {
					t.Fatalf("two leaders: %s and %s", found.Addr(), s.Addr())
				}
				found, fst = s, st
			} else if st.Mode != "follower" {
				t.Fatalf("%s: mode %q, want leader or follower", s.Addr(), st.Mode)
			}
		}
		if found == nil {
			t.Fatal("no leader")
		}
		return found, fst
	}
	old, ost := leader(nil)
	killed := time.Now()
	old.Kill()
	// The others stop serving while they elect; wait until one of them is leader again.
	var nl *zktest.Server
	var nst zktest.Status
	for nl == nil {
		for _, s := range servers {
			if st, err := s.Status(ctx); s != old && err == nil && st.Mode == "leader" {
				nl, nst = s, st
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal("no new leader within 30s of killing the old one")
		case <-time.After(20 * time.Millisecond): // polling interval of the four-letter probe
		}
	}
	t.Logf("leader %s killed; %s leads after %v (epoch %d -> %d)", old.Addr(), nl.Addr(),
		time.Since(killed).Round(time.Millisecond), ost.Epoch(), nst.Epoch())
	if nst.Epoch() <= ost.Epoch() {
		t.Errorf("epoch %d after the election, was %d", nst.Epoch(), ost.Epoch())
	}
	if err := old.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := old.WaitServing(ctx); err != nil || st.Mode != "follower" {
		t.Fatalf("restarted old leader: %+v, %v; want a follower", st, err)
	}
}

func TestParseSrvr(t *testing.T) {
	st, err := zktest.ParseSrvr("Zookeeper version: 3.8.0\nLatency min/avg/max: 0/0.0/0\nZxid: 0x300000002\nMode: leader\nNode count: 5\n")
	if err != nil || st.Mode != "leader" || st.Zxid != 0x300000002 || st.Epoch() != 3 {
		t.Errorf("ParseSrvr = %+v, %v", st, err)
	}
	if st, err := zktest.ParseSrvr("This ZooKeeper instance is not currently serving requests\n"); err != nil || st.Serving() {
		t.Errorf("not serving: %+v, %v", st, err)
	}
	if _, err := zktest.ParseSrvr("garbage"); err == nil {
		t.Error("garbage parsed")
	}
}
