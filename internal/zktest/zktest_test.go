package zktest_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
		t.Skip(err)
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
